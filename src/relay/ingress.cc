#include "relay/ingress.hh"

#include <array>
#include <iterator>
#include <cstring>

#include "proto/http1/writer.hh"

namespace ferry::relay::ingress {

namespace {

using http1::header;
using http1::iequals;
using sv = std::string_view;

constexpr char ascii_lower(char c) noexcept {
    return (c >= 'A' && c <= 'Z') ? static_cast<char>(c | 0x20) : c;
}
constexpr bool is_upper(char c) noexcept { return c >= 'A' && c <= 'Z'; }
constexpr bool is_digit(char c) noexcept { return c >= '0' && c <= '9'; }
constexpr bool is_name_char(char c) noexcept {
    return (c >= 'a' && c <= 'z') || is_digit(c) || c == '-';
}
constexpr int hex_value(char c) noexcept {
    if (is_digit(c)) return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}
constexpr bool is_lower_hex(char c) noexcept { return is_digit(c) || (c >= 'a' && c <= 'f'); }

bool starts_with_ci(sv s, sv prefix) noexcept {
    return s.size() >= prefix.size() && iequals(s.substr(0, prefix.size()), prefix);
}

std::size_t count_fields(std::span<const header> headers, sv name) noexcept {
    std::size_t n = 0;
    for (const header& f : headers) n += iequals(f.name, name);
    return n;
}

// ---- routing --------------------------------------------------------------------------------

failure route_fail(route_error e, const char* detail) noexcept {
    switch (e) {
    case route_error::not_found: return fail(errc::unsupported, detail);
    case route_error::bad_name: return fail(errc::invalid_argument, detail);
    case route_error::bad_target:
    case route_error::none: break;
    }
    return fail(errc::http_bad_request, detail);
}

// `host` is "<label>.<base>[:port][.]": sets `label` (not yet validated). False when the host is
// not under base (including base itself, IP literals and a malformed port).
bool host_under(sv host, sv base, sv& label) noexcept {
    const std::size_t colon = host.rfind(':');
    if (colon != sv::npos) {
        const sv port = host.substr(colon + 1);
        if (port.size() > 5) return false;
        for (char c : port)
            if (!is_digit(c)) return false;
        host = host.substr(0, colon);
    }
    if (!host.empty() && host.back() == '.') host.remove_suffix(1);
    if (host.size() < base.size() + 2) return false;
    const std::size_t cut = host.size() - base.size();
    if (host[cut - 1] != '.' || !iequals(host.substr(cut), base)) return false;
    label = host.substr(0, cut - 1);
    return true;
}

// True when `path` ("/..." or "") has no "." or ".." segment and only well-formed %-escapes.
// Segments are split at '/', '\' and their escapes %2f, %5c (some upstreams decode or treat a
// backslash as a slash before they normalise); %2e counts as '.'; a ";param" tail is ignored
// (servlet containers read "..;x" as ".."). Stricter than needed to stay inside the tunnel,
// on purpose: one reading for every server behind the agent.
bool path_is_clean(sv path) noexcept {
    unsigned dots = 0;
    bool other = false, params = false;
    auto segment_ok = [&]() noexcept {
        const bool dot_segment = !other && (dots == 1 || dots == 2);
        dots = 0;
        other = params = false;
        return !dot_segment;
    };
    for (std::size_t i = 0; i < path.size(); ++i) {
        char c = path[i];
        if (c == '%') {
            if (i + 2 >= path.size()) return false;
            const int hi = hex_value(path[i + 1]), lo = hex_value(path[i + 2]);
            if (hi < 0 || lo < 0) return false;
            c = static_cast<char>(hi * 16 + lo);
            i += 2;
        }
        if (c == '/' || c == '\\') {
            if (!segment_ok()) return false;
            continue;
        }
        if (params) continue;
        if (c == ';') params = true;
        else if (c == '.') dots = dots < 3 ? dots + 1 : 3;
        else other = true;
    }
    return segment_ok();
}

// Length of the path separator at path[i] ('/', '\\', %2f, %5c in either case), 0 if none.
std::size_t separator_at(sv path, std::size_t i) noexcept {
    if (i >= path.size()) return 0;
    if (path[i] == '/' || path[i] == '\\') return 1;
    if (path[i] == '%' && i + 2 < path.size() &&
        ((path[i + 1] == '2' && (path[i + 2] == 'f' || path[i + 2] == 'F')) ||
         (path[i + 1] == '5' && (path[i + 2] == 'c' || path[i + 2] == 'C'))))
        return 3;
    return 0;
}

// Builds the route's views once everything that goes into `scratch` is known (appending may
// move the string, so views into it are taken last).
result<route> finish_route(sv name, sv target, bool need_slash, bool by_host, sv prefix,
                           std::string& scratch) {
    if (name.empty() || name.size() > max_tunnel_name)
        return route_fail(route_error::bad_name, "tunnel name length is not 1..63");
    bool upper = false;
    for (char c : name) upper |= is_upper(c);
    scratch.clear();
    if (upper)
        for (char c : name) scratch.push_back(ascii_lower(c));
    const std::size_t target_at = scratch.size();
    if (need_slash) {
        scratch.push_back('/');
        scratch.append(target);
    }
    const sv s(scratch);
    route r;
    r.tunnel = upper ? s.substr(0, name.size()) : name;
    r.target = need_slash ? s.substr(target_at) : target;
    r.by_host = by_host;
    r.prefix = prefix;
    if (!valid_tunnel_name(r.tunnel))
        return route_fail(route_error::bad_name, "tunnel name is not a DNS label of [a-z0-9-]");
    return r;
}

// ---- header lists ---------------------------------------------------------------------------

constexpr sv static_hop_by_hop[] = {"connection", "keep-alive", "proxy-connection",
                                    "te",         "trailer",    "upgrade"};

// What a Connection option may never remove: the message's framing and routing.
bool protected_from_connection(sv name) noexcept {
    return iequals(name, "host") || iequals(name, "content-length") ||
           iequals(name, "transfer-encoding") || iequals(name, "expect");
}

// Fields to drop while writing a head: the Connection options first (so "named by Connection"
// can be asked separately), then fixed names. Views into the head or static strings.
class drop_list {
public:
    static constexpr std::size_t max_connection_options = 32;

