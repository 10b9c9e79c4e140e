// exchange_tracker: when may the agent keep an upstream connection for the next channel?
#include "agent/exchange_tracker.hh"

#include <gtest/gtest.h>

#include <string>
#include <string_view>

namespace ferry::agent {
namespace {

bytes b(std::string_view s) { return bytes(reinterpret_cast<const std::byte*>(s.data()), s.size()); }

// Feeds both sides whole, or (split) one byte at a time, and answers reusable().
bool run(std::string_view req, std::string_view resp, bool split = false) {
    exchange_tracker t;
    auto feed = [&](std::string_view s, bool request) {
        if (!split) return request ? t.request_bytes(b(s)) : t.response_bytes(b(s));
        for (char c : s) request ? t.request_bytes(b(std::string_view(&c, 1))) : t.response_bytes(b(std::string_view(&c, 1)));
    };
    feed(req, true);
    feed(resp, false);
    return t.reusable();
}

constexpr std::string_view get = "GET /x HTTP/1.1\r\nHost: a\r\n\r\n";
constexpr std::string_view ok5 = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";

TEST(ExchangeTracker, KeepAliveExchangesAreReusable) {
    for (bool split : {false, true}) {
        SCOPED_TRACE(split);
        EXPECT_TRUE(run(get, ok5, split));
        EXPECT_TRUE(run(get, "HTTP/1.1 204 No Content\r\n\r\n", split));
        EXPECT_TRUE(run(get, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", split));
        EXPECT_TRUE(run(get, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX-T: 1\r\n\r\n", split));
        // HEAD: the Content-Length describes a body that does not come.
        EXPECT_TRUE(run("HEAD /x HTTP/1.1\r\nHost: a\r\n\r\n", "HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n", split));
        // Interim responses before the final one; a request with an empty body.
        EXPECT_TRUE(run("POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
                        "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
                        "HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok",
                        split));
        // HTTP/1.0 upstream that says keep-alive with a length.
        EXPECT_TRUE(run(get, "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 5\r\n\r\nhello", split));
    }
}

TEST(ExchangeTracker, ConnectionsThatMustCloseAreNot) {
    for (bool split : {false, true}) {
        SCOPED_TRACE(split);
        EXPECT_FALSE(run(get, "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 5\r\n\r\nhello", split));
        EXPECT_FALSE(run(get, "HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nhello", split));
        EXPECT_FALSE(run("GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", ok5, split));
        // A body delimited by the close.
        EXPECT_FALSE(run(get, "HTTP/1.1 200 OK\r\n\r\nuntil the end", split));
        // Upgrades are never followed.
        EXPECT_FALSE(run("GET /x HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
                         "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n", split));
        EXPECT_FALSE(run(get, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n", split));
    }
}

// Issue 11 item 1: an upstream may answer without reading a request body (a GET handler that
// ignores it, an early 401/413); the unread bytes are one consumer's and would prefix the next
// consumer's request on a kept connection. So a request with a body never leaves its
// connection reusable, however complete both messages look.
TEST(ExchangeTracker, RequestsWithABodyNeverLeaveTheConnectionReusable) {
    for (bool split : {false, true}) {
        SCOPED_TRACE(split);
        // The smuggling shape: a GET whose body is the start of another request.
        EXPECT_FALSE(run("GET /x HTTP/1.1\r\nHost: a\r\nContent-Length: 45\r\n\r\n"
                         "POST /comment HTTP/1.1\r\nContent-Length: 200\r\n",
                         ok5, split));
        EXPECT_FALSE(run("POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\nabc",
                         "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok", split));
        EXPECT_FALSE(run("POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", ok5, split));
        // Even an empty chunked body: its "0\r\n\r\n" may be left unread too.
        EXPECT_FALSE(run("POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", ok5, split));
        // An early answer (401) to a body the upstream never read.
        EXPECT_FALSE(run("PUT /x HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nabcd",
                         "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n", split));
    }
    exchange_tracker t;
    t.request_bytes(b("POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\nz"));
    EXPECT_TRUE(t.request_had_body());
    t.response_bytes(b(ok5));
    EXPECT_TRUE(t.response_complete());
    EXPECT_FALSE(t.reusable());
    t.reset();  // the next exchange on a fresh tracker state (never reached in the agent)
    EXPECT_FALSE(t.request_had_body());
    t.request_bytes(b(get));
    t.response_bytes(b(ok5));
    EXPECT_TRUE(t.reusable());
}

TEST(ExchangeTracker, IncompleteOrExtraBytesAreNot) {
    EXPECT_FALSE(run(get, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhell"));      // short body
    EXPECT_FALSE(run(get, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello!"));   // a byte after it
    EXPECT_FALSE(run(get, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n"));             // head not finished
    EXPECT_FALSE(run(get, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"));
    EXPECT_FALSE(run("POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc", ok5));  // request body cut
    EXPECT_FALSE(run(std::string(get) + std::string(get), ok5));  // two requests on one channel
    EXPECT_FALSE(run("GET /x HTTP/1.1\r\nHost: a\r\n\r\nX", ok5));  // a byte after a bodiless request
    EXPECT_FALSE(run(get, ""));                                    // no response at all
}

TEST(ExchangeTracker, WhatIsNotHttpIsNeverReusable) {
    EXPECT_FALSE(run("SSH-2.0-OpenSSH_9.2\r\n", "SSH-2.0-OpenSSH_9.2\r\n"));
    EXPECT_FALSE(run(get, "garbage\r\n\r\n"));
    EXPECT_FALSE(run("GET /x HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", ok5));
    EXPECT_FALSE(run(get, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"));
    EXPECT_FALSE(run("CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", "HTTP/1.1 200 OK\r\n\r\n"));
    // A response before the request head was complete.
    exchange_tracker t;
    t.request_bytes(b("GET /x HTT"));
    t.response_bytes(b(ok5));
    t.request_bytes(b("P/1.1\r\nHost: a\r\n\r\n"));
    EXPECT_FALSE(t.reusable());
}

TEST(ExchangeTracker, ResetStartsTheNextExchange) {
    exchange_tracker t;
    t.request_bytes(b(get));
    EXPECT_FALSE(t.response_started());
    t.response_bytes(b(ok5));
    EXPECT_TRUE(t.response_started());
    EXPECT_TRUE(t.response_complete());
    EXPECT_TRUE(t.reusable());
    t.reset();
    EXPECT_FALSE(t.reusable());
    EXPECT_FALSE(t.response_started());
    t.request_bytes(b("HEAD /y HTTP/1.1\r\nHost: a\r\n\r\n"));
    t.response_bytes(b("HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n"));
    EXPECT_TRUE(t.reusable());  // the method of the new request counts, not the old one
    t.reset();
    t.request_bytes(b(get));
    t.response_bytes(b("HTTP/1.1 200 OK\r\n\r\nbody"));
    EXPECT_FALSE(t.response_complete());
    t.response_eof();
    EXPECT_TRUE(t.response_complete());
    EXPECT_FALSE(t.reusable());  // ended by the close
}

TEST(ExchangeTracker, IdempotentMethodsMayBeSentAgain) {
    for (std::string_view m : {"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"}) {
        exchange_tracker t;
        t.request_bytes(b(std::string(m) + " /x HTTP/1.1\r\nHost: a\r\n\r\n"));
        EXPECT_TRUE(t.request_idempotent()) << m;
    }
    for (std::string_view m : {"POST", "PATCH", "LOCK", "get"}) {
        exchange_tracker t;
        t.request_bytes(b(std::string(m) + " /x HTTP/1.1\r\nHost: a\r\n\r\n"));
        EXPECT_FALSE(t.request_idempotent()) << m;
    }
    exchange_tracker t;
    t.request_bytes(b("GET /x HTT"));  // not known before the head is complete
    EXPECT_FALSE(t.request_idempotent());
    t.request_bytes(b("P/1.1\r\nHost: a\r\n\r\n"));
    EXPECT_TRUE(t.request_idempotent());
    t.reset();
    EXPECT_FALSE(t.request_idempotent());
}

TEST(ExchangeTracker, OversizedHeadsStopTheTracking) {
    std::string big = "GET /x HTTP/1.1\r\nHost: a\r\nX-Big: " + std::string(64 * 1024, 'a') + "\r\n\r\n";
    EXPECT_FALSE(run(big, ok5));
    std::string bigresp = "HTTP/1.1 200 OK\r\nX-Big: " + std::string(64 * 1024, 'a') + "\r\nContent-Length: 0\r\n\r\n";
    EXPECT_FALSE(run(get, bigresp));
}

}  // namespace
}  // namespace ferry::agent
