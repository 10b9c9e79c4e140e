// Head parsing: grammar, limits, smuggling shapes, framing, persistence, and that any split of
// the input gives the same answer as the whole.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "proto/http1/http1.hh"
#include "util.hh"

using namespace ferry;
using namespace ferry::http1;
using namespace ferry::http1::test;

namespace {

progress req(request_parser& ps, std::string_view s) { return parse_whole(ps, s); }

// Expects a request to fail with `code`; returns the progress for further checks.
progress expect_req_fail(std::string_view s, errc code, const limits& l = {}) {
    request_parser ps(l);
    progress p = req(ps, s);
    EXPECT_TRUE(p.failed()) << summary(p, ps) << "\n  input: " << testing::PrintToString(std::string(s));
    EXPECT_EQ(p.err.code, code) << summary(p) << "\n  input: " << testing::PrintToString(std::string(s));
    // The same failure whatever way the bytes arrive.
    request_parser bw(l);
    EXPECT_EQ(summary(parse_bytewise(bw, s)), summary(p));
    return p;
}

const request_head& expect_req_ok(request_parser& ps, std::string_view s) {
    progress p = req(ps, s);
    EXPECT_TRUE(p.done()) << summary(p) << "\n  input: " << testing::PrintToString(std::string(s));
    return ps.head();
}

std::string with_headers(std::string_view extra, std::string_view start = "POST /x HTTP/1.1") {
    return std::string(start) + "\r\nHost: h\r\n" + std::string(extra) + "\r\n";
}

}  // namespace

// ---- basic shapes ------------------------------------------------------------------------------

TEST(Http1Request, ParsesViewsIntoInput) {
    std::string s =
        "GET /api/generate?x=1 HTTP/1.1\r\n"
        "Host: example.com\r\n"
        "User-Agent:curl/8.0\r\n"
        "Accept: \t */* \t\r\n"
        "X-Empty:\r\n"
        "X-Obs: caf\xc3\xa9\r\n"
        "\r\n"
        "BODY";
    request_parser ps;
    progress p = req(ps, s);
    ASSERT_TRUE(p.done()) << summary(p);
    EXPECT_EQ(p.consumed, s.size() - 4);
    const request_head& h = ps.head();
    EXPECT_EQ(h.method, "GET");
    EXPECT_EQ(h.target, "/api/generate?x=1");
    EXPECT_EQ(h.ver, version::http_1_1);
    EXPECT_EQ(h.host, "example.com");
    ASSERT_EQ(h.headers.size(), 5u);
    EXPECT_EQ(h.headers[1].name, "User-Agent");
    EXPECT_EQ(h.headers[1].value, "curl/8.0");
    EXPECT_EQ(h.headers[2].value, "*/*");  // OWS (SP and HTAB) trimmed on both sides
    EXPECT_EQ(h.headers[3].value, "");
    EXPECT_EQ(h.headers[4].value, "caf\xc3\xa9");  // obs-text allowed in values
    // Views, not copies: they point into the input buffer.
    EXPECT_EQ(h.method.data(), s.data());
    EXPECT_EQ(h.headers[0].value.data(), s.data() + s.find("example.com"));
    EXPECT_EQ(h.body.kind, body_kind::none);
    EXPECT_TRUE(h.keep_alive);
    EXPECT_EQ(h.size, p.consumed);
    EXPECT_EQ(h.value("user-agent"), "curl/8.0");
    EXPECT_EQ(h.find("ACCEPT"), &h.headers[2]);
    EXPECT_EQ(h.find("missing"), nullptr);
}

TEST(Http1Request, Versions) {
    request_parser ps;
    EXPECT_EQ(expect_req_ok(ps, "GET / HTTP/1.0\r\n\r\n").ver, version::http_1_0);
    EXPECT_EQ(expect_req_ok(ps, "GET / HTTP/1.1\r\nHost: a\r\n\r\n").ver, version::http_1_1);
    for (const char* v : {"HTTP/2.0", "HTTP/1.2", "HTTP/0.9", "HTTP/3.1"}) {
        progress p = expect_req_fail(std::string("GET / ") + v + "\r\nHost: a\r\n\r\n", errc::http_unsupported_version);
        EXPECT_EQ(status_for(p.err.code), 505);
        EXPECT_EQ(p.at, stage::start_line);
    }
    for (const char* v : {"HTTP/1", "HTTP/2", "http/1.1", "HTTP/1.1 ", "HTTP/1.10", "HTTP/1,1", "HTTPS/1.1", "HTTP/a.b"})
        expect_req_fail(std::string("GET / ") + v + "\r\nHost: a\r\n\r\n", errc::http_bad_request);
    // HTTP/0.9 style (no version at all).
    expect_req_fail("GET /\r\n\r\n", errc::http_bad_request);
}