    // Collects the options of every Connection line (RFC 9110 §7.6.1), deduplicated, minus the
    // static hop-by-hop names (dropped anyway) and the protected ones.
    status add_connection_options(std::span<const header> headers, bool response) noexcept {
        for (const header& h : headers) {
            if (!iequals(h.name, "connection")) continue;
            sv v = h.value;
            while (!v.empty()) {
                std::size_t comma = v.find(',');
                sv item = v.substr(0, comma);
                v = comma == sv::npos ? sv{} : v.substr(comma + 1);
                while (!item.empty() && (item.front() == ' ' || item.front() == '\t')) item.remove_prefix(1);
                while (!item.empty() && (item.back() == ' ' || item.back() == '\t')) item.remove_suffix(1);
                if (item.empty() || is_static(item) || contains(item)) continue;
                if (iequals(item, "content-length") || iequals(item, "transfer-encoding") ||
                    (!response && protected_from_connection(item)))
                    continue;
                if (n_ == max_connection_options)
                    return fail(errc::limit_exceeded, "Connection names too many fields");
                v_[n_++] = item;
            }
        }
        nconn_ = n_;
        return {};
    }
    void add(sv name) noexcept {
        if (n_ < v_.size()) v_[n_++] = name;
    }
    void add_static_hop_by_hop() noexcept {
        for (sv s : static_hop_by_hop) add(s);
    }
    bool named_by_connection(sv name) const noexcept {
        for (std::size_t i = 0; i < nconn_; ++i)
            if (iequals(v_[i], name)) return true;
        return false;
    }
    std::span<const sv> span() const noexcept { return {v_.data(), n_}; }

private:
    static bool is_static(sv s) noexcept {
        for (sv x : static_hop_by_hop)
            if (iequals(s, x)) return true;
        return false;
    }
    bool contains(sv s) const noexcept {
        for (std::size_t i = 0; i < n_; ++i)
            if (iequals(v_[i], s)) return true;
        return false;
    }
    // 32 options + 6 hop-by-hop + the relay's own names (13): room to spare.
    std::array<sv, 64> v_{};
    std::size_t n_ = 0;
    std::size_t nconn_ = 0;
};

// ---- numbers and JSON -----------------------------------------------------------------------

// Decimal digits of v into buf (no NUL); returns the view.
sv format_u64(std::uint64_t v, char (&buf)[20]) noexcept {
    char* end = buf + sizeof buf;
    char* p = end;
    do {
        *--p = static_cast<char>('0' + v % 10);
        v /= 10;
    } while (v != 0);
    return sv(p, static_cast<std::size_t>(end - p));
}

// Length of the well-formed UTF-8 sequence starting at s[i] (RFC 3629: no overlongs, no
// surrogates, nothing above U+10FFFF), 0 when there is none.
std::size_t utf8_sequence(sv s, std::size_t i) noexcept {
    const auto b = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
    const unsigned c = b(i);
    std::size_t n;
    unsigned lo = 0x80, hi = 0xBF;  // range of the second byte
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) n = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else {
        return 0;
    }
    if (i + n > s.size()) return 0;
    if (b(i + 1) < lo || b(i + 1) > hi) return 0;
    for (std::size_t k = 2; k < n; ++k)
        if (b(i + k) < 0x80 || b(i + k) > 0xBF) return 0;
    return n;
}

// JSON string contents for `s` (no quotes), through `put(const char*, size_t)`: '"' and '\'
// escaped, control characters, DEL and '<' '>' '&' as \u00XX (harmless if a browser sniffs the
// body as HTML), NUL and invalid UTF-8 bytes as \ufffd each.
template <class Put>
void json_escape(sv s, Put&& put) {
    static constexpr char hex[] = "0123456789abcdef";
    for (std::size_t i = 0; i < s.size();) {
        const unsigned char c = static_cast<unsigned char>(s[i]);
        if (c >= 0x80) {
            const std::size_t n = utf8_sequence(s, i);
            if (n == 0) {
                put("\\ufffd", 6);
                ++i;
            } else {
                put(s.data() + i, n);
                i += n;
            }
            continue;
        }
        if (c == 0) {
            put("\\ufffd", 6);  // strict readers (ours included) refuse \u0000
        } else if (c == '"' || c == '\\') {
            const char e[2] = {'\\', static_cast<char>(c)};
            put(e, 2);
        } else if (c == '\n') {
            put("\\n", 2);
        } else if (c == '\r') {
            put("\\r", 2);
        } else if (c == '\t') {
            put("\\t", 2);
        } else if (c < 0x20 || c == 0x7F || c == '<' || c == '>' || c == '&') {
            const char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            put(e, 6);
        } else {
            put(s.data() + i, 1);
        }
        ++i;
    }
}

std::size_t json_escaped_size(sv s) {
    std::size_t n = 0;
    json_escape(s, [&](const char*, std::size_t k) { n += k; });
    return n;
}

// Messages are the relay's own text; bound them anyway, cut at a character boundary.
constexpr std::size_t max_message = 1024;
sv bounded_message(sv m) noexcept {
    if (m.size() <= max_message) return m;
    std::size_t cut = max_message;
    while (cut > 0 && (static_cast<unsigned char>(m[cut]) & 0xC0) == 0x80) --cut;
    return m.substr(0, cut);
}

constexpr error_info table[] = {
    {error_kind::bad_request, 400, "bad_request", "malformed request"},
    {error_kind::bad_tunnel_name, 400, "bad_tunnel_name",
     "tunnel names are 1 to 63 characters of a-z, 0-9 and '-', not starting or ending with '-'"},
    {error_kind::token_missing, 401, "token_missing", "missing bearer token"},
    {error_kind::token_invalid, 401, "token_invalid", "invalid token"},
    {error_kind::token_expired, 401, "token_expired", "token expired"},
    {error_kind::token_not_yet_valid, 401, "token_not_yet_valid", "token not yet valid"},
    {error_kind::forbidden, 403, "forbidden", "the token does not grant access to this tunnel"},
    {error_kind::route_not_found, 404, "not_found",
     "no tunnel in the request: use /t/<tunnel>/<path> or the tunnel's host name"},
    {error_kind::not_found, 404, "tunnel_not_found", "unknown tunnel"},
    {error_kind::method_not_allowed, 405, "method_not_allowed", "method not allowed"},
    {error_kind::request_timeout, 408, "request_timeout", "request not received in time"},
    {error_kind::payload_too_large, 413, "body_too_large", "request body too large"},
    {error_kind::uri_too_long, 414, "uri_too_long", "request target too long"},
    {error_kind::rate_limited, 429, "rate_limited", "rate limit exceeded"},
    {error_kind::headers_too_large, 431, "headers_too_large", "request header fields too large"},
    {error_kind::internal_error, 500, "internal_error", "internal error"},
    {error_kind::not_implemented, 501, "not_implemented", "transfer coding not implemented"},
    {error_kind::bad_gateway, 502, "upstream_unreachable",
     "the agent could not reach the tunnel's target"},
    {error_kind::upstream_bad_response, 502, "upstream_bad_response",
     "the tunnel's target sent an invalid response"},
    {error_kind::tunnel_offline, 503, "tunnel_offline", "tunnel offline"},
    {error_kind::tunnel_busy, 503, "tunnel_busy", "tunnel queue full"},
    {error_kind::circuit_open, 503, "circuit_open",
     "tunnel temporarily disabled after repeated upstream failures"},
    {error_kind::draining, 503, "relay_draining", "relay shutting down"},
    {error_kind::gateway_timeout, 504, "upstream_timeout", "the tunnel's target did not answer in time"},
    {error_kind::version_not_supported, 505, "http_version_not_supported", "HTTP version not supported"},
};
static_assert(std::size(table) == error_kind_count);
constexpr bool table_in_order() {
    for (std::size_t i = 0; i < std::size(table); ++i)
        if (static_cast<std::size_t>(table[i].kind) != i) return false;
    return true;
}
static_assert(table_in_order(), "error table rows must be in error_kind order");

sv www_authenticate(error_kind k) noexcept {
    switch (k) {
    case error_kind::token_missing: return R"(Bearer realm="ferry")";
    case error_kind::token_invalid:
        return R"(Bearer realm="ferry", error="invalid_token", error_description="invalid token")";
    case error_kind::token_expired:
        return R"(Bearer realm="ferry", error="invalid_token", error_description="token expired")";
    case error_kind::token_not_yet_valid:
        return R"(Bearer realm="ferry", error="invalid_token", error_description="token not yet valid")";
    case error_kind::forbidden: return R"(Bearer realm="ferry", error="insufficient_scope")";
    default: return {};
    }
}

void put_hex(char* out, std::span<const std::byte> in) noexcept {
    static constexpr char hex[] = "0123456789abcdef";
    for (std::byte b : in) {
        const unsigned v = std::to_integer<unsigned>(b);
        *out++ = hex[v >> 4];
        *out++ = hex[v & 15];
    }
}

bool all_hex_zero(sv s) noexcept {
    for (char c : s)
        if (c != '0') return false;
    return true;
}

}  // namespace

