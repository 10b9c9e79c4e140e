#include "proto/http1/parser.hh"

#include <algorithm>
#include <cstring>

#include "proto/http1/scan.hh"

namespace ferry::http1 {

using detail::is_ows;
using detail::is_tchar;

// ---- helpers (types.hh) ---------------------------------------------------------------------

namespace {

// Calls f(element) for each non-empty element of a comma-separated list, OWS trimmed. Stops
// early when f returns true; returns whether it did.
template <class F>
bool for_each_element(std::string_view v, F&& f) {
    std::size_t i = 0;
    while (i <= v.size()) {
        std::size_t j = i;  // lists are short: a plain loop beats a memchr call
        while (j < v.size() && v[j] != ',') ++j;
        std::size_t a = i, b = j;
        while (a < b && is_ows(v[a])) ++a;
        while (b > a && is_ows(v[b - 1])) --b;
        if (b > a && f(v.substr(a, b - a))) return true;
        i = j + 1;
    }
    return false;
}

// True when the comma-separated list has an empty element ("chunked,", ", gzip", "a,,b").
// RFC 9110 5.6.1 lets recipients ignore them; for Transfer-Encoding we refuse them instead, as
// llhttp does: a proxy and a server that disagree on where a coding list ends disagree on the
// framing.
bool has_empty_element(std::string_view v) noexcept {
    std::size_t i = 0;
    while (i <= v.size()) {
        std::size_t j = i;
        while (j < v.size() && v[j] != ',') ++j;
        std::size_t a = i;
        while (a < j && is_ows(v[a])) ++a;
        if (a == j) return true;
        i = j + 1;
    }
    return false;
}

}  // namespace

bool valid_host(std::string_view v) noexcept {
    if (v.empty()) return true;
    std::size_t i = 0;
    if (v.front() == '[') {
        const std::size_t close = v.find(']');
        if (close == std::string_view::npos || close < 3) return false;
        for (std::size_t k = 1; k < close; ++k) {
            const char c = v[k];
            const bool ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') ||
                            c == ':' || c == '.' || c == 'v' || c == 'V';
            if (!ok) return false;
        }
        i = close + 1;
    } else {
        for (; i < v.size() && v[i] != ':'; ++i) {
            const char c = v[i];
            if (c == '%') {
                if (i + 2 >= v.size() || detail::hex_value(v[i + 1]) > 15 || detail::hex_value(v[i + 2]) > 15) return false;
                i += 2;
                continue;
            }
            const bool unreserved = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                                    c == '-' || c == '.' || c == '_' || c == '~';
            const bool sub_delim = c == '!' || c == '$' || c == '&' || c == '\'' || c == '(' || c == ')' ||
                                   c == '*' || c == '+' || c == ',' || c == ';' || c == '=';
            if (!unreserved && !sub_delim) return false;
        }
    }
    if (i == v.size()) return true;
    if (v[i] != ':') return false;
    for (++i; i < v.size(); ++i)
        if (v[i] < '0' || v[i] > '9') return false;
    return true;
}

bool has_token(std::string_view value, std::string_view token) noexcept {
    return for_each_element(value, [&](std::string_view el) { return iequals(el, token); });
}

const header* find_header(std::span<const header> headers, std::string_view name) noexcept {
    for (const header& h : headers)
        if (iequals(h.name, name)) return &h;
    return nullptr;
}

int status_for(errc code) noexcept {
    switch (code) {
    case errc::http_header_too_large:
    case errc::http_too_many_headers: return 431;
    case errc::http_uri_too_long: return 414;
    case errc::http_body_too_large: return 413;
    case errc::http_not_implemented: return 501;
    case errc::http_unsupported_version: return 505;
    default: return 400;
    }
}

std::string_view reason_phrase(int s) noexcept {
    switch (s) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 417: return "Expectation Failed";
    case 426: return "Upgrade Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "";
    }
}

// ---- head parser --------------------------------------------------------------------------------

