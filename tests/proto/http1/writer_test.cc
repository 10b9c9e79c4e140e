// Head writer: exact serialisation, hop-by-hop stripping, drop/add, refusal of injected lines,
// and round trips through the parsers.
#include <gtest/gtest.h>

#include <string>

#include "proto/http1/http1.hh"
#include "util.hh"

using namespace ferry;
using namespace ferry::http1;
using namespace ferry::http1::test;

TEST(Http1Writer, HopByHop) {
    for (const char* n : {"Connection", "keep-alive", "PROXY-CONNECTION", "TE", "Trailer", "Transfer-Encoding", "upgrade"})
        EXPECT_TRUE(is_hop_by_hop(n)) << n;
    for (const char* n : {"Host", "Content-Length", "Authorization", "X-Custom", "Upgrade-Insecure-Requests", "T"})
        EXPECT_FALSE(is_hop_by_hop(n)) << n;
    EXPECT_TRUE(is_hop_by_hop("X-Custom", "keep-alive, x-custom"));
    EXPECT_FALSE(is_hop_by_hop("X-Custom", "keep-alive, x-custom2"));
}

TEST(Http1Writer, RequestWithRewrite) {
    std::string in =
        "POST /t/llm/api/chat HTTP/1.1\r\n"
        "Host: relay.example\r\n"
        "Connection: keep-alive, X-Secret\r\n"
        "Keep-Alive: timeout=5\r\n"
        "X-Secret: s\r\n"
        "Connection: Foo\r\n"
        "foo: 1\r\n"
        "TE: trailers\r\n"
        "Upgrade: h2c\r\n"
        "Proxy-Connection: keep-alive\r\n"
        "Trailer: X\r\n"
        "Authorization: Bearer abc\r\n"
        "Cookie: a=b\r\n"
        "Transfer-Encoding: chunked\r\n"
        "Content-Type: application/json\r\n"
        "\r\n";
    request_parser ps;
    ASSERT_TRUE(ps.parse(B(in)).done());
    const std::string_view drop[] = {"authorization", "COOKIE"};
    const header add[] = {{"X-Forwarded-For", "203.0.113.7"}, {"X-Forwarded-Proto", "https"}, {"Connection", "close"}};
    rewrite rw;
    rw.drop = drop;
    rw.add = add;
    buffer_chain out;
    ASSERT_TRUE(write_head(out, ps.head(), rw, "/api/chat"));
    EXPECT_EQ(out.to_string(),
              "POST /api/chat HTTP/1.1\r\n"
              "Host: relay.example\r\n"
              "Transfer-Encoding: chunked\r\n"
              "Content-Type: application/json\r\n"
              "X-Forwarded-For: 203.0.113.7\r\n"
              "X-Forwarded-Proto: https\r\n"
              "Connection: close\r\n"
              "\r\n");
    EXPECT_EQ(out.fragments(), 1u);  // one contiguous write

    // Re-framing: Transfer-Encoding goes too.
    rewrite rw2 = rw;
    rw2.keep_transfer_encoding = false;
    buffer_chain out2;
    ASSERT_TRUE(write_head(out2, ps.head(), rw2));
    EXPECT_EQ(out2.to_string().find("Transfer-Encoding"), std::string::npos);
    EXPECT_EQ(out2.to_string().rfind("POST /t/llm/api/chat HTTP/1.1\r\n", 0), 0u);

    // Without stripping, only drop/add apply.
    rewrite keep;
    keep.strip_hop_by_hop = false;
    buffer_chain out3;
    ASSERT_TRUE(write_head(out3, ps.head(), keep));
    EXPECT_EQ(out3.to_string(), in);  // a parsed head written back unchanged is the same bytes

    // The output parses back.
    std::string written = out.to_string();
    request_parser back;
    ASSERT_TRUE(back.parse(B(written)).done());
    EXPECT_EQ(back.head().target, "/api/chat");
    EXPECT_FALSE(back.head().keep_alive);
    EXPECT_EQ(back.head().body.kind, body_kind::chunked);
}

TEST(Http1Writer, Response) {
    const header hs[] = {{"Content-Type", "text/plain"}, {"Content-Length", "2"}, {"Connection", "keep-alive"}};
    buffer_chain out;
    ASSERT_TRUE(write_response_head(out, version::http_1_1, 200, "OK", hs));
    EXPECT_EQ(out.to_string(), "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\n");
    buffer_chain out2;
    ASSERT_TRUE(write_response_head(out2, version::http_1_0, 431, reason_phrase(431), {}, rewrite{}));
    EXPECT_EQ(out2.to_string(), "HTTP/1.0 431 Request Header Fields Too Large\r\n\r\n");

    std::string in = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: x\r\n\r\n";
    response_parser rp;
    ASSERT_TRUE(rp.parse(B(in)).done());
    rewrite keep;
    keep.strip_hop_by_hop = false;
    buffer_chain out3;
    ASSERT_TRUE(write_head(out3, rp.head(), keep));
    EXPECT_EQ(out3.to_string(), in);
}

TEST(Http1Writer, RefusesInjection) {
    buffer_chain out;
    const header bad_value[] = {{"X-A", "1\r\nX-Injected: 1"}};
    EXPECT_EQ(write_request_head(out, "GET", "/", version::http_1_1, bad_value).code(), errc::invalid_argument);
    const header bad_lf[] = {{"X-A", "1\nb"}};
    EXPECT_FALSE(write_request_head(out, "GET", "/", version::http_1_1, bad_lf));
    const header bad_nul[] = {{"X-A", std::string_view("a\0b", 3)}};
    EXPECT_FALSE(write_request_head(out, "GET", "/", version::http_1_1, bad_nul));
    const header bad_name[] = {{"X A", "1"}};
    EXPECT_FALSE(write_request_head(out, "GET", "/", version::http_1_1, bad_name));
    const header empty_name[] = {{"", "1"}};
    EXPECT_FALSE(write_request_head(out, "GET", "/", version::http_1_1, empty_name));
    rewrite rw;
    rw.add = bad_value;
    EXPECT_FALSE(write_request_head(out, "GET", "/", version::http_1_1, {}, rw));
    EXPECT_FALSE(write_request_head(out, "GE T", "/", version::http_1_1, {}));
    EXPECT_FALSE(write_request_head(out, "GET", "/a b", version::http_1_1, {}));
    EXPECT_FALSE(write_request_head(out, "GET", "", version::http_1_1, {}));
    EXPECT_FALSE(write_request_head(out, "GET", "/\r\n", version::http_1_1, {}));
    EXPECT_FALSE(write_response_head(out, version::http_1_1, 200, "O\r\nK", {}));
    EXPECT_FALSE(write_response_head(out, version::http_1_1, 99, "x", {}));
    EXPECT_FALSE(write_response_head(out, version::http_1_1, 1000, "x", {}));
    EXPECT_EQ(out.size(), 0u);  // nothing written on failure
    // HTAB is fine in values.
    const header tab[] = {{"X-A", "a\tb"}};
    EXPECT_TRUE(write_request_head(out, "GET", "/", version::http_1_1, tab));
}