// ---- routing --------------------------------------------------------------------------------

bool valid_tunnel_name(std::string_view name) noexcept {
    if (name.empty() || name.size() > max_tunnel_name) return false;
    if (name.front() == '-' || name.back() == '-') return false;
    for (char c : name)
        if (!is_name_char(c)) return false;
    return true;
}

route_error route_error_of(const error& e) noexcept {
    switch (e.code) {
    case errc::ok: return route_error::none;
    case errc::unsupported: return route_error::not_found;
    case errc::invalid_argument: return route_error::bad_name;
    default: return route_error::bad_target;
    }
}

result<route> route_request(const http1::request_head& h, std::string_view base_domain,
                            std::string& scratch) {
    // CONNECT takes authority-form only (RFC 9110 §9.3.6); a tunnel never forwards it.
    if (h.method == "CONNECT") return route_fail(route_error::bad_target, "CONNECT is not forwarded");
    // The parser allows an HTTP/1.0 request two Host lines; which one names the tunnel?
    if (count_fields(h.headers, "host") > 1)
        return route_fail(route_error::bad_target, "more than one Host field");
    sv target = h.target;
    sv host = h.host;
    sv authority_form{};      // the authority of an absolute-form target
    bool need_slash = false;  // an absolute-form target whose path is empty ("http://h?q")
    if (target.empty()) return route_fail(route_error::bad_target, "empty request-target");
    if (target.front() != '/') {
        std::size_t skip;
        if (starts_with_ci(target, "http://")) skip = 7;
        else if (starts_with_ci(target, "https://")) skip = 8;
        else return route_fail(route_error::bad_target, "request-target is not origin-form");
        const sv rest = target.substr(skip);
        const std::size_t end = rest.find_first_of("/?#");
        const sv authority = rest.substr(0, end);
        if (authority.empty() || authority.find('@') != sv::npos || !http1::valid_host(authority))
            return route_fail(route_error::bad_target, "bad authority in absolute-form target");
        if (!host.empty() && !iequals(authority, host))
            return route_fail(route_error::bad_target, "absolute-form authority differs from Host");
        if (host.empty()) host = authority;
        authority_form = authority;
        target = end == sv::npos ? sv{} : rest.substr(end);
        need_slash = target.empty() || target.front() != '/';
    }
    if (target.find('#') != sv::npos)
        return route_fail(route_error::bad_target, "fragment in request-target");

    // Host form first: under a tunnel's own host name every path is the service's.
    while (!base_domain.empty() && base_domain.front() == '.') base_domain.remove_prefix(1);
    while (!base_domain.empty() && base_domain.back() == '.') base_domain.remove_suffix(1);
    sv label;
    if (!base_domain.empty() && !host.empty() && host_under(host, base_domain, label)) {
        auto r = finish_route(label, target, need_slash, true, {}, scratch);
        if (r) r->authority = authority_form;
        return r;
    }

    // Path form: /t/<name>[/path][?query].
    if (need_slash || target.size() < 3 || target.substr(0, 3) != "/t/")
        return route_fail(route_error::not_found, "no /t/<tunnel>/ prefix and no tunnel host");
    const sv after = target.substr(3);
    const std::size_t name_end = after.find_first_of("/?");
    const sv name = after.substr(0, name_end);
    sv rest = name_end == sv::npos ? sv{} : after.substr(name_end);
    const sv path = rest.substr(0, rest.find('?'));
    if (!path_is_clean(path))
        return route_fail(route_error::bad_target, "dot segment or bad %-escape in the path");
    // "//x" and "/\\x" (and their escapes, which some upstreams decode first) read as another
    // authority to some servers and to browsers following a redirect there: a leading run of
    // separators collapses to one '/'.
    bool slash = rest.empty() || rest.front() == '?';
    if (!path.empty()) {
        std::size_t k = 0;
        unsigned seps = 0;
        while (std::size_t n = separator_at(rest, k)) {
            k += n;
            ++seps;
        }
        if (seps > 1) {
            rest.remove_prefix(k);
            slash = true;
        }
    }
    auto r = finish_route(name, rest, slash, false, target.substr(0, 3 + name.size()), scratch);
    if (r) r->authority = authority_form;
    return r;
}

