// Body framing: Content-Length tracking, chunked decoding (every split), pass-through that
// forwards the exact bytes of the message, limits and malformed chunked shapes.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "proto/http1/http1.hh"
#include "util.hh"

using namespace ferry;
using namespace ferry::http1;
using namespace ferry::http1::test;

namespace {

// Pass-through of `in` in pieces of `step`: returns the bytes it said belong to the message.
progress pass_all(chunked_decoder& d, std::string_view in, std::size_t step, std::string& forwarded) {
    std::size_t pos = 0;
    progress r;
    while (pos < in.size() || in.empty()) {
        std::string_view piece = in.substr(pos, std::min(step, in.size() - pos));
        r = d.pass_through(B(piece));
        if (r.kind != outcome::failed) {
            // What a forwarder sends: the consumed bytes minus the trailer field lines.
            std::string_view used = piece.substr(0, r.consumed);
            if (r.dropped.empty()) {
                forwarded.append(used);
            } else {
                const auto at = static_cast<std::size_t>(reinterpret_cast<const char*>(r.dropped.data()) - piece.data());
                EXPECT_LE(at + r.dropped.size(), used.size());
                forwarded.append(used.substr(0, at));
                forwarded.append(used.substr(at + r.dropped.size()));
            }
        }
        pos += r.consumed;
        if (r.kind != outcome::need_more || in.empty()) break;
    }
    r.consumed = pos;
    return r;
}

progress chunked_fail(std::string_view body, errc code, const limits& l = {}) {
    chunked_decoder d(l);
    std::string payload;
    progress p = decode_all(d, body, body.size() + 1, payload);
    EXPECT_TRUE(p.failed()) << testing::PrintToString(std::string(body)) << " " << summary(p);
    EXPECT_EQ(p.err.code, code) << testing::PrintToString(std::string(body)) << " " << summary(p);
    // Byte by byte, and in pass-through, the same failure at the same offset.
    chunked_decoder d1(l);
    std::string p1;
    EXPECT_EQ(summary(decode_all(d1, body, 1, p1)), summary(p));
    chunked_decoder d2(l);
    std::string fwd;
    progress pt = pass_all(d2, body, 3, fwd);
    EXPECT_EQ(pt.err.code, p.err.code);
    EXPECT_EQ(pt.err.offset, p.err.offset);
    return p;
}

const std::vector<std::string> good_bodies = {
    "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
    "0\r\n\r\n",
    "1\r\nx\r\n0\r\n\r\n",
    "000a\r\n0123456789\r\n0\r\n\r\n",
    "A;name=value;other=\"quoted ; \\\"x\"\r\n0123456789\r\n0;last\r\n\r\n",
    "3;ext\r\nabc\r\n0;e \t=\"v w\"\r\n\r\n",
    "4\r\n\r\n\r\n\r\n0\r\nExpires: Wed, 21 Oct 2015 07:28:00 GMT\r\nX-Checksum:abc\r\n\r\n",
    "11\r\n{\"response\":\"hi\"}\r\n11\r\n{\"response\":\"yo\"}\r\n0\r\n\r\n",
    "1\r\na\r\n0\r\nAuthorization: Bearer x\r\n\r\n",
};
const std::vector<std::string> good_payloads = {
    "hello world", "", "x", "0123456789", "0123456789", "abc", "\r\n\r\n", "{\"response\":\"hi\"}{\"response\":\"yo\"}",
    "a",
};
// What pass_through lets a forwarder send: the body without its trailer field lines.
const std::vector<std::string> good_forwarded = {
    good_bodies[0], good_bodies[1], good_bodies[2], good_bodies[3], good_bodies[4], good_bodies[5],
    "4\r\n\r\n\r\n\r\n0\r\n\r\n", good_bodies[7], "1\r\na\r\n0\r\n\r\n",
};

}  // namespace

TEST(Http1Chunked, DecodesAndStopsAtMessageEnd) {
    for (std::size_t i = 0; i < good_bodies.size(); ++i) {
        std::string in = good_bodies[i] + "GET /next HTTP/1.1\r\n";
        chunked_decoder d;
        std::string payload;
        progress p = decode_all(d, in, in.size(), payload);
        ASSERT_TRUE(p.done()) << good_bodies[i] << summary(p);
        EXPECT_EQ(payload, good_payloads[i]);
        EXPECT_EQ(p.consumed, good_bodies[i].size());
        EXPECT_EQ(d.payload_bytes(), good_payloads[i].size());
        EXPECT_TRUE(d.done());
        // After done: done again, nothing consumed.
        progress again = d.decode(B("more"));
        EXPECT_TRUE(again.done());
        EXPECT_EQ(again.consumed, 0u);
    }
}

