#include "proto/ws/handshake.hh"

// wolfSSL's own options.h first: the optimised build's struct layouts depend on it.
#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/sha.h>

#include <cstring>

#include "proto/base/assert.hh"

namespace ferry::ws {

namespace {

constexpr char b64_alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

std::string base64(const unsigned char* p, std::size_t n) {
    std::string s;
    s.reserve((n + 2) / 3 * 4);
    std::size_t i = 0;
    for (; i + 3 <= n; i += 3) {
        const unsigned v = (unsigned(p[i]) << 16) | (unsigned(p[i + 1]) << 8) | p[i + 2];
        s += b64_alphabet[v >> 18];
        s += b64_alphabet[(v >> 12) & 63];
        s += b64_alphabet[(v >> 6) & 63];
        s += b64_alphabet[v & 63];
    }
    if (n - i == 1) {
        const unsigned v = unsigned(p[i]) << 16;
        s += b64_alphabet[v >> 18];
        s += b64_alphabet[(v >> 12) & 63];
        s += "==";
    } else if (n - i == 2) {
        const unsigned v = (unsigned(p[i]) << 16) | (unsigned(p[i + 1]) << 8);
        s += b64_alphabet[v >> 18];
        s += b64_alphabet[(v >> 12) & 63];
        s += b64_alphabet[(v >> 6) & 63];
        s += '=';
    }
    return s;
}

int b64_value(char c) noexcept {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

std::string_view trim_ows(std::string_view v) noexcept {
    while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
    while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
    return v;
}

// Number of fields named `name`, and the first one's value.
std::size_t count_fields(std::span<const header> hs, std::string_view name,
                         std::string_view* first = nullptr) noexcept {
    std::size_t n = 0;
    for (const header& h : hs) {
        if (!iequals(h.name, name)) continue;
        if (n == 0 && first) *first = trim_ows(h.value);
        ++n;
    }
    return n;
}

bool any_field_has_token(std::span<const header> hs, std::string_view name,
                         std::string_view token) noexcept {
    for (const header& h : hs) {
        if (iequals(h.name, name) && has_token(h.value, token)) return true;
    }
    return false;
}

// Values of every field named `name` (at most 16; more are ignored, which only matters for a
// peer padding its extension offers).
std::size_t field_values(std::span<const header> hs, std::string_view name,
                         std::array<std::string_view, 16>& out) noexcept {
    std::size_t n = 0;
    for (const header& h : hs) {
        if (n < out.size() && iequals(h.name, name)) out[n++] = h.value;
    }
    return n;
}

bool is_tchar(char c) noexcept {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
    return std::strchr("!#$%&'*+-.^_`|~", c) != nullptr && c != '\0';
}

bool is_token(std::string_view s) noexcept {
    if (s.empty()) return false;
    for (char c : s) {
        if (!is_tchar(c)) return false;
    }
    return true;
}

bool is_http1_version(std::string_view v) noexcept {
    return v.size() == 8 && v.substr(0, 5) == "HTTP/" && v[5] == '1' && v[6] == '.' &&
           v[7] >= '0' && v[7] <= '9';
}

void add(std::string& s, std::string_view a) { s.append(a.data(), a.size()); }

}  // namespace

// ---- primitives --------------------------------------------------------------------------------

bool iequals(std::string_view a, std::string_view b) noexcept {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i) {
        char x = a[i], y = b[i];
        if (x >= 'A' && x <= 'Z') x = static_cast<char>(x + 32);
        if (y >= 'A' && y <= 'Z') y = static_cast<char>(y + 32);
        if (x != y) return false;
    }
    return true;
}

namespace {
template <class Eq>
bool list_has(std::string_view value, std::string_view token, Eq eq) noexcept {
    while (!value.empty()) {
        const std::size_t comma = value.find(',');
        std::string_view item = trim_ows(value.substr(0, comma));
        if (eq(item, token)) return true;
        if (comma == std::string_view::npos) break;
        value.remove_prefix(comma + 1);
    }
    return false;
}

// Subprotocol names compare exactly (RFC 6455 §4.1: "not present in the client's handshake";
// browsers match case-sensitively), unlike the case-insensitive Upgrade/Connection tokens.
bool list_has_exact(std::string_view value, std::string_view token) noexcept {
    return list_has(value, token, [](std::string_view a, std::string_view b) { return a == b; });
}
}  // namespace

bool has_token(std::string_view value, std::string_view token) noexcept {
    return list_has(value, token, [](std::string_view a, std::string_view b) { return iequals(a, b); });
}

std::string accept_key(std::string_view key) {
    static constexpr std::string_view guid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    wc_Sha sha;
    unsigned char digest[WC_SHA_DIGEST_SIZE];
    // SHA-1 of a short string cannot fail once initialised; a failure here is a broken build.
    const int rc = wc_InitSha(&sha);
    FERRY_ASSERT(rc == 0);
    wc_ShaUpdate(&sha, reinterpret_cast<const byte*>(key.data()), static_cast<word32>(key.size()));
    wc_ShaUpdate(&sha, reinterpret_cast<const byte*>(guid.data()), static_cast<word32>(guid.size()));
    wc_ShaFinal(&sha, digest);
    wc_ShaFree(&sha);
    return base64(digest, sizeof digest);
}

std::string make_key(std::span<const std::byte, 16> random) {
    return base64(reinterpret_cast<const unsigned char*>(random.data()), 16);
}

bool valid_key(std::string_view key) noexcept {
    if (key.size() != 24 || key[22] != '=' || key[23] != '=') return false;
    for (std::size_t i = 0; i < 22; ++i) {
        if (b64_value(key[i]) < 0) return false;
    }
    // 22 characters carry 132 bits for 128: the last 4 must be zero in a canonical encoding.
    return (b64_value(key[21]) & 0x0F) == 0;
}

// ---- server ------------------------------------------------------------------------------------

bool is_upgrade_request(const request_head& req) noexcept {
    return any_field_has_token(req.headers, "Upgrade", "websocket");
}

result<upgrade_request> check_upgrade_request(const request_head& req, const server_config& cfg) {
    if (req.method != "GET") return fail(errc::ws_handshake, "upgrade method is not GET");
    if (req.version != "HTTP/1.1") return fail(errc::ws_handshake, "upgrade needs HTTP/1.1");
    if (count_fields(req.headers, "Host") != 1) return fail(errc::ws_handshake, "missing or repeated Host");
    if (!is_upgrade_request(req)) return fail(errc::ws_upgrade_required, "no Upgrade: websocket");
    if (!any_field_has_token(req.headers, "Connection", "upgrade")) {
        return fail(errc::ws_handshake, "Connection lacks the upgrade token");
    }
    std::string_view version;
    if (count_fields(req.headers, "Sec-WebSocket-Version", &version) != 1 || version != "13") {
        return fail(errc::ws_upgrade_required, "Sec-WebSocket-Version is not 13");
    }
    std::string_view key;
    if (count_fields(req.headers, "Sec-WebSocket-Key", &key) != 1) {
        return fail(errc::ws_handshake, "missing or repeated Sec-WebSocket-Key");
    }
    if (!valid_key(key)) return fail(errc::ws_handshake, "Sec-WebSocket-Key is not 16 bytes of base64");
    upgrade_request up;
    up.key = key;
    std::array<std::string_view, 16> offers;
    const std::size_t n = field_values(req.headers, "Sec-WebSocket-Extensions", offers);
    up.deflate = negotiate_deflate(std::span(offers.data(), n), cfg.deflate, up.extensions);
    return up;
}

bool offers_protocol(const request_head& req, std::string_view name) noexcept {
    for (const header& h : req.headers) {
        if (iequals(h.name, "Sec-WebSocket-Protocol") && list_has_exact(h.value, name)) return true;
    }
    return false;
}

int handshake_status(const error& e) noexcept {
    return e.code == errc::ws_upgrade_required ? 426 : 400;
}

void write_upgrade_response(buffer_chain& out, const upgrade_request& up, std::string_view protocol,
                            std::string_view extra_headers) {
    std::string s;
    s.reserve(256);
    add(s, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           "Sec-WebSocket-Accept: ");
    add(s, accept_key(up.key));
    add(s, "\r\n");
    if (!up.extensions.empty()) {
        add(s, "Sec-WebSocket-Extensions: ");
        add(s, up.extensions);
        add(s, "\r\n");
    }
    if (!protocol.empty()) {
        add(s, "Sec-WebSocket-Protocol: ");
        add(s, protocol);
        add(s, "\r\n");
    }
    add(s, extra_headers);
    add(s, "\r\n");
    out.append_copy(s);
}

void write_reject_response(buffer_chain& out, const error& e) {
    const int st = handshake_status(e);
    std::string body = "{\"error\":{\"code\":\"";
    add(body, to_string(e.code));
    add(body, "\",\"message\":\"");
    add(body, e.detail);  // static text of ours, no quotes or backslashes
    add(body, "\"}}\n");
    std::string s;
    if (st == 426) {
        add(s, "HTTP/1.1 426 Upgrade Required\r\nUpgrade: websocket\r\nConnection: Upgrade, close\r\n"
               "Sec-WebSocket-Version: 13\r\n");
    } else {
        add(s, "HTTP/1.1 400 Bad Request\r\nConnection: close\r\n");
    }
    add(s, "Content-Type: application/json\r\nContent-Length: ");
    add(s, std::to_string(body.size()));
    add(s, "\r\n\r\n");
    add(s, body);
    out.append_copy(s);
}

// ---- client ------------------------------------------------------------------------------------

void write_upgrade_request(buffer_chain& out, const client_request& req, std::string_view key) {
    std::string s;
    s.reserve(256 + req.extra_headers.size());
    add(s, "GET ");
    add(s, req.target.empty() ? std::string_view("/") : req.target);
    add(s, " HTTP/1.1\r\nHost: ");
    add(s, req.host);
    add(s, "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ");
    add(s, key);
    add(s, "\r\nSec-WebSocket-Version: 13\r\n");
    if (!req.origin.empty()) {
        add(s, "Origin: ");
        add(s, req.origin);
        add(s, "\r\n");
    }
    if (!req.protocols.empty()) {
        add(s, "Sec-WebSocket-Protocol: ");
        add(s, req.protocols);
        add(s, "\r\n");
    }
    if (req.deflate.enabled) {
        add(s, "Sec-WebSocket-Extensions: ");
        add(s, deflate_offer(req.deflate));
        add(s, "\r\n");
    }
    add(s, req.extra_headers);
    add(s, "\r\n");
    out.append_copy(s);
}

result<upgrade_response> check_upgrade_response(const response_head& resp, std::string_view key,
                                                const client_request& req) {
    if (resp.status != 101) return fail(errc::ws_handshake, "status is not 101");
    if (resp.version != "HTTP/1.1") return fail(errc::ws_handshake, "response is not HTTP/1.1");
    if (!any_field_has_token(resp.headers, "Upgrade", "websocket")) {
        return fail(errc::ws_handshake, "response lacks Upgrade: websocket");
    }
    if (!any_field_has_token(resp.headers, "Connection", "upgrade")) {
        return fail(errc::ws_handshake, "response Connection lacks upgrade");
    }
    std::string_view accept;
    if (count_fields(resp.headers, "Sec-WebSocket-Accept", &accept) != 1) {
        return fail(errc::ws_handshake, "missing or repeated Sec-WebSocket-Accept");
    }
    if (accept != accept_key(key)) return fail(errc::ws_handshake, "Sec-WebSocket-Accept mismatch");
    upgrade_response up;
    std::array<std::string_view, 16> values;
    const std::size_t n = field_values(resp.headers, "Sec-WebSocket-Extensions", values);
    auto pmd = accept_deflate_response(std::span(values.data(), n), req.deflate);
    if (!pmd) return fail(pmd.err());
    up.deflate = *pmd;
    std::string_view proto;
    const std::size_t np = count_fields(resp.headers, "Sec-WebSocket-Protocol", &proto);
    if (np > 1) return fail(errc::ws_handshake, "repeated Sec-WebSocket-Protocol");
    if (np == 1) {
        // One token, and one we offered (RFC 6455 §4.1: otherwise fail the connection).
        if (!is_token(proto) || !list_has_exact(req.protocols, proto)) {
            return fail(errc::ws_handshake, "subprotocol not offered");
        }
        up.protocol = proto;
    }
    return up;
}

// ---- head parser -------------------------------------------------------------------------------

namespace {

// Reads field lines from `pos` up to and including the empty line. Returns the position after
// it, 0 when the input ends first.
result<std::size_t> parse_fields(std::string_view s, std::size_t pos, std::span<header> storage,
                                 std::size_t& count) {
    count = 0;
    for (;;) {
        const std::size_t nl = s.find('\n', pos);
        if (nl == std::string_view::npos) return std::size_t{0};
        if (nl == pos || s[nl - 1] != '\r') return fail(errc::ws_handshake, "bare LF", std::uint32_t(nl));
        std::string_view line = s.substr(pos, nl - 1 - pos);
        const std::size_t line_at = pos;
        pos = nl + 1;
        if (line.empty()) return pos;
        if (line[0] == ' ' || line[0] == '\t') {
            return fail(errc::ws_handshake, "obs-fold", std::uint32_t(line_at));
        }
        const std::size_t colon = line.find(':');
        if (colon == std::string_view::npos || !is_token(line.substr(0, colon))) {
            return fail(errc::ws_handshake, "bad header name", std::uint32_t(line_at));
        }
        std::string_view value = trim_ows(line.substr(colon + 1));
        for (char c : value) {
            const auto u = static_cast<unsigned char>(c);
            if ((u < 0x20 && u != '\t') || u == 0x7F) {
                return fail(errc::ws_handshake, "control character in a header value",
                            std::uint32_t(line_at));
            }
        }
        if (count == storage.size()) return fail(errc::limit_exceeded, "too many headers");
        storage[count++] = header{line.substr(0, colon), value};
    }
}

// The first line (without CRLF); 0-length result with `incomplete` when no CRLF yet.
result<std::string_view> first_line(std::string_view s, bool& incomplete) {
    incomplete = false;
    const std::size_t nl = s.find('\n');
    if (nl == std::string_view::npos) {
        incomplete = true;
        return std::string_view{};
    }
    if (nl == 0 || s[nl - 1] != '\r') return fail(errc::ws_handshake, "bare LF", std::uint32_t(nl));
    return s.substr(0, nl - 1);
}

std::string_view window(bytes in, const head_limits& lim) noexcept {
    return as_string(in.subspan(0, std::min(in.size(), lim.max_bytes)));
}

}  // namespace

result<std::size_t> parse_request_head(bytes in, request_head& out, std::span<header> storage,
                                       const head_limits& lim) {
    const std::string_view s = window(in, lim);
    const bool truncated = in.size() > s.size();
    bool incomplete = false;
    FERRY_TRY(line, first_line(s, incomplete));
    if (incomplete) {
        if (truncated || s.size() >= lim.max_bytes) return fail(errc::limit_exceeded, "head too large");
        return std::size_t{0};
    }
    const std::string_view l = *line;
    const std::size_t sp1 = l.find(' ');
    const std::size_t sp2 = sp1 == std::string_view::npos ? sp1 : l.find(' ', sp1 + 1);
    if (sp2 == std::string_view::npos) return fail(errc::ws_handshake, "bad request line");
    const std::string_view method = l.substr(0, sp1);
    const std::string_view target = l.substr(sp1 + 1, sp2 - sp1 - 1);
    const std::string_view version = l.substr(sp2 + 1);
    if (!is_token(method)) return fail(errc::ws_handshake, "bad method");
    if (target.empty()) return fail(errc::ws_handshake, "empty target");
    for (char c : target) {
        const auto u = static_cast<unsigned char>(c);
        if (u <= 0x20 || u >= 0x7F) return fail(errc::ws_handshake, "bad character in target");
    }
    if (!is_http1_version(version)) return fail(errc::ws_handshake, "bad HTTP version");
    std::size_t count = 0;
    FERRY_TRY(end, parse_fields(s, l.size() + 2, storage, count));
    if (*end == 0) {
        if (truncated || s.size() >= lim.max_bytes) return fail(errc::limit_exceeded, "head too large");
        return std::size_t{0};
    }
    out.method = method;
    out.target = target;
    out.version = version;
    out.headers = storage.first(count);
    return *end;
}

result<std::size_t> parse_response_head(bytes in, response_head& out, std::span<header> storage,
                                        const head_limits& lim) {
    const std::string_view s = window(in, lim);
    const bool truncated = in.size() > s.size();
    bool incomplete = false;
    FERRY_TRY(line, first_line(s, incomplete));
    if (incomplete) {
        if (truncated || s.size() >= lim.max_bytes) return fail(errc::limit_exceeded, "head too large");
        return std::size_t{0};
    }
    const std::string_view l = *line;
    // status-line = HTTP-version SP 3DIGIT SP [reason]; a missing last SP is tolerated.
    if (l.size() < 12 || !is_http1_version(l.substr(0, 8)) || l[8] != ' ') {
        return fail(errc::ws_handshake, "bad status line");
    }
    int status = 0;
    for (std::size_t i = 9; i < 12; ++i) {
        if (l[i] < '0' || l[i] > '9') return fail(errc::ws_handshake, "bad status code");
        status = status * 10 + (l[i] - '0');
    }
    std::string_view reason;
    if (l.size() > 12) {
        if (l[12] != ' ') return fail(errc::ws_handshake, "bad status line");
        reason = l.substr(13);
        for (char c : reason) {
            const auto u = static_cast<unsigned char>(c);
            if ((u < 0x20 && u != '\t') || u == 0x7F) return fail(errc::ws_handshake, "bad reason");
        }
    }
    std::size_t count = 0;
    FERRY_TRY(end, parse_fields(s, l.size() + 2, storage, count));
    if (*end == 0) {
        if (truncated || s.size() >= lim.max_bytes) return fail(errc::limit_exceeded, "head too large");
        return std::size_t{0};
    }
    out.version = l.substr(0, 8);
    out.status = status;
    out.reason = reason;
    out.headers = storage.first(count);
    return *end;
}

}  // namespace ferry::ws