// ---- consumer credentials -------------------------------------------------------------------

result<std::string_view> bearer_token(const http1::request_head& h) {
    const header* found = nullptr;
    for (const header& f : h.headers) {
        if (f.name.size() != 13 || !iequals(f.name, "authorization")) continue;
        if (found) return fail(errc::http_bad_request, "more than one Authorization field");
        found = &f;
    }
    if (!found) return sv{};
    const sv v = found->value;
    const std::size_t sp = v.find_first_of(" \t");
    const sv scheme = v.substr(0, sp);
    if (scheme.empty()) return fail(errc::auth, "empty Authorization field");
    if (!iequals(scheme, "bearer")) {
        for (char c : scheme)
            if (static_cast<unsigned char>(c) <= 0x20 || static_cast<unsigned char>(c) >= 0x7F ||
                std::strchr("\"(),/:;<=>?@[\\]{}", c) != nullptr)
                return fail(errc::auth, "malformed Authorization scheme");
        return fail(errc::unsupported, "authorization scheme is not Bearer");
    }
    if (sp == sv::npos) return fail(errc::auth, "Bearer without a token");
    std::size_t i = sp;
    while (i < v.size() && v[i] == ' ') ++i;
    if (i == sp) return fail(errc::auth, "Bearer must be followed by a space");
    const sv token = v.substr(i);
    // token68 (RFC 9110 §11.2): 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
    std::size_t k = 0;
    for (; k < token.size(); ++k) {
        const char c = token[k];
        const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c) ||
                        c == '-' || c == '.' || c == '_' || c == '~' || c == '+' || c == '/';
        if (!ok) break;
    }
    if (k == 0) return fail(errc::auth, "empty or malformed bearer token");
    while (k < token.size() && token[k] == '=') ++k;
    if (k != token.size()) return fail(errc::auth, "malformed bearer token");
    return token;
}