TEST(Http1Chunked, PayloadIsAViewIntoInput) {
    std::string in = "5\r\nhello\r\n0\r\n\r\n";
    chunked_decoder d;
    progress p = d.decode(B(in));
    ASSERT_EQ(p.kind, outcome::payload);
    EXPECT_EQ(reinterpret_cast<const char*>(p.data.data()), in.data() + 3);
    EXPECT_EQ(as_string(p.data), "hello");
    EXPECT_EQ(p.consumed, 8u);
}

TEST(Http1Chunked, EverySplitGivesSamePayloadAndEnd) {
    for (std::size_t i = 0; i < good_bodies.size(); ++i) {
        const std::string in = good_bodies[i] + "NEXT";
        for (std::size_t k = 0; k <= in.size(); ++k) {
            chunked_decoder d;
            std::string payload;
            // Two pieces: [0, k) then the rest.
            std::size_t used = 0;
            progress last;
            for (std::string_view piece : {std::string_view(in).substr(0, k), std::string_view(in).substr(k)}) {
                std::size_t off = 0;
                for (;;) {
                    last = d.decode(B(piece.substr(off)));
                    payload.append(as_string(last.data));
                    off += last.consumed;
                    if (last.kind != outcome::payload) break;
                }
                used += off;
                if (last.done()) break;
            }
            ASSERT_TRUE(last.done()) << k << " " << summary(last);
            EXPECT_EQ(used, good_bodies[i].size()) << k;
            EXPECT_EQ(payload, good_payloads[i]) << k;
        }
        chunked_decoder d1;
        std::string p1;
        progress b = decode_all(d1, in, 1, p1);
        EXPECT_TRUE(b.done());
        EXPECT_EQ(b.consumed, good_bodies[i].size());
        EXPECT_EQ(p1, good_payloads[i]);
    }
}

TEST(Http1Chunked, PassThroughForwardsExactlyTheMessage) {
    for (std::size_t i = 0; i < good_bodies.size(); ++i) {
        const std::string& body = good_bodies[i];
        const std::string in = body + "HTTP/1.1 200 OK\r\n";
        for (std::size_t step : {std::size_t(1), std::size_t(2), std::size_t(7), in.size()}) {
            chunked_decoder d;
            std::string fwd;
            progress p = pass_all(d, in, step, fwd);
            ASSERT_TRUE(p.done()) << step << " " << summary(p);
            EXPECT_EQ(p.consumed, body.size()) << "step " << step;  // ends at the message end
            // Output equals input but for the trailer field lines, which are dropped.
            EXPECT_EQ(fwd, good_forwarded[i]) << "step " << step;
            EXPECT_EQ(p.data.size(), 0u);
        }
    }
}

// Issue 11 item 8: trailers are never forwarded (they could carry what head rewriting removes),
// framing fields in them are refused, and the chunk-size line is as strict as llhttp's.
TEST(Http1Chunked, TrailersAreDroppedAtEverySplit) {
    const std::string body = "2\r\nok\r\n0\r\nAuthorization: Bearer stolen\r\nConnection: x\r\nX-A: 1\r\n\r\n";
    for (std::size_t k = 0; k <= body.size(); ++k) {
        chunked_decoder d;
        std::string fwd;
        for (std::string_view piece : {std::string_view(body).substr(0, k), std::string_view(body).substr(k)}) {
            progress r = d.pass_through(B(piece));
            ASSERT_FALSE(r.failed()) << k;
            std::string_view used = piece.substr(0, r.consumed);
            if (r.dropped.empty()) {
                fwd.append(used);
            } else {
                const auto at = static_cast<std::size_t>(reinterpret_cast<const char*>(r.dropped.data()) - piece.data());
                fwd.append(used.substr(0, at));
                fwd.append(used.substr(at + r.dropped.size()));
            }
        }
        EXPECT_TRUE(d.done()) << k;
        EXPECT_EQ(fwd, "2\r\nok\r\n0\r\n\r\n") << k;
    }
}