TEST(Http1Request, RequestLineGrammar) {
    const char* bad[] = {
        "GET  / HTTP/1.1\r\nHost: a\r\n\r\n",    // two spaces
        "GET /  HTTP/1.1\r\nHost: a\r\n\r\n",    // two spaces before version
        " GET / HTTP/1.1\r\nHost: a\r\n\r\n",    // leading space
        "G(T / HTTP/1.1\r\nHost: a\r\n\r\n",     // non-token method
        "GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n",    // HTAB as separator
        "GET /a\tb HTTP/1.1\r\nHost: a\r\n\r\n", // HTAB in target
        "GET /caf\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n",  // obs-text in target
        "GET HTTP/1.1\r\nHost: a\r\n\r\n",       // missing target
        "GET / HTTP/1.1 x\r\nHost: a\r\n\r\n",   // trailing junk
        "/ HTTP/1.1\r\nHost: a\r\n\r\n",
    };
    for (const char* s : bad) expect_req_fail(s, errc::http_bad_request);
    request_parser ps;
    const request_head& h = expect_req_ok(ps, "M-SEARCH * HTTP/1.1\r\nHost: a\r\n\r\n");
    EXPECT_EQ(h.method, "M-SEARCH");
    EXPECT_EQ(h.target, "*");
    EXPECT_EQ(expect_req_ok(ps, "GET http://a.b/c?d#e HTTP/1.1\r\nHost: a.b\r\n\r\n").target, "http://a.b/c?d#e");
}

TEST(Http1Request, BareLfAndCrRejected) {
    using namespace std::string_view_literals;
    struct c { std::string_view in; const char* detail; };
    const c cases[] = {
        {"GET / HTTP/1.1\nHost: a\r\n\r\n"sv, "bare LF"},      // request line
        {"GET / HTTP/1.1\r\nHost: a\n\r\n"sv, "bare LF"},      // header line
        {"GET / HTTP/1.1\r\nHost: a\r\n\n"sv, "bare LF"},      // final empty line
        {"GET / HTTP/1.1\r\nHost: a\r\nX: 1\n\n"sv, "bare LF"},
        {"\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"sv, "bare LF"},  // leading empty line
        {"GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n"sv, "bare CR"},
        {"GET / HTTP/1.1\r\nHost: a\r\r\n\r\n"sv, "bare CR"},
        {"GET / HTTP/1.1\r\nX: a\0b\r\nHost: a\r\n\r\n"sv, "NUL byte"},
        {"GET / HTTP/1.1\r\nX\0: ab\r\nHost: a\r\n\r\n"sv, "NUL byte"},
        {"GET / HTTP/1.1\r\nX: a\x01" "b\r\nHost: a\r\n\r\n"sv, "control character"},
        {"GET / HTTP/1.1\r\nX: a\x7f" "b\r\nHost: a\r\n\r\n"sv, "control character"},
        {"GET /\x1b HTTP/1.1\r\nHost: a\r\n\r\n"sv, "control character"},
    };
    for (const c& x : cases) {
        progress p = expect_req_fail(x.in, errc::http_bad_request);
        EXPECT_STREQ(p.err.detail, x.detail) << testing::PrintToString(std::string(x.in));
    }
    // The offset points at the offending byte.
    progress p = expect_req_fail("GET / HTTP/1.1\r\nHost: a\nX: 1\r\n\r\n", errc::http_bad_request);
    EXPECT_EQ(p.err.offset, 23u);
    EXPECT_EQ(p.at, stage::header_line);
    // HTAB is fine in a value.
    request_parser ps;
    EXPECT_EQ(expect_req_ok(ps, "GET / HTTP/1.1\r\nHost: a\r\nX: a\tb\r\n\r\n").headers[1].value, "a\tb");
}

TEST(Http1Request, FieldLineGrammar) {
    progress p = expect_req_fail("GET / HTTP/1.1\r\nHost : x\r\n\r\n", errc::http_bad_request);
    EXPECT_STREQ(p.err.detail, "whitespace before colon");
    EXPECT_EQ(p.err.offset, 20u);
    EXPECT_EQ(status_for(p.err.code), 400);
    p = expect_req_fail("GET / HTTP/1.1\r\nHost\t: x\r\n\r\n", errc::http_bad_request);
    EXPECT_STREQ(p.err.detail, "whitespace before colon");
    p = expect_req_fail("GET / HTTP/1.1\r\nHost: a\r\nX-Long: a\r\n b\r\n\r\n", errc::http_bad_request);
    EXPECT_STREQ(p.err.detail, "obs-fold");
    p = expect_req_fail("GET / HTTP/1.1\r\nHost: a\r\nX-Long: a\r\n\tb\r\n\r\n", errc::http_bad_request);
    EXPECT_STREQ(p.err.detail, "obs-fold");
    p = expect_req_fail("GET / HTTP/1.1\r\n Host: a\r\n\r\n", errc::http_bad_request);
    EXPECT_STREQ(p.err.detail, "whitespace before first field");
    p = expect_req_fail("GET / HTTP/1.1\r\nHost: a\r\n: v\r\n\r\n", errc::http_bad_request);
    EXPECT_STREQ(p.err.detail, "empty field name");
    p = expect_req_fail("GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n", errc::http_bad_request);
    EXPECT_STREQ(p.err.detail, "missing colon in field line");
    p = expect_req_fail("GET / HTTP/1.1\r\nHost: a\r\nX(y): v\r\n\r\n", errc::http_bad_request);
    EXPECT_STREQ(p.err.detail, "invalid character in field name");
    p = expect_req_fail("GET / HTTP/1.1\r\nHost: a\r\nX\xc3\xa9: v\r\n\r\n", errc::http_bad_request);
}