bool consumer_allowed(const jwt::claims& c, std::string_view tunnel, std::string_view owner_sub,
                      bool is_public) noexcept {
    if (is_public) return true;
    if (!owner_sub.empty() && c.sub == owner_sub) return true;
    return !tunnel.empty() && c.grants(tunnel);
}

// ---- upstream request head ------------------------------------------------------------------

status write_upstream_head(buffer_chain& out, const http1::request_head& h, const route& r,
                           const forward_context& ctx) {
    // HTTP/1.1 upstream: exactly one Host (route_request refuses two already).
    if (count_fields(h.headers, "host") > 1) return fail(errc::http_bad_request, "more than one Host field");
    drop_list drop;
    if (auto s = drop.add_connection_options(h.headers, false); !s) return s;
    drop.add_static_hop_by_hop();
    for (sv n : {"x-request-id", "traceparent", "x-forwarded-for", "x-forwarded-proto",
                 "x-forwarded-host", "x-forwarded-prefix"})
        drop.add(n);
    bool tracestate_ok = continues_trace(incoming_traceparent(h), ctx.traceparent);
    for (const header& f : h.headers)
        if (tracestate_ok && iequals(f.name, "tracestate") && !valid_tracestate(f.value)) tracestate_ok = false;
    if (!tracestate_ok) drop.add("tracestate");
    if (!ctx.keep_authorization)
        for (sv n : {"authorization", "proxy-authorization", "cookie"}) drop.add(n);
    // Who the client is: only a trusted proxy may say (otherwise anyone could name any address).
    if (!ctx.trusted_proxy)
        for (sv n : {"forwarded", "x-real-ip"}) drop.add(n);
    const bool proxy_real_ip = ctx.trusted_proxy && h.find("x-real-ip") && !drop.named_by_connection("x-real-ip");

    // X-Forwarded-For: a trusted proxy's list (unless its Connection made it hop-by-hop), then us.
    const bool keep_xff = ctx.trusted_proxy && !drop.named_by_connection("x-forwarded-for");
    std::size_t xff_len = 0;
    if (keep_xff)
        for (const header& f : h.headers)
            if (iequals(f.name, "x-forwarded-for") && !f.value.empty()) xff_len += f.value.size() + 2;
    if (!ctx.client_ip.empty()) xff_len += ctx.client_ip.size();
    else if (xff_len >= 2) xff_len -= 2;
    char stack_buf[1024];
    std::string heap_buf;  // only for unusually long chains
    char* xff = stack_buf;
    if (xff_len > sizeof stack_buf) {
        heap_buf.resize(xff_len);
        xff = heap_buf.data();
    }
    std::size_t at = 0;
    auto put = [&](sv s) {
        if (!s.empty()) std::memcpy(xff + at, s.data(), s.size());
        at += s.size();
    };
    if (keep_xff)
        for (const header& f : h.headers) {
            if (!iequals(f.name, "x-forwarded-for") || f.value.empty()) continue;
            if (at) put(", ");
            put(f.value);
        }
    if (!ctx.client_ip.empty()) {
        if (at) put(", ");
        put(ctx.client_ip);
    }

    header add[9];
    std::size_t n = 0;
    if (at) add[n++] = {"X-Forwarded-For", sv(xff, at)};
    if (!ctx.client_ip.empty() && !proxy_real_ip) add[n++] = {"X-Real-IP", ctx.client_ip};
    add[n++] = {"X-Forwarded-Proto", ctx.tls ? "https" : "http"};
    const sv host = !h.host.empty() ? h.host : r.authority;
    if (!host.empty()) add[n++] = {"X-Forwarded-Host", host};
    if (!r.by_host && !r.prefix.empty()) add[n++] = {"X-Forwarded-Prefix", r.prefix};
    if (!ctx.request_id.empty()) add[n++] = {"X-Request-Id", ctx.request_id};
    if (!ctx.traceparent.empty()) add[n++] = {"traceparent", ctx.traceparent};
    // HTTP/1.1 upstream needs a Host; an HTTP/1.0 consumer may have sent none, and then named
    // the host in an absolute-form target, if at all.
    if (!h.find("host")) add[n++] = {"Host", r.authority.empty() ? r.tunnel : r.authority};
    // No `Connection: close`: the channel carries one request and the relay closes it when the
    // response is complete, while the upstream connection may stay open for the agent's next
    // channel (ferry agent's upstream keep-alive; a plain `ssh -R` closes it with the channel).

    http1::rewrite rw;
    rw.strip_hop_by_hop = false;  // done by `drop`, which also protects the framing fields
    rw.drop = drop.span();
    rw.add = std::span<const header>(add, n);
    return http1::write_request_head(out, h.method, r.target, http1::version::http_1_1, h.headers, rw);
}