TEST(Http1Chunked, StrictLikeLlhttp) {
    progress p = chunked_fail("0\r\nContent-Length: 5\r\n\r\n", errc::http_bad_request);
    EXPECT_STREQ(p.err.detail, "framing field in trailer");
    p = chunked_fail("0\r\nX-A: 1\r\ntransfer-ENCODING: chunked\r\n\r\n", errc::http_bad_request);
    EXPECT_STREQ(p.err.detail, "framing field in trailer");
    // Names that only start like a framing field are fine.
    for (std::string_view ok : {"0\r\nContent-Length-X: 5\r\n\r\n", "0\r\nContent-Lengt: 5\r\n\r\n",
                                "0\r\nX-Transfer-Encoding-Is-A-Long-Name: y\r\n\r\n"}) {
        chunked_decoder d;
        std::string payload;
        EXPECT_TRUE(decode_all(d, ok, 1, payload).done()) << ok;
    }
    p = chunked_fail("5 ;ext\r\nhello\r\n0\r\n\r\n", errc::http_bad_request);
    EXPECT_STREQ(p.err.detail, "whitespace after chunk size");
    p = chunked_fail("5\t\r\nhello\r\n0\r\n\r\n", errc::http_bad_request);
    EXPECT_STREQ(p.err.detail, "whitespace after chunk size");
    p = chunked_fail("5;a=\xe9\r\nhello\r\n0\r\n\r\n", errc::http_bad_request);
    EXPECT_STREQ(p.err.detail, "obs-text in chunk extension");
    p = chunked_fail("0;\x80\r\n\r\n", errc::http_bad_request);
    EXPECT_STREQ(p.err.detail, "obs-text in chunk extension");
}

TEST(Http1Chunked, Malformed) {
    progress p = chunked_fail("5\r\nhelloX\r\n0\r\n\r\n", errc::http_bad_request);
    EXPECT_STREQ(p.err.detail, "missing CRLF after chunk data");
    EXPECT_EQ(p.at, stage::chunk_data_end);
    EXPECT_EQ(p.err.offset, 8u);
    p = chunked_fail("5\r\nhello\rX0\r\n\r\n", errc::http_bad_request);
    EXPECT_EQ(p.at, stage::chunk_data_end);
    p = chunked_fail("5\r\nhello\n0\r\n\r\n", errc::http_bad_request);
    p = chunked_fail("5\nhello\r\n0\r\n\r\n", errc::http_bad_request);
    EXPECT_STREQ(p.err.detail, "bare LF");
    p = chunked_fail("5\rhello\r\n0\r\n\r\n", errc::http_bad_request);
    EXPECT_STREQ(p.err.detail, "bare CR");
    chunked_fail("5;x\nhello\r\n0\r\n\r\n", errc::http_bad_request);
    chunked_fail("\r\nhello\r\n0\r\n\r\n", errc::http_bad_request);   // empty size
    chunked_fail("-5\r\nhello\r\n0\r\n\r\n", errc::http_bad_request);
    chunked_fail("+5\r\nhello\r\n0\r\n\r\n", errc::http_bad_request);
    chunked_fail("0x5\r\nhello\r\n0\r\n\r\n", errc::http_bad_request);
    chunked_fail("g\r\n", errc::http_bad_request);
    chunked_fail(" 5\r\nhello\r\n0\r\n\r\n", errc::http_bad_request);
    p = chunked_fail("5 \r\nhello\r\n0\r\n\r\n", errc::http_bad_request);  // BWS only before ";"
    EXPECT_STREQ(p.err.detail, "whitespace after chunk size");
    chunked_fail("5 5\r\nhello\r\n0\r\n\r\n", errc::http_bad_request);
    chunked_fail("5;a\x01\r\nhello\r\n0\r\n\r\n", errc::http_bad_request);
    chunked_fail("0\r\n\n", errc::http_bad_request);                   // bare LF ending trailers
    chunked_fail("0\r\n\r\r", errc::http_bad_request);
}

