// The upgrade handshake (RFC 6455 §4) in both roles, and the strict head parser.
#include <gtest/gtest.h>

#include <array>
#include <string>
#include <vector>

#include "proto/ws/handshake.hh"

using namespace ferry;
using namespace ferry::ws;

namespace {

constexpr std::string_view rfc_request =
    "GET /chat HTTP/1.1\r\n"
    "Host: server.example.com\r\n"
    "Upgrade: websocket\r\n"
    "Connection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Origin: http://example.com\r\n"
    "Sec-WebSocket-Protocol: chat, superchat\r\n"
    "Sec-WebSocket-Version: 13\r\n"
    "\r\n";

struct parsed_req {
    std::string text;
    std::array<header, 32> storage;
    request_head head;
    result<std::size_t> r = std::size_t{0};
    explicit parsed_req(std::string_view s) : text(s) { r = parse_request_head(as_bytes(text), head, storage); }
};

struct parsed_resp {
    std::string text;
    std::array<header, 32> storage;
    response_head head;
    result<std::size_t> r = std::size_t{0};
    explicit parsed_resp(std::string_view s) : text(s) { r = parse_response_head(as_bytes(text), head, storage); }
};

// The RFC request with one line replaced (or removed when `with` is empty).
std::string edit(std::string_view line_start, std::string_view with) {
    std::string s(rfc_request);
    std::size_t p = s.find(line_start);
    EXPECT_NE(p, std::string::npos);
    std::size_t e = s.find("\r\n", p) + 2;
    s.replace(p, e - p, with.empty() ? std::string() : std::string(with) + "\r\n");
    return s;
}

result<upgrade_request> check(std::string_view text, const server_config& cfg = {}) {
    parsed_req p(text);
    EXPECT_TRUE(p.r && *p.r == text.size()) << text;
    return check_upgrade_request(p.head, cfg);
}

}  // namespace