// ---- consumer response head -----------------------------------------------------------------

bool consumer_needs_dechunk(const http1::response_head& h, http1::version consumer_version) noexcept {
    return consumer_version == http1::version::http_1_0 && h.body.kind == http1::body_kind::chunked;
}

bool consumer_keep_alive(const http1::response_head& h, http1::version consumer_version,
                         bool keep_alive) noexcept {
    return keep_alive && h.body.kind != http1::body_kind::until_close &&
           !consumer_needs_dechunk(h, consumer_version);
}

status write_consumer_response_head(buffer_chain& out, const http1::response_head& h,
                                    http1::version consumer_version, bool keep_alive,
                                    std::string_view request_id) {
    const bool v10 = consumer_version == http1::version::http_1_0;
    if (h.status_code == 101) return fail(errc::unsupported, "upstream switched protocols");
    const bool interim = h.status_code < 200;
    if (interim && v10) return {};  // HTTP/1.0 clients get no interim responses
    drop_list drop;
    if (auto s = drop.add_connection_options(h.headers, true); !s) return s;
    drop.add_static_hop_by_hop();
    drop.add("x-request-id");
    if (v10) drop.add("transfer-encoding");  // no chunked coding in HTTP/1.0 (de-chunked body)

    header add[2];
    std::size_t n = 0;
    if (!interim) {
        if (!request_id.empty()) add[n++] = {"X-Request-Id", request_id};
        if (!consumer_keep_alive(h, consumer_version, keep_alive)) add[n++] = {"Connection", "close"};
        else if (v10) add[n++] = {"Connection", "keep-alive"};
    }
    http1::rewrite rw;
    rw.strip_hop_by_hop = false;
    rw.drop = drop.span();
    rw.add = std::span<const header>(add, n);
    return http1::write_response_head(out, http1::version::http_1_1, h.status_code, h.reason,
                                      h.headers, rw);
}