TEST(Http1Chunked, SizeOverflow) {
    progress p = chunked_fail("ffffffffffffffffff\r\n", errc::http_body_too_large);
    EXPECT_STREQ(p.err.detail, "chunk size overflow");
    EXPECT_EQ(p.at, stage::chunk_size);
    EXPECT_EQ(p.err.offset, 16u);  // the 17th digit would overflow
    chunked_fail("10000000000000000\r\n", errc::http_body_too_large);
    // 16 digits fit, but are over the default body limit, checked before any data.
    p = chunked_fail("ffffffffffffffff\r\nabc", errc::http_body_too_large);
    EXPECT_STREQ(p.err.detail, "chunked body over the body limit");
    // Leading zeros are not an overflow.
    chunked_decoder d;
    std::string payload;
    EXPECT_TRUE(decode_all(d, "00000000000000000000001\r\nz\r\n0\r\n\r\n", 100, payload).done());
    EXPECT_EQ(payload, "z");
}

TEST(Http1Chunked, BodyLimitAcrossChunks) {
    limits l;
    l.max_body = 10;
    chunked_decoder ok(l);
    std::string payload;
    EXPECT_TRUE(decode_all(ok, "5\r\n12345\r\n5\r\n67890\r\n0\r\n\r\n", 100, payload).done());
    progress p = chunked_fail("5\r\n12345\r\n6\r\n678901\r\n0\r\n\r\n", errc::http_body_too_large, l);
    EXPECT_EQ(p.err.offset, 12u);  // at the LF of the second size line, before its data
    EXPECT_EQ(status_for(p.err.code), 413);
}

TEST(Http1Chunked, ChunkLineLimit) {
    limits l;
    l.max_chunk_line = 16;  // "5;" + 12 bytes + CRLF = 16
    std::string fits = "5;" + std::string(12, 'e') + "\r\nhello\r\n0\r\n\r\n";
    std::string over = "5;" + std::string(13, 'e') + "\r\nhello\r\n0\r\n\r\n";
    chunked_decoder d(l);
    std::string payload;
    EXPECT_TRUE(decode_all(d, fits, 100, payload).done());
    progress p = chunked_fail(over, errc::http_bad_request, l);
    EXPECT_STREQ(p.err.detail, "chunk size line too long");
    EXPECT_EQ(p.at, stage::chunk_ext);
    // A never-ending extension fails at the limit, not at the end of input.
    chunked_decoder e(l);
    std::string endless = "5;" + std::string(1000, 'x');
    progress q = e.pass_through(B(endless));
    EXPECT_TRUE(q.failed());
    EXPECT_EQ(q.err.offset, 16u);
    // Leading zeros count too.
    chunked_fail(std::string(20, '0') + "5\r\nhello\r\n0\r\n\r\n", errc::http_bad_request, l);
}

TEST(Http1Chunked, Trailers) {
    chunked_decoder d;
    std::string payload;
    ASSERT_TRUE(decode_all(d, "0\r\nA: 1\r\nB:\r\nC: x\ty\r\n\r\n", 100, payload).done());
    progress p = chunked_fail("0\r\nA: 1\r\n b\r\n\r\n", errc::http_bad_request);
    EXPECT_STREQ(p.err.detail, "obs-fold in trailer");
    EXPECT_EQ(p.at, stage::trailer);
    p = chunked_fail("0\r\nA : 1\r\n\r\n", errc::http_bad_request);
    EXPECT_STREQ(p.err.detail, "whitespace before colon");
    chunked_fail("0\r\nA: 1\n\r\n", errc::http_bad_request);
    chunked_fail(std::string_view("0\r\nA: \0\r\n\r\n", 11), errc::http_bad_request);
    chunked_fail("0\r\nA\r\n\r\n", errc::http_bad_request);
    chunked_fail("0\r\n:v\r\n\r\n", errc::http_bad_request);
    limits l;
    l.max_trailer_bytes = 12;  // "A: 12345\r\n" (10) + "\r\n" (2)
    chunked_decoder t(l);
    payload.clear();
    EXPECT_TRUE(decode_all(t, "0\r\nA: 12345\r\n\r\n", 100, payload).done());
    p = chunked_fail("0\r\nA: 123456\r\n\r\n", errc::http_header_too_large, l);
    EXPECT_EQ(status_for(p.err.code), 431);
}