TEST(WsHandshake, AcceptKeyRfcExample) {
    // RFC 6455 §1.3.
    EXPECT_EQ(accept_key("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

TEST(WsHandshake, KeysFromRandomBytes) {
    std::array<std::byte, 16> r{};
    for (std::size_t i = 0; i < r.size(); ++i) r[i] = std::byte(i * 17 + 3);
    std::string k = make_key(r);
    EXPECT_EQ(k.size(), 24u);
    EXPECT_TRUE(valid_key(k));
    EXPECT_TRUE(valid_key("dGhlIHNhbXBsZSBub25jZQ=="));
    EXPECT_FALSE(valid_key("dGhlIHNhbXBsZSBub25jZQ="));    // 23 chars
    EXPECT_FALSE(valid_key("dGhlIHNhbXBsZSBub25jZQ=x"));
    EXPECT_FALSE(valid_key("dGhlIHNhbXBsZSBub25j"));        // 15 bytes
    EXPECT_FALSE(valid_key("dGhlIHNhbXBsZSBub25jZR=="));    // non-canonical trailing bits
    EXPECT_FALSE(valid_key("dGhlIHNhbXBsZSBub25j*Q=="));
    EXPECT_FALSE(valid_key("dGhlIHNhbXBsZSBub25jZXh0cmE="));  // 20 bytes
}

TEST(WsHandshake, ServerAcceptsTheRfcRequest) {
    parsed_req p(rfc_request);  // the result's key is a view into it: keep it alive
    auto up = check_upgrade_request(p.head, {});
    ASSERT_TRUE(up) << up.err().detail;
    EXPECT_EQ(up->key, "dGhlIHNhbXBsZSBub25jZQ==");
    EXPECT_FALSE(up->deflate);
    EXPECT_TRUE(offers_protocol(p.head, "chat"));
    EXPECT_TRUE(offers_protocol(p.head, "superchat"));
    EXPECT_FALSE(offers_protocol(p.head, "chatty"));
    EXPECT_FALSE(offers_protocol(p.head, "Chat"));  // subprotocols match exactly
    buffer_chain out;
    write_upgrade_response(out, *up, "chat");
    EXPECT_EQ(out.to_string(),
              "HTTP/1.1 101 Switching Protocols\r\n"
              "Upgrade: websocket\r\n"
              "Connection: Upgrade\r\n"
              "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
              "Sec-WebSocket-Protocol: chat\r\n"
              "\r\n");
}

TEST(WsHandshake, ServerTokenMatchingIsCaseInsensitiveAndListAware) {
    EXPECT_TRUE(check(edit("Upgrade:", "upgrade: WebSocket")));
    EXPECT_TRUE(check(edit("Connection:", "Connection: keep-alive, Upgrade")));
    EXPECT_TRUE(check(edit("Connection:", "connection: keep-alive,upgrade ")));
    EXPECT_TRUE(check(edit("Connection:", "Connection: keep-alive\r\nConnection: UPGRADE")));
    EXPECT_FALSE(check(edit("Connection:", "Connection: keep-alive, upgraded")));
    EXPECT_FALSE(check(edit("Upgrade:", "Upgrade: websockets")));
}

TEST(WsHandshake, ServerRejections) {
    struct tcase {
        std::string text;
        int status;
    };
    const std::vector<tcase> cases = {
        {std::string(rfc_request).replace(0, 3, "PUT"), 400},
        {edit("GET", "GET /chat HTTP/1.0"), 400},
        {edit("Host:", ""), 400},
        {edit("Host:", "Host: a\r\nHost: b"), 400},
        {edit("Upgrade:", ""), 426},
        {edit("Upgrade:", "Upgrade: h2c"), 426},
        {edit("Connection:", ""), 400},
        {edit("Connection:", "Connection: keep-alive"), 400},
        {edit("Sec-WebSocket-Version:", ""), 426},
        {edit("Sec-WebSocket-Version:", "Sec-WebSocket-Version: 8"), 426},
        {edit("Sec-WebSocket-Version:", "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Version: 13"), 426},
        {edit("Sec-WebSocket-Key:", ""), 400},
        {edit("Sec-WebSocket-Key:", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25j"), 400},
        {edit("Sec-WebSocket-Key:", "Sec-WebSocket-Key: not base64 at all!!!!!=="), 400},
        {edit("Sec-WebSocket-Key:", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=="), 400},
    };
    for (const auto& tc : cases) {
        auto up = check(tc.text);
        ASSERT_FALSE(up) << tc.text;
        EXPECT_EQ(handshake_status(up.err()), tc.status) << tc.text << up.err().detail;
        buffer_chain out;
        write_reject_response(out, up.err());
        std::string r = out.to_string();
        EXPECT_EQ(r.rfind("HTTP/1.1 " + std::to_string(tc.status), 0), 0u) << r;
        // The response parses, and its body length matches Content-Length.
        parsed_resp pr(r);
        ASSERT_TRUE(pr.r && *pr.r > 0) << r;
        EXPECT_EQ(pr.head.status, tc.status);
        std::string_view cl;
        for (auto& h : pr.head.headers) {
            if (iequals(h.name, "content-length")) cl = h.value;
        }
        EXPECT_EQ(std::to_string(r.size() - *pr.r), cl);
        if (tc.status == 426) {
            EXPECT_NE(r.find("Sec-WebSocket-Version: 13\r\n"), std::string::npos);
        }
    }
}

TEST(WsHandshake, ServerNegotiatesDeflate) {
    server_config cfg;
    cfg.deflate.enabled = true;
    std::string req = edit("Sec-WebSocket-Version:",
                           "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits");
    parsed_req preq(req);
    auto up = check_upgrade_request(preq.head, cfg);
    ASSERT_TRUE(up);
    ASSERT_TRUE(up->deflate);
    EXPECT_EQ(up->extensions, "permessage-deflate");
    buffer_chain out;
    write_upgrade_response(out, *up);
    EXPECT_NE(out.to_string().find("Sec-WebSocket-Extensions: permessage-deflate\r\n"), std::string::npos);
    // Same request, compression off on this server: upgrade succeeds, no extension.
    auto plain = check(req);
    ASSERT_TRUE(plain);
    EXPECT_FALSE(plain->deflate);
    EXPECT_EQ(plain->extensions, "");
}

TEST(WsHandshake, ClientServerRoundTrip) {
    client_request cr;
    cr.host = "relay.example:8443";
    cr.target = "/tunnel";
    cr.protocols = "ferry.v1, other";
    cr.extra_headers = "Authorization: Bearer abc.def.ghi\r\n";
    cr.deflate.enabled = true;
    cr.deflate.client_no_context_takeover = true;
    std::array<std::byte, 16> rnd{};
    rnd[0] = std::byte{1};
    const std::string key = make_key(rnd);
    buffer_chain req;
    write_upgrade_request(req, cr, key);
    parsed_req pr(req.to_string());
    ASSERT_TRUE(pr.r && *pr.r == pr.text.size());
    EXPECT_EQ(pr.head.target, "/tunnel");
    server_config sc;
    sc.deflate.enabled = true;
    auto up = check_upgrade_request(pr.head, sc);
    ASSERT_TRUE(up) << up.err().detail;
    ASSERT_TRUE(offers_protocol(pr.head, "ferry.v1"));
    buffer_chain resp;
    write_upgrade_response(resp, *up, "ferry.v1");
    std::string rtext = resp.to_string() + "\x81\x02hi";  // the first frame may follow at once
    parsed_resp ps(rtext);
    ASSERT_TRUE(ps.r);
    EXPECT_EQ(*ps.r, rtext.size() - 4);  // the head ends where the frame starts
    auto cu = check_upgrade_response(ps.head, key, cr);
    ASSERT_TRUE(cu) << cu.err().detail;
    EXPECT_EQ(cu->protocol, "ferry.v1");
    ASSERT_TRUE(cu->deflate);
    ASSERT_TRUE(up->deflate);
    EXPECT_EQ(*cu->deflate, *up->deflate);
    EXPECT_TRUE(cu->deflate->client_no_context_takeover);
}

TEST(WsHandshake, ClientRejections) {
    client_request cr;
    cr.host = "h";
    cr.protocols = "a, b";
    const std::string key = "dGhlIHNhbXBsZSBub25jZQ==";
    const std::string good =
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
    auto verdict = [&](std::string text) {
        parsed_resp p(text);
        EXPECT_TRUE(p.r && *p.r == text.size()) << text;
        return check_upgrade_response(p.head, key, cr);
    };
    EXPECT_TRUE(verdict(good));
    auto replace = [&](std::string_view from, std::string_view to) {
        std::string s = good;
        s.replace(s.find(from), from.size(), to);
        return s;
    };
    EXPECT_FALSE(verdict(replace("101 Switching Protocols", "200 OK")));
    EXPECT_FALSE(verdict(replace("HTTP/1.1 101", "HTTP/1.0 101")));
    EXPECT_FALSE(verdict(replace("Upgrade: websocket\r\n", "")));
    EXPECT_FALSE(verdict(replace("Connection: Upgrade\r\n", "Connection: close\r\n")));
    EXPECT_FALSE(verdict(replace("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", "s3pPLMBiTxaQ9kYGzzhZRbK+xOp=")));
    EXPECT_FALSE(verdict(replace("\r\n\r\n", "\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n")));
    EXPECT_FALSE(verdict(replace("\r\n\r\n", "\r\nSec-WebSocket-Protocol: c\r\n\r\n")));
    EXPECT_FALSE(verdict(replace("\r\n\r\n", "\r\nSec-WebSocket-Protocol: a, b\r\n\r\n")));
    EXPECT_TRUE(verdict(replace("\r\n\r\n", "\r\nSec-WebSocket-Protocol: b\r\n\r\n")));
    EXPECT_FALSE(verdict(replace("\r\n\r\n", "\r\nSec-WebSocket-Protocol: B\r\n\r\n")));
    cr.protocols = "";
    EXPECT_FALSE(verdict(replace("\r\n\r\n", "\r\nSec-WebSocket-Protocol: b\r\n\r\n")));
}

TEST(WsHeadParser, IncompleteAtEveryPrefix) {
    const std::string s(rfc_request);
    for (std::size_t n = 0; n < s.size(); ++n) {
        std::array<header, 16> st;
        request_head h;
        auto r = parse_request_head(as_bytes(std::string_view(s).substr(0, n)), h, st);
        ASSERT_TRUE(r) << n << r.err().detail;
        ASSERT_EQ(*r, 0u) << n;
    }
    parsed_req p(s);
    ASSERT_TRUE(p.r);
    EXPECT_EQ(*p.r, s.size());
    EXPECT_EQ(p.head.method, "GET");
    EXPECT_EQ(p.head.headers.size(), 7u);
    EXPECT_EQ(p.head.headers[5].name, "Sec-WebSocket-Protocol");
    EXPECT_EQ(p.head.headers[5].value, "chat, superchat");
}

TEST(WsHeadParser, StrictSyntax) {
    auto bad = [](std::string s) {
        std::array<header, 16> st;
        request_head h;
        auto r = parse_request_head(as_bytes(s), h, st);
        return !r;
    };
    EXPECT_TRUE(bad("GET / HTTP/1.1\nHost: a\r\n\r\n"));             // bare LF
    EXPECT_TRUE(bad("GET / HTTP/1.1\r\nHost: a\n\r\n"));
    EXPECT_TRUE(bad("GET / HTTP/1.1\r\nHost: a\r\n b\r\n\r\n"));     // obs-fold
    EXPECT_TRUE(bad("GET / HTTP/1.1\r\nHost : a\r\n\r\n"));          // space before colon
    EXPECT_TRUE(bad("GET / HTTP/1.1\r\n: a\r\n\r\n"));               // empty name
    EXPECT_TRUE(bad("GET / HTTP/1.1\r\nHost: a\x01\r\n\r\n"));       // control character
    EXPECT_TRUE(bad("GET / HTTP/2.0\r\nHost: a\r\n\r\n"));
    EXPECT_TRUE(bad("GET  / HTTP/1.1\r\nHost: a\r\n\r\n"));
    EXPECT_TRUE(bad("GET / x HTTP/1.1\r\nHost: a\r\n\r\n"));
    EXPECT_TRUE(bad("G(T / HTTP/1.1\r\nHost: a\r\n\r\n"));
    EXPECT_FALSE(bad("GET / HTTP/1.1\r\nHost: a\r\nX-Empty:\r\nX-Utf8: caf\xc3\xa9\r\n\r\n"));
}

TEST(WsHeadParser, Limits) {
    std::string many = "GET / HTTP/1.1\r\n";
    for (int i = 0; i < 20; ++i) many += "X-" + std::to_string(i) + ": v\r\n";
    many += "\r\n";
    std::array<header, 16> st;
    request_head h;
    auto r = parse_request_head(as_bytes(many), h, st);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.code(), errc::limit_exceeded);
    std::string big = "GET / HTTP/1.1\r\nX: " + std::string(9000, 'a');  // never ends
    r = parse_request_head(as_bytes(big), h, st);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.code(), errc::limit_exceeded);
    head_limits lim;
    lim.max_bytes = 64;
    std::string ok = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
    r = parse_request_head(as_bytes(ok), h, st, lim);
    ASSERT_TRUE(r);
    EXPECT_EQ(*r, ok.size());
}

TEST(WsHeadParser, StatusLines) {
    for (std::string_view s : {"HTTP/1.1 101 Switching Protocols\r\n\r\n", "HTTP/1.1 101\r\n\r\n",
                               "HTTP/1.1 101 \r\n\r\n"}) {
        parsed_resp p(s);
        ASSERT_TRUE(p.r) << s;
        EXPECT_EQ(p.head.status, 101);
    }
    for (std::string_view s : {"HTTP/1.1 10\r\n\r\n", "HTTP/1.1 1x1 OK\r\n\r\n", "HTTP/1.1  101 OK\r\n\r\n",
                               "HTTP/1.1 101OK\r\n\r\n", "ICY 200 OK\r\n\r\n"}) {
        parsed_resp p(s);
        EXPECT_FALSE(p.r) << s;
    }
}