// ---- errors ---------------------------------------------------------------------------------

std::span<const error_info> error_table() noexcept { return table; }

const error_info& info(error_kind k) noexcept {
    const auto i = static_cast<std::size_t>(k);
    return i < std::size(table) ? table[i] : table[static_cast<std::size_t>(error_kind::internal_error)];
}

status write_error(buffer_chain& out, error_kind k, std::string_view message,
                   std::string_view request_id, bool keep_alive, const error_extra& x) {
    const error_info& e = info(k);
    if (message.empty()) message = e.default_message;
    message = bounded_message(message);

    static constexpr sv p1 = R"({"error":{"code":")";
    static constexpr sv p2 = R"(","message":")";
    static constexpr sv p3 = R"(","request_id":")";
    static constexpr sv p4 = R"("}})";
    const std::size_t body_len = p1.size() + e.code.size() + p2.size() + json_escaped_size(message) +
                                 p3.size() + json_escaped_size(request_id) + p4.size();

    char cl[20], retry[20], lim[20], rem[20], reset[20];
    header add[13];
    std::size_t n = 0;
    add[n++] = {"Content-Type", "application/json"};
    add[n++] = {"Content-Length", format_u64(body_len, cl)};
    add[n++] = {"Cache-Control", "no-store"};
    add[n++] = {"X-Content-Type-Options", "nosniff"};
    if (!request_id.empty()) add[n++] = {"X-Request-Id", request_id};
    if (const sv w = www_authenticate(k); !w.empty()) add[n++] = {"WWW-Authenticate", w};
    std::uint32_t retry_after = x.retry_after_s;
    if ((e.status == 429 || e.status == 503) && retry_after == 0) retry_after = 1;
    if (retry_after > 0) add[n++] = {"Retry-After", format_u64(retry_after, retry)};
    if (k == error_kind::rate_limited || x.rate_limit > 0) {
        add[n++] = {"X-RateLimit-Limit", format_u64(x.rate_limit, lim)};
        add[n++] = {"X-RateLimit-Remaining", format_u64(x.rate_remaining, rem)};
        add[n++] = {"X-RateLimit-Reset", format_u64(x.rate_reset_s, reset)};
    }
    if (!x.allow.empty()) add[n++] = {"Allow", x.allow};
    if (!keep_alive) add[n++] = {"Connection", "close"};
    else if (x.consumer_version == http1::version::http_1_0) add[n++] = {"Connection", "keep-alive"};

    http1::rewrite rw;
    rw.add = std::span<const header>(add, n);
    if (auto s = http1::write_response_head(out, http1::version::http_1_1, e.status,
                                            http1::reason_phrase(e.status), {}, rw);
        !s)
        return s;
    if (x.head_request) return {};

    mut_bytes room = out.prepare(body_len);
    char* p = reinterpret_cast<char*>(room.data());
    auto put = [&](const char* s, std::size_t len) {
        std::memcpy(p, s, len);
        p += len;
    };
    auto put_sv = [&](sv s) { put(s.data(), s.size()); };
    put_sv(p1);
    put_sv(e.code);
    put_sv(p2);
    json_escape(message, put);
    put_sv(p3);
    json_escape(request_id, put);
    put_sv(p4);
    out.commit(body_len);
    return {};
}

error_kind kind_for_token_error(errc e) noexcept {
    switch (e) {
    case errc::token_expired: return error_kind::token_expired;
    case errc::token_not_yet_valid: return error_kind::token_not_yet_valid;
    case errc::crypto: return error_kind::internal_error;
    default: return error_kind::token_invalid;
    }
}

error_kind kind_for_http_error(errc e) noexcept {
    switch (e) {
    case errc::http_body_too_large: return error_kind::payload_too_large;
    case errc::http_uri_too_long: return error_kind::uri_too_long;
    case errc::http_header_too_large:
    case errc::http_too_many_headers: return error_kind::headers_too_large;
    case errc::http_not_implemented: return error_kind::not_implemented;
    case errc::http_unsupported_version: return error_kind::version_not_supported;
    case errc::timeout: return error_kind::request_timeout;
    default: return error_kind::bad_request;
    }
}

error_kind kind_for(route_error e) noexcept {
    switch (e) {
    case route_error::not_found: return error_kind::route_not_found;
    case route_error::bad_name: return error_kind::bad_tunnel_name;
    case route_error::bad_target:
    case route_error::none: break;
    }
    return error_kind::bad_request;
}