TEST(Http1Chunked, DecodeAndPassThroughAgree) {
    const std::string inputs[] = {
        "5\r\nhello\r\n0\r\n\r\nrest", "5\r\nhelloXX", "3;a=b\r\nabc\r\n0\r\nT: 1\r\n\r\n", "1\r\na\r\n2\r\nbc\r\n",
        "z", "0\r\nA : b\r\n\r\n", "ffffffffffffffffffff\r\n",
    };
    for (const std::string& in : inputs) {
        for (std::size_t step : {std::size_t(1), std::size_t(3), in.size()}) {
            chunked_decoder a, b;
            std::string payload, fwd;
            progress pa = decode_all(a, in, step, payload);
            progress pb = pass_all(b, in, step, fwd);
            EXPECT_EQ(pa.kind, pb.kind) << in;
            EXPECT_EQ(pa.err.code, pb.err.code) << in;
            if (!pa.failed()) {
                EXPECT_EQ(pa.consumed, pb.consumed) << in;
            }
            EXPECT_EQ(a.payload_bytes(), b.payload_bytes());
        }
    }
}

// ---- Content-Length and body_reader -----------------------------------------------------------------

TEST(Http1Body, LengthBody) {
    length_body lb(5);
    progress p = lb.decode(B("he"));
    EXPECT_EQ(p.kind, outcome::payload);
    EXPECT_EQ(as_string(p.data), "he");
    EXPECT_EQ(lb.remaining(), 3u);
    p = lb.decode(B("lloGET"));
    EXPECT_EQ(p.kind, outcome::done);  // the last piece comes with done
    EXPECT_EQ(as_string(p.data), "llo");
    EXPECT_EQ(p.consumed, 3u);
    EXPECT_TRUE(lb.decode(B("x")).done());
    length_body empty(0);
    EXPECT_TRUE(empty.decode(B("x")).done());
    EXPECT_EQ(empty.decode(B("x")).consumed, 0u);
    length_body pt(4);
    progress q = pt.pass_through(B("ab"));
    EXPECT_EQ(q.kind, outcome::need_more);
    EXPECT_EQ(q.consumed, 2u);
    EXPECT_TRUE(q.data.empty());
    q = pt.pass_through(B("cdef"));
    EXPECT_TRUE(q.done());
    EXPECT_EQ(q.consumed, 2u);
}

TEST(Http1Body, ReaderKinds) {
    body_reader r;
    r.start({body_kind::none, 0});
    EXPECT_TRUE(r.done());
    EXPECT_TRUE(r.decode(B("GET")).done());
    EXPECT_EQ(r.decode(B("GET")).consumed, 0u);

    r.start({body_kind::content_length, 3});
    std::string payload;
    progress p = decode_all(r, "abcdef", 2, payload);
    EXPECT_TRUE(p.done());
    EXPECT_EQ(p.consumed, 3u);
    EXPECT_EQ(payload, "abc");

    r.start({body_kind::chunked, 0});
    payload.clear();
    p = decode_all(r, "2\r\nab\r\n0\r\n\r\nX", 4, payload);
    EXPECT_TRUE(p.done());
    EXPECT_EQ(payload, "ab");

    // until_close: everything is body until the peer closes.
    r.start({body_kind::until_close, 0});
    payload.clear();
    p = decode_all(r, "data: 1\n\ndata: 2\n\n", 5, payload);
    EXPECT_TRUE(p.need_more());
    EXPECT_EQ(payload, "data: 1\n\ndata: 2\n\n");
    EXPECT_FALSE(r.done());
    EXPECT_TRUE(r.finish().done());
    EXPECT_TRUE(r.done());

    // A length or chunked body cut short by a close is an error.
    r.start({body_kind::content_length, 10});
    (void)r.decode(B("abc"));
    progress f = r.finish();
    EXPECT_TRUE(f.failed());
    EXPECT_EQ(f.err.code, errc::closed);
    r.start({body_kind::chunked, 0});
    (void)r.pass_through(B("5\r\nab"));
    EXPECT_EQ(r.finish().err.code, errc::closed);
}

TEST(Http1Body, UntilCloseBodyLimit) {
    limits l;
    l.max_body = 8;
    body_reader r(l);
    r.start({body_kind::until_close, 0});
    EXPECT_EQ(r.pass_through(B("12345")).kind, outcome::need_more);
    EXPECT_EQ(r.pass_through(B("678")).kind, outcome::need_more);
    progress p = r.pass_through(B("9"));
    EXPECT_TRUE(p.failed());
    EXPECT_EQ(p.err.code, errc::http_body_too_large);
    EXPECT_TRUE(r.finish().failed());
}
