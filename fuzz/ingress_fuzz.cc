// Fuzz target `ingress`: the relay's consumer ingress logic (src/relay/ingress) on arbitrary
// heads. The input is parsed as a request head and as a response head (http1 parsers), then:
//   * route_request: a route names a valid tunnel, its target is origin-form without a fragment,
//     and a path-form route came from "/t/<that tunnel>" and has no dot segment in any spelling
//     (checked by an independent, fully decoding reading) and no leading "//";
//   * bearer_token: a token comes from the only Authorization field and is token68;
//   * write_upstream_head: the head re-parses, with the same method, the route's target,
//     HTTP/1.1, the same body framing (nothing can smuggle the body past the upstream), the
//     same Host, no credentials unless kept, nothing the Connection lines named (except the
//     framing fields), exactly our Connection/X-Request-Id/traceparent, our address last in
//     X-Forwarded-For;
//   * write_consumer_response_head: the head re-parses with the same status, the framing the
//     consumer must see, exactly one X-Request-Id and the right Connection;
//   * write_error with the input as message: a valid response whose body is valid JSON with the
//     right code and Content-Length;
//   * make_traceparent always yields a valid traceparent.
// Nothing here must crash on any input; a failed write leaves the output empty.
//
// Input layout: byte 0 selects options (base domain, keep_authorization, TLS, consumer version,
// keep-alive, error kind); byte 1 how many of the last bytes form the request id; the rest is the
// head. (Heads are not fed in pieces: the http1 target covers incremental parsing.)
#include <cctype>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "proto/http1/http1.hh"
#include "proto/jwt/json.hh"
#include "relay/ingress.hh"

using namespace ferry;
using namespace ferry::relay::ingress;
using ferry::http1::iequals;