namespace detail {

head_parser_base::head_parser_base(role r, const limits& l, std::span<header> storage)
    : role_(r), lim_(l), store_(storage), max_headers_(std::min(l.max_headers, storage.size())) {}

head_parser_base::head_parser_base(role r, const limits& l)
    : role_(r),
      lim_(l),
      owned_(l.max_headers ? new header[l.max_headers] : nullptr),
      store_(owned_.get(), l.max_headers),
      max_headers_(l.max_headers) {}

head_parser_base::~head_parser_base() = default;

void head_parser_base::restart() noexcept {
    line_start_ = 0;
    search_ = 0;
    count_ = 0;
    in_start_line_ = true;
    finished_ = false;
    last_ = progress{};
    f_ = fields{};
    ver_ = version::http_1_1;
    method_ = target_ = reason_ = host_ = {};
    status_code_ = 0;
    // req_/resp_ are rewritten whole by finish(); only drop the views of the old head.
    req_.headers = {};
    resp_.headers = {};
}

void head_parser_base::reset() noexcept {
    restart();
    base_ = nullptr;
    seen_ = 0;
}

progress head_parser_base::fail(errc c, const char* detail, std::size_t offset) noexcept {
    finished_ = true;
    last_ = progress{};
    last_.kind = outcome::failed;
    last_.err = error(c, detail, static_cast<std::uint32_t>(std::min<std::size_t>(offset, UINT32_MAX)));
    last_.at = in_start_line_ ? stage::start_line : stage::header_line;
    return last_;
}

progress head_parser_base::run(bytes in) noexcept {
    if (finished_) return last_;
    const char* p = reinterpret_cast<const char*>(in.data());
    const std::size_t n = in.size();
    // The views and offsets we keep are relative to base_: a moved or shrunk buffer means we
    // must start over (documented in parser.hh).
    if (base_ != nullptr && (p != base_ || n < seen_)) restart();
    base_ = p;
    seen_ = n;

    const std::size_t hard = std::min(n, lim_.max_head_bytes);
    // Line state lives in locals inside the loops (the header stores could alias members) and
    // is written back whenever we return need_more.
    std::size_t ls = line_start_;
    std::size_t sr = search_;

    // A CR was found at `pos`; returns false (with `out` set) unless its LF is there too.
    auto line_end = [&](const char* q, std::size_t pos, progress& out) -> bool {
        if (*q != '\r') {
            const char* why = *q == '\n' ? "bare LF" : *q == '\0' ? "NUL byte" : "control character";
            out = fail(errc::http_bad_request, why, pos);
            return false;
        }
        // The LF at pos+1 must still be inside the head limit.
        if (pos + 2 > lim_.max_head_bytes) {
            out = fail(errc::http_header_too_large, "head too large", pos);
            return false;
        }
        if (pos + 1 >= n) {
            line_start_ = ls;
            search_ = pos;  // resume at the CR
            out = progress{};
            out.at = in_start_line_ ? stage::start_line : stage::header_line;
            return false;
        }
        if (p[pos + 1] != '\n') {
            out = fail(errc::http_bad_request, "bare CR", pos);
            return false;
        }
        return true;
    };
    auto out_of_input = [&](std::size_t bound) -> progress {
        line_start_ = ls;
        search_ = bound;
        if (bound >= lim_.max_head_bytes) return fail(errc::http_header_too_large, "head too large", bound);
        progress more;
        more.at = in_start_line_ ? stage::start_line : stage::header_line;
        return more;
    };

    progress out;
    while (in_start_line_) {
        // Never scan past the start line's own limit (+1: where its CR may sit).
        // (ls <= hard always; written without `ls + max + 1` so a huge limit cannot overflow.)
        const bool capped = hard - ls > lim_.max_start_line;
        const std::size_t bound = capped ? ls + lim_.max_start_line + 1 : hard;
        const char* q = find_special(p + sr, p + bound);
        const std::size_t pos = static_cast<std::size_t>(q - p);
        scanned_ += pos - sr;
        if (pos == bound) {
            if (capped) {
                line_start_ = ls;
                search_ = bound;
                return fail(role_ == role::request ? errc::http_uri_too_long : errc::http_header_too_large,
                            role_ == role::request ? "request line too long" : "status line too long", bound);
            }
            return out_of_input(bound);
        }
        if (!line_end(q, pos, out)) return out;
        const char* s = p + ls;
        if (s == q) {
            if (role_ == role::response) return fail(errc::http_bad_request, "empty line before status line", pos);
            // RFC 9112 §2.2: ignore empty lines before a request line (robustness after a body
            // followed by a stray CRLF). They count towards max_head_bytes.
            ls = sr = pos + 2;
            continue;
        }
        bool ok = role_ == role::request ? parse_request_line(s, q, ls, out) : parse_status_line(s, q, ls, out);
        in_start_line_ = false;
        if (!ok) return out;
        ls = sr = pos + 2;
    }
    for (;;) {
        const char* q = find_special(p + sr, p + hard);
        const std::size_t pos = static_cast<std::size_t>(q - p);
        scanned_ += pos - sr;
        if (pos == hard) return out_of_input(hard);
        if (!line_end(q, pos, out)) return out;
        const char* s = p + ls;
        if (s == q) return finish(p, pos + 2);
        if (!parse_field_line(s, q, ls, out)) return out;
        ls = sr = pos + 2;
    }
}

bool head_parser_base::parse_version(const char* v, std::size_t off, progress& out) noexcept {
    // Precondition: 8 bytes readable at v (the caller checked the line length).
    if (std::memcmp(v, "HTTP/", 5) != 0 || v[6] != '.' || v[5] < '0' || v[5] > '9' || v[7] < '0' ||
        v[7] > '9') {
        out = fail(errc::http_bad_request, "invalid HTTP version", off);
        return false;
    }
    if (v[5] == '1' && v[7] == '1') {
        ver_ = version::http_1_1;
    } else if (v[5] == '1' && v[7] == '0') {
        ver_ = version::http_1_0;
    } else {
        out = fail(errc::http_unsupported_version, "unsupported HTTP version", off);
        return false;
    }
    return true;
}

// request-line = method SP request-target SP HTTP-version (RFC 9112 §3), single SPs only.
// Precondition: [s, e) holds no c_special byte.
bool head_parser_base::parse_request_line(const char* s, const char* e, std::size_t off,
                                          progress& out) noexcept {
    const char* i = s;
    i = skip_tchars(i, e);
    if (i == s || i == e || *i != ' ') {
        out = fail(errc::http_bad_request, i == s ? "invalid method" : "invalid character in method",
                   off + static_cast<std::size_t>(i - s));
        return false;
    }
    method_ = std::string_view(s, static_cast<std::size_t>(i - s));
    const char* t = ++i;
    i = find_non_target(t, e);
    if (i == t || i == e || *i != ' ') {
        const char* why = i == t ? "missing request target"
                          : i == e ? "missing HTTP version"
                                   : "invalid character in request target";
        out = fail(errc::http_bad_request, why, off + static_cast<std::size_t>(i - s));
        return false;
    }
    target_ = std::string_view(t, static_cast<std::size_t>(i - t));
    ++i;
    if (e - i != 8) {
        out = fail(errc::http_bad_request, "invalid HTTP version", off + static_cast<std::size_t>(i - s));
        return false;
    }
    return parse_version(i, off + static_cast<std::size_t>(i - s), out);
}

// status-line = HTTP-version SP status-code SP [ reason-phrase ] (RFC 9112 §4). The SP before
// an empty reason is commonly left out; we accept that.
bool head_parser_base::parse_status_line(const char* s, const char* e, std::size_t off,
                                         progress& out) noexcept {
    const std::size_t len = static_cast<std::size_t>(e - s);
    if (len < 12 || s[8] != ' ') {
        // Still tell "HTTP/2.0 ..." (505-shaped) from garbage when 8 bytes are there.
        if (len >= 8 && (len == 8 || s[8] == ' ') && !parse_version(s, off, out)) return false;
        out = fail(errc::http_bad_request, "invalid status line", off);
        return false;
    }
    if (!parse_version(s, off, out)) return false;
    const char* d = s + 9;
    if (d[0] < '1' || d[0] > '5' || d[1] < '0' || d[1] > '9' || d[2] < '0' || d[2] > '9') {
        out = fail(errc::http_bad_request, "invalid status code", off + 9);
        return false;
    }
    status_code_ = (d[0] - '0') * 100 + (d[1] - '0') * 10 + (d[2] - '0');
    if (len == 12) {
        reason_ = {};
    } else if (s[12] != ' ') {
        out = fail(errc::http_bad_request, "invalid status line", off + 12);
        return false;
    } else {
        reason_ = std::string_view(s + 13, len - 13);
    }
    return true;
}

namespace {

constexpr std::uint64_t u64_max = std::numeric_limits<std::uint64_t>::max();

// 1*DIGIT, no sign, no inner whitespace, no list. Returns false on a syntax error; sets
// `overflow` when the number does not fit (it is then "too large", not malformed).
bool parse_content_length(std::string_view v, std::uint64_t& out, bool& overflow) noexcept {
    if (v.empty()) return false;
    std::uint64_t n = 0;
    for (char c : v) {
        if (c < '0' || c > '9') return false;
        unsigned d = static_cast<unsigned>(c - '0');
        if (n > (u64_max - d) / 10) overflow = true;
        else n = n * 10 + d;
    }
    out = n;
    return true;
}

}  // namespace

// field-line = field-name ":" OWS field-value OWS (RFC 9112 §5). Precondition: [s, e) is not
// empty and holds no c_special byte, so the value needs no further check.
bool head_parser_base::parse_field_line(const char* s, const char* e, std::size_t off,
                                        progress& out) noexcept {
    if (is_ows(*s)) {
        // RFC 9112 §5.2: obs-fold is rejected; §2.2: so is whitespace before the first field.
        out = fail(errc::http_bad_request, count_ == 0 ? "whitespace before first field" : "obs-fold", off);
        return false;
    }
    const char* i = s;
    i = skip_tchars(i, e);
    if (i == e || *i != ':') {
        const char* why = i == e ? "missing colon in field line"
                          : is_ows(*i) ? "whitespace before colon"
                                       : "invalid character in field name";
        out = fail(errc::http_bad_request, why, off + static_cast<std::size_t>(i - s));
        return false;
    }
    if (i == s) {
        out = fail(errc::http_bad_request, "empty field name", off);
        return false;
    }
    if (count_ >= max_headers_) {
        out = fail(errc::http_too_many_headers, "too many header fields", off);
        return false;
    }
    std::string_view name(s, static_cast<std::size_t>(i - s));
    const char* v = i + 1;
    while (v < e && is_ows(*v)) ++v;
    const char* ve = e;
    while (ve > v && is_ows(ve[-1])) --ve;
    std::string_view value(v, static_cast<std::size_t>(ve - v));
    store_[count_++] = header{name, value};

    // The fields that decide framing and connection handling, told apart by length first.
    switch (name.size()) {
    case 4:
        if (iequals(name, "host")) {
            if (f_.host_count != 0 && role_ == role::request) {
                out = fail(errc::http_bad_request, "duplicate Host", off);
                return false;
            }
            if (role_ == role::request && !valid_host(value)) {
                out = fail(errc::http_bad_request, "invalid Host", off + static_cast<std::size_t>(v - s));
                return false;
            }
            f_.host_count = 1;
            host_ = value;
        }
        break;
    case 6:
        if (iequals(name, "expect") && iequals(value, "100-continue")) f_.expect_continue = true;
        break;
    case 7:
        if (iequals(name, "upgrade")) f_.have_upgrade = true;
        break;
    case 10:
        if (iequals(name, "connection")) {
            for_each_element(value, [&](std::string_view t) {
                if (iequals(t, "close")) f_.conn_close = true;
                else if (iequals(t, "keep-alive")) f_.conn_keep_alive = true;
                else if (iequals(t, "upgrade")) f_.conn_upgrade = true;
                return false;
            });
        }
        break;
    case 14:
        if (iequals(name, "content-length")) {
            // RFC 9110 §8.6 lets a recipient accept a list of identical values; we do not: a
            // second Content-Length line is a request-smuggling shape, whatever its value.
            if (f_.have_cl) {
                out = fail(errc::http_smuggling, "duplicate Content-Length", off);
                return false;
            }
            f_.have_cl = true;
            if (!parse_content_length(value, f_.content_length, f_.cl_overflow)) {
                out = fail(errc::http_bad_request, "invalid Content-Length",
                           off + static_cast<std::size_t>(v - s));
                return false;
            }
        }
        break;
    case 17:
        if (iequals(name, "transfer-encoding")) {
            f_.have_te = true;
            if (has_empty_element(value)) {
                out = fail(errc::http_bad_request, "empty element in Transfer-Encoding",
                           off + static_cast<std::size_t>(v - s));
                return false;
            }
            // Several TE lines form one list (RFC 9110 §5.3).
            for_each_element(value, [&](std::string_view c) {
                f_.te_empty = false;
                if (iequals(c, "chunked")) {
                    if (f_.te_seen_chunked) f_.te_chunked_twice = true;
                    f_.te_seen_chunked = true;
                    f_.te_last_chunked = true;
                } else {
                    f_.te_other = true;
                    f_.te_last_chunked = false;
                }
                return false;
            });
        }
        break;
    default:
        break;
    }
    return true;
}

// The empty line ended the head at `end`: decide framing and persistence (RFC 9112 §6.3, §9.3).
progress head_parser_base::finish(const char* base, std::size_t end) noexcept {
    (void)base;
    in_start_line_ = false;
    const std::size_t at = end - 2;  // offset of the final empty line
    const bool v11 = ver_ == version::http_1_1;

    if (f_.have_te && f_.have_cl)
        return fail(errc::http_smuggling, "both Content-Length and Transfer-Encoding", at);
    if (f_.have_te && !v11)
        // RFC 9112 §6.1: TE in an HTTP/1.0 message means the framing is faulty.
        return fail(errc::http_smuggling, "Transfer-Encoding in HTTP/1.0", at);
    if (f_.have_te && f_.te_empty) return fail(errc::http_bad_request, "empty Transfer-Encoding", at);
    if (f_.te_chunked_twice) return fail(errc::http_bad_request, "chunked applied twice", at);

    message_head* m;
    framing fr;
    bool keep_alive = v11 ? !f_.conn_close : (f_.conn_keep_alive && !f_.conn_close);
    bool upgrade = false;
    bool length_applies = false;

    if (role_ == role::request) {
        if (f_.have_te) {
            // §6.3: chunked present but not final leaves the length undetermined: 400. Any
            // other coding (gzip, or unknown like "xchunked") is one we do not implement: 501.
            if (f_.te_seen_chunked && !f_.te_last_chunked)
                return fail(errc::http_bad_request, "chunked is not the final transfer coding", at);
            if (f_.te_other) return fail(errc::http_not_implemented, "unsupported transfer coding", at);
            fr.kind = body_kind::chunked;
        } else if (f_.have_cl) {
            fr.kind = body_kind::content_length;
            fr.length = f_.content_length;
            length_applies = true;
        }
        if (v11 && f_.host_count == 0) return fail(errc::http_bad_request, "missing Host", at);
        upgrade = v11 && f_.have_upgrade && f_.conn_upgrade;
        m = &req_;
        req_.method = method_;
        req_.target = target_;
        req_.host = host_;
        req_.expect_continue = v11 && f_.expect_continue;
    } else {
        const int sc = status_code_;
        if (sc == 101) {
            if (!f_.have_upgrade) return fail(errc::http_bad_request, "101 without Upgrade", at);
            upgrade = true;
        } else if (connect_request_ && sc >= 200 && sc < 300) {
            upgrade = true;  // the connection is now a tunnel
        } else if (sc < 200 || sc == 204 || sc == 304 || head_request_) {
            // No body, whatever the length fields say (§6.3 rule 1); they stay validated.
        } else if (f_.have_te) {
            if (f_.te_last_chunked) {
                fr.kind = body_kind::chunked;
            } else {
                fr.kind = body_kind::until_close;  // §6.3 rule 4 (response side)
            }
        } else if (f_.have_cl) {
            fr.kind = body_kind::content_length;
            fr.length = f_.content_length;
            length_applies = true;
        } else {
            fr.kind = body_kind::until_close;
        }
        if (fr.kind == body_kind::until_close) keep_alive = false;
        m = &resp_;
        resp_.status_code = sc;
        resp_.reason = reason_;
    }
    if (length_applies && (f_.cl_overflow || f_.content_length > lim_.max_body))
        return fail(errc::http_body_too_large, "Content-Length over the body limit", at);

    m->ver = ver_;
    m->headers = std::span<const header>(store_.data(), count_);
    m->body = fr;
    m->keep_alive = keep_alive;
    m->upgrade = upgrade;
    m->size = end;

    finished_ = true;
    last_ = progress{};
    last_.kind = outcome::done;
    last_.consumed = end;
    last_.at = stage::done;
    return last_;
}

}  // namespace detail
}  // namespace ferry::http1