// ---- request ids and trace context ----------------------------------------------------------

void format_request_id(std::span<const std::byte, 16> rnd, char (&out)[32]) noexcept {
    put_hex(out, rnd);
}

bool valid_traceparent(std::string_view v) noexcept {
    // Version 00 only, exactly 55 characters (issue 11: a version we do not know restarts).
    if (v.size() != traceparent_size || v[0] != '0' || v[1] != '0') return false;
    if (v[2] != '-' || v[35] != '-' || v[52] != '-') return false;
    for (std::size_t i = 3; i < 55; ++i)
        if (i != 35 && i != 52 && !is_lower_hex(v[i])) return false;
    return !all_hex_zero(v.substr(3, 32)) && !all_hex_zero(v.substr(36, 16));
}

void make_traceparent(std::string_view incoming, std::span<const std::byte, 24> rnd,
                      char (&out)[traceparent_size], bool sample_new) noexcept {
    std::memcpy(out, "00-", 3);
    const bool keep = valid_traceparent(incoming);
    if (keep) {
        std::memcpy(out + 3, incoming.data() + 3, 32);
    } else {
        put_hex(out + 3, rnd.subspan<0, 16>());
        if (all_hex_zero(sv(out + 3, 32))) out[34] = '1';
    }
    out[35] = '-';
    put_hex(out + 36, rnd.subspan<16, 8>());
    if (all_hex_zero(sv(out + 36, 16))) out[51] = '1';
    out[52] = '-';
    if (keep) {
        out[53] = incoming[53];
        out[54] = incoming[54];
    } else {
        out[53] = '0';
        out[54] = sample_new ? '1' : '0';
    }
}

std::string make_traceparent(std::string_view incoming, std::span<const std::byte, 24> rnd,
                             bool sample_new) {
    char buf[traceparent_size];
    make_traceparent(incoming, rnd, buf, sample_new);
    return std::string(buf, sizeof buf);
}

bool valid_tracestate(std::string_view v) noexcept {
    if (v.size() > 512) return false;
    auto lc = [](char c) { return c >= 'a' && c <= 'z'; };
    auto key_char = [&](char c) { return lc(c) || is_digit(c) || c == '_' || c == '-' || c == '*' || c == '/'; };
    unsigned members = 0;
    std::size_t i = 0;
    while (i <= v.size()) {
        std::size_t j = v.find(',', i);
        if (j == sv::npos) j = v.size();
        sv m = v.substr(i, j - i);
        while (!m.empty() && (m.front() == ' ' || m.front() == '\t')) m.remove_prefix(1);
        while (!m.empty() && (m.back() == ' ' || m.back() == '\t')) m.remove_suffix(1);
        if (!m.empty()) {
            if (++members > 32) return false;
            const std::size_t eq = m.find('=');
            if (eq == sv::npos) return false;
            const sv key = m.substr(0, eq), value = m.substr(eq + 1);
            // key: simple (lcalpha + up to 255 more) or multi-tenant tenant@system.
            const std::size_t at = key.find('@');
            if (at == sv::npos) {
                if (key.empty() || key.size() > 256 || !lc(key[0])) return false;
                for (char c : key)
                    if (!key_char(c)) return false;
            } else {
                const sv tenant = key.substr(0, at), system = key.substr(at + 1);
                if (tenant.empty() || tenant.size() > 241 || !(lc(tenant[0]) || is_digit(tenant[0]))) return false;
                if (system.empty() || system.size() > 14 || !lc(system[0])) return false;
                for (char c : tenant)
                    if (!key_char(c)) return false;
                for (char c : system)
                    if (!key_char(c)) return false;
            }
            // value: 0*255(chr) nblk-chr; chr = %x20 / nblk-chr; nblk-chr = %x21-2B / %x2D-3C / %x3E-7E
            if (value.empty() || value.size() > 256 || value.back() == ' ') return false;
            for (char c : value) {
                const unsigned char u = static_cast<unsigned char>(c);
                if (u < 0x20 || u > 0x7e || c == ',' || c == '=') return false;
            }
        }
        i = j + 1;
    }
    return true;
}

std::string_view incoming_traceparent(const http1::request_head& h) noexcept {
    const header* found = nullptr;
    for (const header& f : h.headers) {
        if (f.name.size() != 11 || !iequals(f.name, "traceparent")) continue;
        if (found) return {};
        found = &f;
    }
    return found ? found->value : sv{};
}

bool continues_trace(std::string_view incoming, std::string_view outgoing) noexcept {
    return valid_traceparent(incoming) && outgoing.size() >= 35 &&
           outgoing.substr(3, 32) == incoming.substr(3, 32);
}

}  // namespace ferry::relay::ingress