namespace {

#define CHECK(c)                                                                                \
    do {                                                                                        \
        if (!(c)) {                                                                             \
            std::fprintf(stderr, "ingress_fuzz invariant failed: %s (line %d)\n", #c, __LINE__); \
            std::abort();                                                                       \
        }                                                                                       \
    } while (0)

std::string lower(std::string_view s) {
    std::string o(s);
    for (char& c : o)
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c | 0x20);
    return o;
}

int hexv(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

// Independent reading of a path: decode every %XX, treat '\' as '/', cut ";params", and say
// whether a "." or ".." segment appears.
bool has_dot_segment(std::string_view path) {
    std::string d;
    for (std::size_t i = 0; i < path.size(); ++i) {
        if (path[i] == '%' && i + 2 < path.size() && hexv(path[i + 1]) >= 0 && hexv(path[i + 2]) >= 0) {
            d.push_back(static_cast<char>(hexv(path[i + 1]) * 16 + hexv(path[i + 2])));
            i += 2;
        } else {
            d.push_back(path[i]);
        }
    }
    for (char& c : d)
        if (c == '\\') c = '/';
    std::size_t start = 0;
    while (start <= d.size()) {
        std::size_t end = d.find('/', start);
        if (end == std::string::npos) end = d.size();
        std::string_view seg(d.data() + start, end - start);
        seg = seg.substr(0, seg.find(';'));
        if (seg == "." || seg == "..") return true;
        start = end + 1;
    }
    return false;
}

bool is_token68(std::string_view t) {
    std::size_t k = 0;
    while (k < t.size() && (std::isalnum(static_cast<unsigned char>(t[k])) || std::strchr("-._~+/", t[k]) != nullptr) &&
           t[k] != '\0')
        ++k;
    if (k == 0) return false;
    while (k < t.size() && t[k] == '=') ++k;
    return k == t.size();
}

std::size_t count(const http1::message_head& h, std::string_view name) {
    std::size_t n = 0;
    for (const auto& f : h.headers) n += iequals(f.name, name);
    return n;
}

bool connection_named(const http1::message_head& h, std::string_view name) {
    for (const auto& f : h.headers)
        if (iequals(f.name, "connection") && http1::has_token(f.value, name)) return true;
    return false;
}

http1::limits roomy(std::size_t size, std::size_t headers) {
    http1::limits l;
    l.max_head_bytes = size + 1;
    l.max_start_line = size;
    l.max_headers = headers + 16;
    return l;
}

void check_request(std::string_view head, unsigned sel, std::string_view request_id) {
    http1::request_parser ps;
    if (!ps.parse(as_bytes(head)).done()) return;
    const http1::request_head& h = ps.head();
    const std::string_view base = (sel & 1) ? "tunnels.example" : "";

    // ---- bearer token
    auto tok = bearer_token(h);
    if (tok && !tok->empty()) {
        CHECK(count(h, "authorization") == 1);
        CHECK(is_token68(*tok));
        const std::string_view v = h.value("authorization");
        CHECK(tok->data() >= v.data() && tok->data() + tok->size() <= v.data() + v.size());
    }
    if (tok && tok->empty()) CHECK(count(h, "authorization") == 0);
    if (count(h, "authorization") > 1) CHECK(!tok);

    // ---- route
    std::string scratch;
    auto rt = route_request(h, base, scratch);
    if (!rt) {
        CHECK(route_error_of(rt.err()) != route_error::none);
        return;
    }
    const route& r = *rt;
    CHECK(valid_tunnel_name(r.tunnel));
    CHECK(!r.target.empty() && r.target.front() == '/');
    CHECK(r.target.find('#') == std::string_view::npos);
    CHECK(h.method != "CONNECT");
    if (r.by_host) {
        CHECK(!base.empty());
        CHECK(r.prefix.empty());
    } else {
        CHECK(lower(r.prefix) == "/t/" + std::string(r.tunnel));
        CHECK(r.target.size() < 2 || r.target.substr(0, 2) != "//");
        // No other spelling of a second separator at the start either (issue 11).
        const std::string t = lower(r.target.substr(0, 4));
        CHECK(t.substr(0, 2) != "/\\" && t != "/%2f" && t != "/%5c");
        CHECK(!has_dot_segment(r.target.substr(0, r.target.find('?'))));
        // The route came from the target as sent (origin-form or absolute-form).
        CHECK(h.target.find(r.prefix) != std::string_view::npos);
    }

    // ---- upstream head
    forward_context ctx;
    ctx.client_ip = "198.51.100.9";
    ctx.tls = (sel & 4) != 0;
    ctx.request_id = request_id;
    ctx.keep_authorization = (sel & 2) != 0;
    ctx.trusted_proxy = (sel & 32) != 0;
    const std::byte rnd[24] = {std::byte(sel), std::byte(1), std::byte(2), std::byte(3)};
    char tp[traceparent_size];
    make_traceparent(incoming_traceparent(h), std::span<const std::byte, 24>(rnd), tp);
    CHECK(valid_traceparent(std::string_view(tp, sizeof tp)));
    ctx.traceparent = std::string_view(tp, sizeof tp);

    buffer_chain out;
    status st = write_upstream_head(out, h, r, ctx);
    if (!st) {
        CHECK(out.size() == 0);
        CHECK(st.code() == errc::invalid_argument || st.code() == errc::limit_exceeded ||
              st.code() == errc::http_bad_request);
        return;
    }
    const std::string up = out.to_string();
    http1::request_parser re(roomy(up.size(), h.headers.size()));
    auto p = re.parse(as_bytes(up));
    if (!p.done()) {
        std::fprintf(stderr, "upstream head does not parse (%s):\n%s\n", to_string(p.err.code), up.c_str());
        CHECK(false);
    }
    CHECK(p.consumed == up.size());
    const http1::request_head& u = re.head();
    CHECK(u.method == h.method);
    CHECK(u.target == r.target);
    CHECK(u.ver == http1::version::http_1_1);
    // Same framing: the body is forwarded verbatim.
    CHECK(u.body.kind == h.body.kind);
    CHECK(u.body.length == h.body.length);
    if (h.find("host")) CHECK(u.host == h.host);
    CHECK(count(u, "host") == 1);
    if (!ctx.keep_authorization) {
        CHECK(count(u, "authorization") == 0);
        CHECK(count(u, "cookie") == 0);
        CHECK(count(u, "proxy-authorization") == 0);
    }
    for (std::string_view hop : {"keep-alive", "proxy-connection", "te", "trailer", "upgrade"})
        CHECK(count(u, hop) == 0);
    CHECK(count(u, "connection") == 0);  // hop-by-hop: the agent decides upstream keep-alive
    CHECK(u.keep_alive && !u.upgrade);
    CHECK(count(u, "x-request-id") == (request_id.empty() ? 0u : 1u));
    if (!request_id.empty()) CHECK(u.value("x-request-id") == request_id);
    CHECK(count(u, "traceparent") == 1 && u.value("traceparent") == ctx.traceparent);
    CHECK(count(u, "x-forwarded-for") == 1);
    const std::string_view xff = u.value("x-forwarded-for");
    CHECK(xff.size() >= ctx.client_ip.size() && xff.substr(xff.size() - ctx.client_ip.size()) == ctx.client_ip);
    if (!ctx.trusted_proxy) {
        // Who the client is comes from the relay alone.
        CHECK(xff == ctx.client_ip);
        CHECK(count(u, "forwarded") == 0);
        CHECK(count(u, "x-real-ip") == 1 && u.value("x-real-ip") == ctx.client_ip);
    }
    // tracestate only with a continued trace, and only in W3C syntax.
    for (const auto& f : u.headers) {
        if (lower(f.name) != "tracestate") continue;
        CHECK(continues_trace(incoming_traceparent(h), ctx.traceparent));
        CHECK(valid_tracestate(f.value));
    }
    CHECK(u.value("x-forwarded-proto") == (ctx.tls ? "https" : "http"));
    // Nothing the consumer's Connection named survives, except the framing/routing fields and
    // the fields the relay sets itself.
    for (const auto& f : u.headers) {
        if (!connection_named(h, f.name)) continue;
        const std::string n = lower(f.name);
        CHECK(n == "host" || n == "content-length" || n == "transfer-encoding" || n == "expect" ||
              n == "connection" || n == "x-request-id" || n == "traceparent" || n == "x-forwarded-for" ||
              n == "x-forwarded-proto" || n == "x-forwarded-host" || n == "x-forwarded-prefix" ||
              n == "x-real-ip");
    }
}

void check_response(std::string_view head, unsigned sel, std::string_view request_id) {
    http1::response_parser ps;
    ps.set_request_method((sel & 64) ? "HEAD" : "GET");
    if (!ps.parse(as_bytes(head)).done()) return;
    const http1::response_head& h = ps.head();
    const http1::version v = (sel & 8) ? http1::version::http_1_0 : http1::version::http_1_1;
    const bool ka = (sel & 16) != 0;
    buffer_chain out;
    status st = write_consumer_response_head(out, h, v, ka, request_id);
    if (!st) {
        CHECK(out.size() == 0);
        CHECK(h.status_code == 101 || st.code() == errc::invalid_argument || st.code() == errc::limit_exceeded);
        return;
    }
    if (h.status_code < 200 && v == http1::version::http_1_0) {
        CHECK(out.size() == 0);
        return;
    }
    const std::string s = out.to_string();
    http1::response_parser re(roomy(s.size(), h.headers.size()));
    re.set_request_method((sel & 64) ? "HEAD" : "GET");
    auto p = re.parse(as_bytes(s));
    if (!p.done()) {
        std::fprintf(stderr, "consumer head does not parse (%s):\n%s\n", to_string(p.err.code), s.c_str());
        CHECK(false);
    }
    const http1::response_head& c = re.head();
    CHECK(c.status_code == h.status_code);
    if (consumer_needs_dechunk(h, v)) {
        CHECK(count(c, "transfer-encoding") == 0);
        CHECK(c.body.kind == http1::body_kind::until_close);
    } else if (v == http1::version::http_1_0 && h.body.kind == http1::body_kind::until_close) {
        CHECK(c.body.kind == http1::body_kind::until_close);
    } else {
        CHECK(c.body.kind == h.body.kind);
        CHECK(c.body.length == h.body.length);
    }
    for (std::string_view hop : {"keep-alive", "proxy-connection", "te", "trailer", "upgrade"})
        CHECK(count(c, hop) == 0);
    if (h.status_code >= 200) {
        CHECK(count(c, "x-request-id") == (request_id.empty() ? 0u : 1u));
        const bool keep = consumer_keep_alive(h, v, ka);
        CHECK(c.keep_alive == keep);
        CHECK(count(c, "connection") <= 1);
    }
}

void check_error(std::string_view message, unsigned sel, std::string_view request_id) {
    const auto kinds = error_table();
    const error_info& e = kinds[(sel >> 3) % kinds.size()];
    error_extra x;
    x.retry_after_s = sel;
    x.head_request = (sel & 2) != 0;
    buffer_chain out;
    status st = write_error(out, e.kind, message, request_id, (sel & 16) != 0, x);
    if (!st) {
        CHECK(out.size() == 0 && st.code() == errc::invalid_argument);
        return;
    }
    const std::string s = out.to_string();
    http1::response_parser re(roomy(s.size(), 16));
    auto p = re.parse(as_bytes(s));
    CHECK(p.done());
    CHECK(re.head().status_code == e.status);
    CHECK(re.head().body.kind == http1::body_kind::content_length);
    const std::string_view body = std::string_view(s).substr(p.consumed);
    if (x.head_request) {
        CHECK(body.empty());
        return;
    }
    CHECK(re.head().body.length == body.size());
    jwt::json::limits jl;
    jl.max_string = 1 << 20;
    jwt::json::document doc;
    CHECK(jwt::json::parse(body, jl, doc));
    const auto* err = doc.find(doc.root(), "error");
    CHECK(err != nullptr);
    const auto* code = doc.find(*err, "code");
    CHECK(code != nullptr && doc.str(*code) == e.code);
    const auto* rid = doc.find(*err, "request_id");
    CHECK(rid != nullptr);
    if (jwt::json::valid_utf8(request_id) && request_id.find('\0') == std::string_view::npos) CHECK(doc.str(*rid) == request_id);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 2) return 0;
    const unsigned sel = data[0];
    std::string_view rest(reinterpret_cast<const char*>(data + 2), size - 2);
    const std::size_t id_len = std::min<std::size_t>(data[1] % 48, rest.size());
    std::string_view request_id = rest.substr(rest.size() - id_len);
    // Header values lose surrounding whitespace when parsed: the relay's ids have none.
    while (!request_id.empty() && (request_id.front() == ' ' || request_id.front() == '\t')) request_id.remove_prefix(1);
    while (!request_id.empty() && (request_id.back() == ' ' || request_id.back() == '\t')) request_id.remove_suffix(1);

    check_request(rest, sel, request_id);
    check_response(rest, sel, request_id);
    check_error(rest, sel, request_id);

    // The trace context helpers on arbitrary text.
    std::byte rnd[24];
    for (std::size_t i = 0; i < 24; ++i) rnd[i] = std::byte(i < rest.size() ? rest[i] : 0);
    char tp[traceparent_size];
    make_traceparent(rest.substr(0, 64), std::span<const std::byte, 24>(rnd), tp);
    const std::string_view out(tp, sizeof tp);
    CHECK(valid_traceparent(out));
    CHECK(continues_trace(rest.substr(0, 64), out) == valid_traceparent(rest.substr(0, 64)));
    (void)valid_tunnel_name(rest.substr(0, 70));
    return 0;
}