TEST(Http1Request, LeadingEmptyLinesSkipped) {
    std::string s = "\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n";
    request_parser ps;
    progress p = req(ps, s);
    ASSERT_TRUE(p.done()) << summary(p);
    EXPECT_EQ(p.consumed, s.size());
    EXPECT_EQ(ps.head().method, "GET");
    EXPECT_EQ(ps.head().method.data(), s.data() + 4);
    // They count towards the head limit.
    limits l;
    l.max_head_bytes = s.size() - 1;
    expect_req_fail(s, errc::http_header_too_large, l);
    // A response may not start with an empty line.
    response_parser rp;
    progress r = parse_whole(rp, "\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    EXPECT_TRUE(r.failed());
}

// ---- limits ---------------------------------------------------------------------------------------

TEST(Http1Request, HeadSizeLimitExactlyAndOver) {
    // Build a head of exactly N bytes by padding one value.
    auto make = [](std::size_t n) {
        std::string base = "GET / HTTP/1.1\r\nHost: a\r\nX-Pad: \r\n\r\n";
        return std::string("GET / HTTP/1.1\r\nHost: a\r\nX-Pad: ") + std::string(n - base.size(), 'p') + "\r\n\r\n";
    };
    limits l;
    l.max_head_bytes = 1000;
    std::string exact = make(1000), over = make(1001);
    ASSERT_EQ(exact.size(), 1000u);
    request_parser ps(l);
    progress p = req(ps, exact);
    ASSERT_TRUE(p.done()) << summary(p);
    EXPECT_EQ(p.consumed, 1000u);
    request_parser bw(l);
    EXPECT_EQ(summary(parse_bytewise(bw, exact), bw), summary(p, ps));
    p = expect_req_fail(over, errc::http_header_too_large, l);
    EXPECT_EQ(status_for(p.err.code), 431);
    // 1 byte under the limit also works.
    EXPECT_TRUE(req(ps, make(999)).done());

    // Fails as soon as max_head_bytes have arrived without an end: the caller never has to
    // buffer more.
    std::string endless = "GET / HTTP/1.1\r\nHost: a\r\nX: " + std::string(5000, 'x');
    request_parser ps2(l);
    EXPECT_TRUE(ps2.parse(B(std::string_view(endless).substr(0, 999))).need_more());
    progress f = ps2.parse(B(std::string_view(endless).substr(0, 1000)));
    EXPECT_TRUE(f.failed());
    EXPECT_EQ(f.err.code, errc::http_header_too_large);
}

TEST(Http1Request, TooManyHeaders) {
    limits l;
    l.max_headers = 3;
    std::string three = "GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\n\r\n";
    std::string four = "GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n";
    request_parser ps(l);
    EXPECT_EQ(expect_req_ok(ps, three).headers.size(), 3u);
    progress p = expect_req_fail(four, errc::http_too_many_headers, l);
    EXPECT_EQ(status_for(p.err.code), 431);
    // Caller storage smaller than the limit caps it, without allocation.
    header storage[2];
    request_parser small(limits{}, storage);
    progress q = req(small, three);
    EXPECT_TRUE(q.failed());
    EXPECT_EQ(q.err.code, errc::http_too_many_headers);
    EXPECT_TRUE(req(small, "GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\n\r\n").done());
    EXPECT_EQ(small.head().headers.data(), storage);
}

TEST(Http1Request, RequestLineLimit) {
    limits l;
    l.max_start_line = 64;
    auto line = [](std::size_t n) {  // request line of n bytes without CRLF
        std::string s = "GET /" + std::string(n - 14, 'a') + " HTTP/1.1";
        return s + "\r\nHost: a\r\n\r\n";
    };
    request_parser ps(l);
    EXPECT_TRUE(req(ps, line(64)).done());
    progress p = expect_req_fail(line(65), errc::http_uri_too_long, l);
    EXPECT_EQ(status_for(p.err.code), 414);
    EXPECT_EQ(p.at, stage::start_line);
    // Fails before the line is complete.
    request_parser ps2(l);
    std::string longer = "GET /" + std::string(500, 'a');
    EXPECT_TRUE(ps2.parse(B(std::string_view(longer).substr(0, 64))).need_more());
    // 65 bytes without a CR: the line cannot fit any more.
    EXPECT_EQ(ps2.parse(B(std::string_view(longer).substr(0, 65))).err.code, errc::http_uri_too_long);
    // A long status line is a 431-class failure for responses.
    response_parser rp(l);
    progress r = parse_whole(rp, "HTTP/1.1 200 " + std::string(100, 'r') + "\r\n\r\n");
    EXPECT_EQ(r.err.code, errc::http_header_too_large);
}

// ---- framing and smuggling shapes ----------------------------------------------------------------

TEST(Http1Request, ContentLength) {
    request_parser ps;
    const request_head& h = expect_req_ok(ps, with_headers("Content-Length: 42\r\n"));
    EXPECT_EQ(h.body.kind, body_kind::content_length);
    EXPECT_EQ(h.body.length, 42u);
    EXPECT_EQ(expect_req_ok(ps, with_headers("content-length:  7 \r\n")).body.length, 7u);
    EXPECT_EQ(expect_req_ok(ps, with_headers("Content-Length: 0\r\n")).body.kind, body_kind::content_length);
    EXPECT_EQ(expect_req_ok(ps, with_headers("Content-Length: 0005\r\n")).body.length, 5u);
    EXPECT_EQ(expect_req_ok(ps, with_headers("")).body.kind, body_kind::none);

    for (const char* v : {"+5", "-5", "0x10", "5 5", "5,5", "5, 5", "", "1e3", " ", "5;", "\t"}) {
        progress p = expect_req_fail(with_headers(std::string("Content-Length: ") + v + "\r\n"), errc::http_bad_request);
        EXPECT_EQ(p.at, stage::header_line);
    }
}

TEST(Http1Request, ContentLengthOverBodyLimit) {
    limits l;
    l.max_body = 1000;
    request_parser ps(l);
    EXPECT_TRUE(req(ps, with_headers("Content-Length: 1000\r\n")).done());
    progress p = expect_req_fail(with_headers("Content-Length: 1001\r\n"), errc::http_body_too_large, l);
    EXPECT_EQ(status_for(p.err.code), 413);
    // Values that do not fit 64 bits are too large, not malformed.
    expect_req_fail(with_headers("Content-Length: 18446744073709551616\r\n"), errc::http_body_too_large);
    expect_req_fail(with_headers("Content-Length: 99999999999999999999999999\r\n"), errc::http_body_too_large);
    limits unlimited;
    unlimited.max_body = UINT64_MAX;
    request_parser pu(unlimited);
    const request_head& h = expect_req_ok(pu, with_headers("Content-Length: 18446744073709551615\r\n"));
    EXPECT_EQ(h.body.length, UINT64_MAX);
}

TEST(Http1Request, DuplicateContentLengthRejected) {
    progress p = expect_req_fail(with_headers("Content-Length: 5\r\nContent-Length: 5\r\n"), errc::http_smuggling);
    EXPECT_STREQ(p.err.detail, "duplicate Content-Length");
    EXPECT_EQ(status_for(p.err.code), 400);
    expect_req_fail(with_headers("Content-Length: 5\r\ncontent-length: 6\r\n"), errc::http_smuggling);
    expect_req_fail(with_headers("Content-Length: 5\r\nX: y\r\nCONTENT-LENGTH: 5\r\n"), errc::http_smuggling);
}

TEST(Http1Request, ContentLengthAndTransferEncodingRejected) {
    progress p = expect_req_fail(with_headers("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n"), errc::http_smuggling);
    EXPECT_STREQ(p.err.detail, "both Content-Length and Transfer-Encoding");
    expect_req_fail(with_headers("Transfer-Encoding: chunked\r\nContent-Length: 5\r\n"), errc::http_smuggling);
    expect_req_fail(with_headers("Transfer-Encoding: chunked\r\nContent-Length: 0\r\n"), errc::http_smuggling);
    // Also with a response.
    response_parser rp;
    progress r = parse_whole(rp, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n");
    EXPECT_EQ(r.err.code, errc::http_smuggling);
}

// RFC 9110 7.2: a Host with an invalid value is a 400 (issue 11 item 8).
TEST(Http1Request, HostMustBeValid) {
    request_parser ps;
    for (std::string_view h : {"a", "example.com", "example.com:8080", "EXAMPLE.com:", "10.0.0.1:80", "[::1]",
                               "[2001:db8::1]:443", "x_y-z~.test", "%41.test", "a!$&'()*+,;=b", ""}) {
        std::string req = "GET / HTTP/1.1\r\nHost: " + std::string(h) + "\r\n\r\n";
        EXPECT_EQ(expect_req_ok(ps, req).host, h) << h;
    }
    for (std::string_view h : {"a b", "a/b", "a@b", "a:b:c", "a:8o", "[::1", "[::1]x", "[zz::1]", "a\\b", "%4", "%zz.test",
                               "a\"b", "a?b", "a#b", "caf\xc3\xa9", "[]", "a{b}"}) {
        std::string req = "GET / HTTP/1.1\r\nHost: " + std::string(h) + "\r\n\r\n";
        progress p = expect_req_fail(req, errc::http_bad_request);
        EXPECT_STREQ(p.err.detail, "invalid Host") << h;
    }
}

TEST(Http1Request, TransferEncoding) {
    request_parser ps;
    EXPECT_EQ(expect_req_ok(ps, with_headers("Transfer-Encoding: chunked\r\n")).body.kind, body_kind::chunked);
    EXPECT_EQ(expect_req_ok(ps, with_headers("Transfer-Encoding: CHUNKED\r\n")).body.kind, body_kind::chunked);
    // Empty list elements are refused in Transfer-Encoding (as llhttp does; issue 11): a proxy
    // and a server that disagree on where the list ends disagree on the framing.
    for (std::string_view te : {",chunked, ", "chunked,", "chunked, ", ", chunked", "gzip,,chunked", ""}) {
        progress e = expect_req_fail(with_headers("Transfer-Encoding: " + std::string(te) + "\r\n"), errc::http_bad_request);
        EXPECT_STREQ(e.err.detail, "empty element in Transfer-Encoding") << te;
    }

    progress p = expect_req_fail(with_headers("Transfer-Encoding: chunked, identity\r\n"), errc::http_bad_request);
    EXPECT_STREQ(p.err.detail, "chunked is not the final transfer coding");
    p = expect_req_fail(with_headers("Transfer-Encoding: xchunked\r\n"), errc::http_not_implemented);
    EXPECT_EQ(status_for(p.err.code), 501);
    expect_req_fail(with_headers("Transfer-Encoding: chunked;x=1\r\n"), errc::http_not_implemented);
    expect_req_fail(with_headers("Transfer-Encoding: gzip\r\n"), errc::http_not_implemented);
    expect_req_fail(with_headers("Transfer-Encoding: gzip, chunked\r\n"), errc::http_not_implemented);
    expect_req_fail(with_headers("Transfer-Encoding: chunked, chunked\r\n"), errc::http_bad_request);
    expect_req_fail(with_headers("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n"), errc::http_bad_request);
    // Two lines form one list: gzip then chunked.
    expect_req_fail(with_headers("Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n"), errc::http_not_implemented);
    // chunked then another line: chunked is not final.
    expect_req_fail(with_headers("Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n"), errc::http_bad_request);
    expect_req_fail(with_headers("Transfer-Encoding:\r\n"), errc::http_bad_request);
    expect_req_fail(with_headers("Transfer-Encoding: ,\r\n"), errc::http_bad_request);
    // TE in HTTP/1.0 is faulty framing.
    p = expect_req_fail("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", errc::http_smuggling);
    EXPECT_STREQ(p.err.detail, "Transfer-Encoding in HTTP/1.0");
}

TEST(Http1Request, Host) {
    progress p = expect_req_fail("GET / HTTP/1.1\r\nX: y\r\n\r\n", errc::http_bad_request);
    EXPECT_STREQ(p.err.detail, "missing Host");
    p = expect_req_fail("GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n", errc::http_bad_request);
    EXPECT_STREQ(p.err.detail, "duplicate Host");
    request_parser ps;
    EXPECT_EQ(expect_req_ok(ps, "GET / HTTP/1.0\r\n\r\n").host, "");
    EXPECT_EQ(expect_req_ok(ps, "GET / HTTP/1.1\r\nHost:\r\n\r\n").host, "");
}

// ---- persistence, Expect, Upgrade ------------------------------------------------------------------

TEST(Http1Request, KeepAliveMatrix) {
    struct row { const char* connection; bool v10; bool v11; };
    const row rows[] = {
        {nullptr, false, true},
        {"close", false, false},
        {"Close", false, false},
        {"keep-alive", true, true},
        {"Keep-Alive", true, true},
        {"foo, close", false, false},
        {"keep-alive, close", false, false},
        {"upgrade", false, true},
        {"keep-alive , te", true, true},
        {"closed", false, true},       // a token is compared whole
        {"xkeep-alive", false, true},
    };
    for (const row& r : rows) {
        for (bool v11 : {false, true}) {
            std::string s = std::string("GET / HTTP/1.") + (v11 ? "1" : "0") + "\r\nHost: a\r\n";
            if (r.connection) s += std::string("Connection: ") + r.connection + "\r\n";
            s += "\r\n";
            request_parser ps;
            EXPECT_EQ(expect_req_ok(ps, s).keep_alive, v11 ? r.v11 : r.v10) << s;
        }
    }
    // Several Connection lines combine.
    request_parser ps;
    EXPECT_FALSE(expect_req_ok(ps, "GET / HTTP/1.1\r\nHost: a\r\nConnection: te\r\nConnection: close\r\n\r\n").keep_alive);
    EXPECT_TRUE(expect_req_ok(ps, "GET / HTTP/1.0\r\nConnection: te\r\nConnection: keep-alive\r\n\r\n").keep_alive);
}

TEST(Http1Request, ExpectContinue) {
    request_parser ps;
    EXPECT_TRUE(expect_req_ok(ps, with_headers("Expect: 100-continue\r\nContent-Length: 3\r\n")).expect_continue);
    EXPECT_TRUE(expect_req_ok(ps, with_headers("Expect: 100-Continue\r\n")).expect_continue);
    EXPECT_FALSE(expect_req_ok(ps, with_headers("Expect: something\r\n")).expect_continue);
    EXPECT_FALSE(expect_req_ok(ps, with_headers("")).expect_continue);
    // Ignored in HTTP/1.0 (RFC 9110 §10.1.1).
    EXPECT_FALSE(expect_req_ok(ps, "POST / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n").expect_continue);
}

TEST(Http1Request, UpgradeDetection) {
    request_parser ps;
    const request_head& h = expect_req_ok(ps,
        "GET /tunnel HTTP/1.1\r\nHost: r\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n");
    EXPECT_TRUE(h.upgrade);
    EXPECT_EQ(h.value("upgrade"), "websocket");
    EXPECT_FALSE(expect_req_ok(ps, "GET / HTTP/1.1\r\nHost: r\r\nUpgrade: websocket\r\n\r\n").upgrade);
    EXPECT_FALSE(expect_req_ok(ps, "GET / HTTP/1.1\r\nHost: r\r\nConnection: upgrade\r\n\r\n").upgrade);
    EXPECT_FALSE(expect_req_ok(ps, "GET / HTTP/1.0\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n").upgrade);
}

// ---- incremental behaviour -------------------------------------------------------------------------

// A set of heads, good and bad, used for the split-equivalence tests.
std::vector<std::string> request_corpus() {
    return {
        "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET /api/tags HTTP/1.1\r\nHost: localhost:11434\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n",
        "POST /api/generate HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\nContent-Type: application/json\r\n\r\n{\"a\":\"b\"}xx",
        "\r\n\r\nPUT /p HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n",
        "POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nX: \t v \t\r\nY:\r\n\r\nGET / HTTP/1.1\r\n",
        // failures
        "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
        "GET / HTTP/1.1\r\nHost : a\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n",
        "GET / HTTP/1.1\nHost: a\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\n\n",
        "GET / HTTP/1.1\r\nHost: a\r\rX\r\n\r\n",
        "GET / HTTP/2.0\r\nHost: a\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n",
        std::string("GET / HTTP/1.1\r\nHo\0st: a\r\n\r\n", 29),
        "GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + std::string(300, 'b') + "\r\n\r\n",
        "GET /" + std::string(100, 't') + " HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n",
    };
}

limits small_limits() {
    limits l;
    l.max_head_bytes = 200;
    l.max_start_line = 80;
    l.max_headers = 4;
    return l;
}

TEST(Http1Request, AnySplitEqualsWhole) {
    for (const std::string& s : request_corpus()) {
        for (const limits& l : {limits{}, small_limits()}) {
            request_parser whole(l);
            progress pw = parse_whole(whole, s);
            ASSERT_FALSE(pw.need_more()) << testing::PrintToString(s);
            const std::string want = summary(pw, whole);
            request_parser ps(l);
            for (std::size_t k = 0; k <= s.size(); ++k)
                ASSERT_EQ(summary(parse_split(ps, s, k), ps), want) << "split at " << k << " of " << testing::PrintToString(s);
            ASSERT_EQ(summary(parse_bytewise(ps, s), ps), want) << testing::PrintToString(s);
        }
    }
}

TEST(Http1Request, NoRescanWhenFedByteByByte) {
    std::string s = "GET / HTTP/1.1\r\nHost: a\r\nCookie: " + std::string(8000, 'c') + "\r\n";
    for (int i = 0; i < 20; ++i) s += "X-H" + std::to_string(i) + ": " + std::string(100, 'v') + "\r\n";
    s += "\r\n";
    request_parser ps;
    std::uint64_t before = ps.bytes_scanned();
    progress p = parse_bytewise(ps, s);
    ASSERT_TRUE(p.done()) << summary(p);
    // Every byte is looked at about once (the CRs of lines may be looked at twice), not once per
    // call (which would be ~s.size()^2 / 2).
    EXPECT_LE(ps.bytes_scanned() - before, s.size());
}

TEST(Http1Request, MovedBufferRestartsCorrectly) {
    std::string s = "GET /moved HTTP/1.1\r\nHost: a\r\nX: y\r\n\r\n";
    request_parser ps;
    std::string first = s.substr(0, 20);
    EXPECT_TRUE(ps.parse(B(first)).need_more());
    std::string second = s;  // a different buffer holding the same prefix and more
    progress p = ps.parse(B(second));
    ASSERT_TRUE(p.done());
    EXPECT_EQ(ps.head().target.data(), second.data() + 4);
    EXPECT_EQ(ps.head().headers[1].value, "y");
}

TEST(Http1Request, StickyResultsAndReset) {
    request_parser ps;
    std::string bad = "GET / HTTP/1.1\r\nHost : a\r\n\r\n";
    progress p = ps.parse(B(bad));
    EXPECT_TRUE(p.failed());
    EXPECT_EQ(summary(ps.parse(B("GET / HTTP/1.1\r\nHost: a\r\n\r\n"))), summary(p));
    ps.reset();
    EXPECT_TRUE(ps.parse(B("GET / HTTP/1.1\r\nHost: a\r\n\r\n")).done());
}

// ---- pipelining ----------------------------------------------------------------------------------

TEST(Http1Request, PipelinedRequestsConsumedPrecisely) {
    const std::string msgs[] = {
        "GET /one HTTP/1.1\r\nHost: a\r\n\r\n",
        "POST /two HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
        "POST /three HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;e=1\r\nde\r\n0\r\nT: v\r\n\r\n",
        "\r\nGET /four HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    };
    std::string all;
    for (const auto& m : msgs) all += m;
    const char* targets[] = {"/one", "/two", "/three", "/four"};
    const char* bodies[] = {"", "hello", "abcde", ""};

    request_parser ps;
    body_reader br;
    std::size_t pos = 0;
    for (int i = 0; i < 4; ++i) {
        ps.reset();
        progress h = ps.parse(B(std::string_view(all).substr(pos)));
        ASSERT_TRUE(h.done()) << i << " " << summary(h);
        EXPECT_EQ(ps.head().target, targets[i]);
        pos += h.consumed;
        br.start(ps.head().body);
        std::string payload;
        progress b = decode_all(br, std::string_view(all).substr(pos), 1 << 20, payload);
        ASSERT_TRUE(b.done()) << i << " " << summary(b);
        EXPECT_EQ(payload, bodies[i]);
        pos += b.consumed;
        EXPECT_EQ(pos, [&] { std::size_t e = 0; for (int j = 0; j <= i; ++j) e += msgs[j].size(); return e; }());
        EXPECT_EQ(ps.head().keep_alive, i != 3);
    }
    EXPECT_EQ(pos, all.size());
}

// ---- responses ----------------------------------------------------------------------------------

namespace {

progress resp(response_parser& rp, std::string_view s, std::string_view method = "GET") {
    rp.set_request_method(method);
    return parse_whole(rp, s);
}

}  // namespace

TEST(Http1Response, StatusLine) {
    response_parser rp;
    ASSERT_TRUE(resp(rp, "HTTP/1.1 404 Not Found Here\r\nContent-Length: 0\r\n\r\n").done());
    EXPECT_EQ(rp.head().status_code, 404);
    EXPECT_EQ(rp.head().reason, "Not Found Here");
    ASSERT_TRUE(resp(rp, "HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\n").done());
    EXPECT_EQ(rp.head().reason, "");
    ASSERT_TRUE(resp(rp, "HTTP/1.0 200\r\nContent-Length: 0\r\n\r\n").done());
    EXPECT_EQ(rp.head().ver, version::http_1_0);
    for (const char* bad : {"HTTP/1.1 20 OK\r\n\r\n", "HTTP/1.1 2000 OK\r\n\r\n", "HTTP/1.1 600 X\r\n\r\n",
                            "HTTP/1.1 abc OK\r\n\r\n", "HTTP/1.1  200 OK\r\n\r\n", "HTTP/1.1 200OK\r\n\r\n",
                            "HTTP/1.1\r\n\r\n", "ICY 200 OK\r\n\r\n", "HTTP/1.1 200 OK\nX: y\r\n\r\n"}) {
        progress p = resp(rp, bad);
        EXPECT_TRUE(p.failed()) << bad;
        EXPECT_EQ(p.err.code, errc::http_bad_request) << bad;
    }
    EXPECT_EQ(resp(rp, "HTTP/2.0 200 OK\r\n\r\n").err.code, errc::http_unsupported_version);
}

TEST(Http1Response, BodyFraming) {
    response_parser rp;
    struct row { const char* method; const char* head; body_kind kind; std::uint64_t len; bool ka; };
    const row rows[] = {
        {"GET", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", body_kind::content_length, 10, true},
        {"GET", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", body_kind::chunked, 0, true},
        {"GET", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", body_kind::chunked, 0, true},
        {"GET", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", body_kind::until_close, 0, false},
        {"GET", "HTTP/1.1 200 OK\r\n\r\n", body_kind::until_close, 0, false},
        {"GET", "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\n", body_kind::content_length, 1, true},
        {"GET", "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", body_kind::content_length, 1, false},
        {"GET", "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n", body_kind::content_length, 1, false},
        {"GET", "HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n", body_kind::none, 0, true},
        {"GET", "HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n", body_kind::none, 0, true},
        {"GET", "HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n", body_kind::none, 0, true},
        {"GET", "HTTP/1.1 100 Continue\r\n\r\n", body_kind::none, 0, true},
        {"GET", "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n", body_kind::none, 0, true},
        {"HEAD", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", body_kind::none, 0, true},
        {"HEAD", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", body_kind::none, 0, true},
        {"HEAD", "HTTP/1.1 200 OK\r\n\r\n", body_kind::none, 0, true},
        {"CONNECT", "HTTP/1.1 200 OK\r\n\r\n", body_kind::none, 0, true},
        {"CONNECT", "HTTP/1.1 407 Auth\r\nContent-Length: 2\r\n\r\n", body_kind::content_length, 2, true},
    };
    for (const row& r : rows) {
        progress p = resp(rp, r.head, r.method);
        ASSERT_TRUE(p.done()) << r.head << summary(p);
        EXPECT_EQ(rp.head().body.kind, r.kind) << r.method << " " << r.head;
        EXPECT_EQ(rp.head().body.length, r.len) << r.head;
        EXPECT_EQ(rp.head().keep_alive, r.ka) << r.head;
        response_parser bw;
        bw.set_request_method(r.method);
        EXPECT_EQ(summary(parse_bytewise(bw, r.head), bw), summary(p, rp));
    }
    rp.set_request_method("GET");
    EXPECT_EQ(resp(rp, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n").err.code, errc::http_smuggling);
    EXPECT_EQ(resp(rp, "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n").err.code, errc::http_smuggling);
    EXPECT_EQ(resp(rp, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n").err.code, errc::http_bad_request);
    EXPECT_EQ(resp(rp, "HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n").err.code, errc::http_bad_request);
    // HEAD answers may announce any size: nothing follows, so max_body does not apply.
    limits l;
    l.max_body = 10;
    response_parser small(l);
    EXPECT_TRUE(resp(small, "HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n", "HEAD").done());
    EXPECT_EQ(resp(small, "HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n", "GET").err.code, errc::http_body_too_large);
}

TEST(Http1Response, Upgrade) {
    response_parser rp;
    progress p = resp(rp, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                          "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n\x81\x05hello");
    ASSERT_TRUE(p.done());
    EXPECT_TRUE(rp.head().upgrade);
    EXPECT_EQ(rp.head().body.kind, body_kind::none);
    EXPECT_EQ(p.consumed + 7, std::string_view("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                                               "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n\x81\x05hello").size());
    EXPECT_TRUE(resp(rp, "HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\n\r\n").failed());
    ASSERT_TRUE(resp(rp, "HTTP/1.1 200 OK\r\nUpgrade: h2c\r\nContent-Length: 0\r\n\r\n").done());
    EXPECT_FALSE(rp.head().upgrade);
}

TEST(Http1Response, InterimThenFinalOnOneConnection) {
    // 100 Continue, then the final response, then its body: each part's consumed count is exact.
    const std::string in = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1";
    response_parser rp;
    rp.set_request_method("POST");
    progress a = rp.parse(B(in));
    ASSERT_TRUE(a.done());
    EXPECT_EQ(rp.head().status_code, 100);
    EXPECT_EQ(a.consumed, 25u);
    rp.reset();  // the request method is kept
    progress b = rp.parse(B(std::string_view(in).substr(a.consumed)));
    ASSERT_TRUE(b.done());
    EXPECT_EQ(rp.head().status_code, 200);
    body_reader br;
    br.start(rp.head().body);
    progress c = br.decode(B(std::string_view(in).substr(a.consumed + b.consumed)));
    EXPECT_TRUE(c.done());
    EXPECT_EQ(as_string(c.data), "ok");
    EXPECT_EQ(a.consumed + b.consumed + c.consumed, in.size() - 8);
    // HEAD is remembered across reset() too.
    response_parser hp;
    hp.set_request_method("HEAD");
    hp.reset();
    ASSERT_TRUE(hp.parse(B("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n")).done());
    EXPECT_EQ(hp.head().body.kind, body_kind::none);
}

TEST(Http1Response, AnySplitEqualsWhole) {
    const std::string corpus[] = {
        "HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\n\r\n",
        "HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot found",
        "HTTP/1.0 200\r\n\r\n",
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
        "HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
        "HTTP/1.1 2x0 OK\r\n\r\n",
        "HTTP/1.1 200 OK\r\nX: \x01\r\n\r\n",
    };
    for (const std::string& s : corpus) {
        response_parser whole;
        progress pw = parse_whole(whole, s);
        ASSERT_FALSE(pw.need_more()) << s;
        std::string want = summary(pw, whole);
        response_parser rp;
        for (std::size_t k = 0; k <= s.size(); ++k) ASSERT_EQ(summary(parse_split(rp, s, k), rp), want) << k << " " << s;
        ASSERT_EQ(summary(parse_bytewise(rp, s), rp), want);
    }
}

// ---- helpers ------------------------------------------------------------------------------------

TEST(Http1Helpers, HasToken) {
    EXPECT_TRUE(has_token("keep-alive, Upgrade", "upgrade"));
    EXPECT_TRUE(has_token("UPGRADE", "upgrade"));
    EXPECT_TRUE(has_token(" ,, upgrade ,", "upgrade"));
    EXPECT_TRUE(has_token("a,\tupgrade\t", "upgrade"));
    EXPECT_FALSE(has_token("upgrades", "upgrade"));
    EXPECT_FALSE(has_token("x-upgrade", "upgrade"));
    EXPECT_FALSE(has_token("up grade", "upgrade"));
    EXPECT_FALSE(has_token("", "upgrade"));
    EXPECT_FALSE(has_token(",", "upgrade"));
}

TEST(Http1Helpers, StatusForErrors) {
    EXPECT_EQ(status_for(errc::http_bad_request), 400);
    EXPECT_EQ(status_for(errc::http_smuggling), 400);
    EXPECT_EQ(status_for(errc::http_body_too_large), 413);
    EXPECT_EQ(status_for(errc::http_uri_too_long), 414);
    EXPECT_EQ(status_for(errc::http_header_too_large), 431);
    EXPECT_EQ(status_for(errc::http_too_many_headers), 431);
    EXPECT_EQ(status_for(errc::http_not_implemented), 501);
    EXPECT_EQ(status_for(errc::http_unsupported_version), 505);
    EXPECT_EQ(status_for(errc::malformed), 400);
    EXPECT_EQ(reason_phrase(431), "Request Header Fields Too Large");
    EXPECT_EQ(reason_phrase(299), "");
}
