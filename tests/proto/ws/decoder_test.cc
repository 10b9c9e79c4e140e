// The frame decoder: every RFC 6455 §5 rule, with input split at every byte.
#include <gtest/gtest.h>

#include <random>

#include "util.hh"

using namespace ws_test;

namespace {

decoder server() { return decoder(role::server); }
decoder client() { return decoder(role::client); }

errc first_error(role r, std::string_view wire, const limits& lim = {}) {
    decoder d(r, lim);
    return decode_all(d, wire).error;
}

}  // namespace

TEST(WsDecoder, EveryLengthFormBothRoles) {
    std::mt19937 rng(7);
    for (std::size_t n : {0, 1, 125, 126, 127, 1000, 65535, 65536, 70000}) {
        std::string payload = random_bytes(rng, n);
        for (role r : {role::server, role::client}) {
            std::string wire = r == role::server ? cframe(2, payload) : sframe(2, payload);
            decoder d(r);
            auto out = decode_all(d, wire);
            ASSERT_EQ(out.error, errc::ok) << n << " " << out.error_detail;
            ASSERT_EQ(out.messages.size(), 1u);
            EXPECT_EQ(out.messages[0].op, opcode::binary);
            EXPECT_EQ(out.messages[0].data, payload) << n;
            EXPECT_TRUE(out.order_ok);
        }
    }
}

TEST(WsDecoder, HeaderAndPayloadSplitAtEveryByte) {
    // 64-bit length + mask: the longest header (14 bytes); a split anywhere in it or in the
    // payload must give the same message.
    std::mt19937 rng(8);
    std::string payload = random_bytes(rng, 65536 + 17);
    std::string wire = cframe(2, payload) + cframe(1, "tail");
    for (std::size_t cut = 0; cut < 40; ++cut) {
        decoder d = server();
        auto out = decode_chunks(d, wire, [&](std::size_t i) { return i == 0 ? cut : wire.size(); });
        ASSERT_EQ(out.error, errc::ok) << cut;
        ASSERT_EQ(out.messages.size(), 2u) << cut;
        ASSERT_EQ(out.messages[0].data, payload) << cut;
        ASSERT_EQ(out.messages[1].data, "tail");
    }
}

TEST(WsDecoder, UnmaskAtEverySplitOffset) {
    // Two and three pieces with cuts at every offset: the key phase must follow the payload.
    std::mt19937 rng(9);
    std::string payload = random_bytes(rng, 200);
    std::string wire = cframe(2, payload);
    for (std::size_t a = 1; a < wire.size(); ++a) {
        decoder d = server();
        auto out = decode_chunks(d, wire, [&](std::size_t i) { return i == 0 ? a : wire.size(); });
        ASSERT_EQ(out.messages.size(), 1u) << a;
        ASSERT_EQ(out.messages[0].data, payload) << a;
    }
    for (std::size_t a = 1; a < 40; ++a) {
        for (std::size_t b = 1; b < 40; ++b) {
            decoder d = server();
            auto out = decode_chunks(d, wire, [&](std::size_t i) {
                return i == 0 ? a : i == 1 ? b : wire.size();
            });
            ASSERT_EQ(out.messages.size(), 1u);
            ASSERT_EQ(out.messages[0].data, payload) << a << "," << b;
        }
    }
}

TEST(WsDecoder, ByteByByteManyFrames) {
    std::mt19937 rng(10);
    std::string wire;
    std::vector<std::string> payloads;
    for (int i = 0; i < 30; ++i) {
        payloads.push_back(random_bytes(rng, rng() % 300));
        wire += cframe(2, payloads.back());
    }
    decoder d = server();
    auto out = decode_bytewise(d, wire);
    ASSERT_EQ(out.error, errc::ok);
    ASSERT_EQ(out.messages.size(), payloads.size());
    for (std::size_t i = 0; i < payloads.size(); ++i) EXPECT_EQ(out.messages[i].data, payloads[i]);
    EXPECT_TRUE(out.order_ok);
}

TEST(WsDecoder, PayloadIsUnmaskedInPlaceZeroCopy) {
    std::string wire = cframe(2, "hello, in place");
    std::vector<std::byte> buf(wire.size());
    std::memcpy(buf.data(), wire.data(), wire.size());
    decoder d = server();
    mut_bytes in(buf);
    auto ev = d.next(in);
    ASSERT_TRUE(ev);
    ASSERT_EQ(ev->type, event_type::data);
    EXPECT_EQ(ev->payload.data(), buf.data() + 6);  // 2-byte header + 4-byte key
    EXPECT_EQ(ev->text(), "hello, in place");
    EXPECT_TRUE(ev->first && ev->last);
    EXPECT_TRUE(in.empty());
}

TEST(WsDecoder, NonMinimalAndHugeLengthsAreProtocolErrors) {
    EXPECT_EQ(first_error(role::server, raw_frame(2, std::string(125, 'a'), true, k1, 0, len_form::b16)),
              errc::ws_protocol);
    EXPECT_EQ(first_error(role::server, raw_frame(2, "", true, k1, 0, len_form::b16)), errc::ws_protocol);
    EXPECT_EQ(first_error(role::server, raw_frame(2, std::string(65535, 'a'), true, k1, 0, len_form::b64)),
              errc::ws_protocol);
    EXPECT_EQ(first_error(role::client, raw_frame(2, "x", true, std::nullopt, 0, len_form::b64)),
              errc::ws_protocol);
    // The minimal forms at the same boundaries are fine.
    EXPECT_EQ(first_error(role::server, raw_frame(2, std::string(126, 'a'), true, k1)), errc::ok);
    EXPECT_EQ(first_error(role::server, raw_frame(2, std::string(65536, 'a'), true, k1)), errc::ok);
    // 64-bit length with the most significant bit set (RFC 6455 §5.2).
    std::string h = "\x82\xff";
    h += std::string("\x80\x00\x00\x00\x00\x00\x00\x01", 8);
    h += "abcd";
    EXPECT_EQ(first_error(role::server, h), errc::ws_protocol);
}

TEST(WsDecoder, MaskingRulesPerRole) {
    decoder s = server();
    auto out = decode_all(s, sframe(1, "unmasked"));
    EXPECT_EQ(out.error, errc::ws_protocol);
    EXPECT_EQ(close_code_for(out.error), 1002);
    EXPECT_STREQ(s.failure().detail, "unmasked client frame");
    decoder c = client();
    EXPECT_EQ(decode_all(c, cframe(1, "masked")).error, errc::ws_protocol);
    EXPECT_STREQ(c.failure().detail, "masked server frame");
    // Control frames follow the same rule.
    EXPECT_EQ(first_error(role::server, sframe(9, "")), errc::ws_protocol);
}

TEST(WsDecoder, ReservedOpcodesAreProtocolErrors) {
    for (unsigned op : {3u, 4u, 5u, 6u, 7u, 0xBu, 0xCu, 0xDu, 0xEu, 0xFu}) {
        EXPECT_EQ(first_error(role::server, cframe(op, "x")), errc::ws_protocol) << op;
        EXPECT_EQ(first_error(role::client, sframe(op, "")), errc::ws_protocol) << op;
    }
    for (unsigned op : {1u, 2u, 8u, 9u, 0xAu}) {
        EXPECT_EQ(first_error(role::server, cframe(op, "")), errc::ok) << op;
    }
}

TEST(WsDecoder, RsvBits) {
    // Without permessage-deflate every RSV bit is an error.
    EXPECT_EQ(first_error(role::server, cframe(2, "x", true, 4)), errc::ws_protocol);  // RSV1
    EXPECT_EQ(first_error(role::server, cframe(2, "x", true, 2)), errc::ws_protocol);  // RSV2
    EXPECT_EQ(first_error(role::server, cframe(2, "x", true, 1)), errc::ws_protocol);  // RSV3
    // With it, RSV1 only on the first frame of a data message.
    deflate_params p;
    auto with_pmd = [&](std::string_view wire) {
        decoder d(role::server, {}, p);
        return decode_all(d, wire).error;
    };
    EXPECT_EQ(with_pmd(cframe(9, "", true, 4)), errc::ws_protocol);           // RSV1 on a ping
    EXPECT_EQ(with_pmd(cframe(2, "x", true, 2)), errc::ws_protocol);          // RSV2 still bad
    EXPECT_EQ(with_pmd(cframe(2, "", false) + cframe(0, "", true, 4)), errc::ws_protocol);
    EXPECT_EQ(with_pmd(cframe(2, "", false) + cframe(0, "", true)), errc::ok);
}

TEST(WsDecoder, ControlFrameRules) {
    EXPECT_EQ(first_error(role::server, cframe(9, std::string(125, 'p'))), errc::ok);
    EXPECT_EQ(first_error(role::server, cframe(9, std::string(126, 'p'))), errc::ws_protocol);
    EXPECT_EQ(first_error(role::server, cframe(0xA, std::string(126, 'p'))), errc::ws_protocol);
    EXPECT_EQ(first_error(role::server, cframe(8, close_payload(1000, std::string(124, 'r')))),
              errc::ws_protocol);
    EXPECT_EQ(first_error(role::server, cframe(9, "frag", false)), errc::ws_protocol);
    EXPECT_EQ(first_error(role::server, cframe(8, "", false)), errc::ws_protocol);
    // A configured control limit below 125 gives "too big".
    limits lim;
    lim.max_control_payload = 10;
    EXPECT_EQ(first_error(role::server, cframe(9, std::string(11, 'p')), lim), errc::ws_too_big);
    EXPECT_EQ(first_error(role::server, cframe(9, std::string(10, 'p')), lim), errc::ok);
}

TEST(WsDecoder, PingPongPayloadsAtEverySplit) {
    std::string payload(125, '\0');
    for (std::size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<char>(i * 7);
    std::string wire = cframe(9, payload) + cframe(0xA, "pong!") + cframe(9, "");
    for (std::size_t cut = 1; cut < wire.size(); ++cut) {
        decoder d = server();
        auto out = decode_chunks(d, wire, [&](std::size_t i) { return i == 0 ? cut : wire.size(); });
        ASSERT_EQ(out.error, errc::ok);
        ASSERT_EQ(out.pings.size(), 2u) << cut;
        EXPECT_EQ(out.pings[0], payload);
        EXPECT_EQ(out.pings[1], "");
        ASSERT_EQ(out.pongs.size(), 1u);
        EXPECT_EQ(out.pongs[0], "pong!");
    }
}

TEST(WsDecoder, FragmentationWithInterleavedControlFrames) {
    std::string wire = cframe(1, "Hel", false) + cframe(9, "p1") + cframe(0, "lo, ", false) +
                       cframe(0xA, "p2") + cframe(0, "", false) + cframe(0, "world", true) +
                       cframe(2, "bin");
    for (auto feed : {0, 1}) {
        decoder d = server();
        auto out = feed ? decode_bytewise(d, wire) : decode_all(d, wire);
        ASSERT_EQ(out.error, errc::ok);
        ASSERT_EQ(out.messages.size(), 2u);
        EXPECT_EQ(out.messages[0], (message{opcode::text, "Hello, world"}));
        EXPECT_EQ(out.messages[1], (message{opcode::binary, "bin"}));
        EXPECT_EQ(out.pings, std::vector<std::string>{"p1"});
        EXPECT_EQ(out.pongs, std::vector<std::string>{"p2"});
        EXPECT_TRUE(out.order_ok);
    }
}

TEST(WsDecoder, EventsCarryMessageStartAndEnd) {
    std::string wire = cframe(1, "ab", false) + cframe(9, "") + cframe(0, "cd", true);
    std::vector<std::byte> buf(wire.size());
    std::memcpy(buf.data(), wire.data(), wire.size());
    decoder d = server();
    mut_bytes in(buf);
    auto e1 = d.next(in);
    ASSERT_TRUE(e1);
    EXPECT_EQ(e1->type, event_type::data);
    EXPECT_EQ(e1->op, opcode::text);
    EXPECT_TRUE(e1->first);
    EXPECT_FALSE(e1->last);
    EXPECT_TRUE(d.in_message());
    auto e2 = d.next(in);
    EXPECT_EQ(e2->type, event_type::ping);
    auto e3 = d.next(in);
    EXPECT_EQ(e3->type, event_type::data);
    EXPECT_EQ(e3->op, opcode::text);  // continuation pieces report the message's opcode
    EXPECT_FALSE(e3->first);
    EXPECT_TRUE(e3->last);
    EXPECT_FALSE(d.in_message());
    EXPECT_EQ(d.next(in)->type, event_type::need_more);
}

TEST(WsDecoder, FragmentSequenceErrors) {
    EXPECT_EQ(first_error(role::server, cframe(0, "x")), errc::ws_protocol);  // continuation first
    EXPECT_EQ(first_error(role::server, cframe(1, "a", false) + cframe(1, "b")), errc::ws_protocol);
    EXPECT_EQ(first_error(role::server, cframe(2, "a", false) + cframe(2, "b")), errc::ws_protocol);
    EXPECT_EQ(first_error(role::server, cframe(1, "a") + cframe(0, "b")), errc::ws_protocol);
}

TEST(WsDecoder, EmptyMessagesAndFrames) {
    decoder d = server();
    auto out = decode_all(d, cframe(1, "") + cframe(2, "", false) + cframe(0, "", false) + cframe(0, ""));
    ASSERT_EQ(out.error, errc::ok);
    ASSERT_EQ(out.messages.size(), 2u);
    EXPECT_EQ(out.messages[0], (message{opcode::text, ""}));
    EXPECT_EQ(out.messages[1], (message{opcode::binary, ""}));
    EXPECT_TRUE(out.order_ok);
}

TEST(WsDecoder, CloseCodes) {
    for (std::uint16_t code : {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013,
                               1014, 3000, 3999, 4000, 4999}) {
        decoder d = server();
        auto out = decode_all(d, cframe(8, close_payload(code, "bye")));
        ASSERT_EQ(out.error, errc::ok) << code;
        EXPECT_TRUE(out.closed);
        EXPECT_EQ(out.close_code, code);
        EXPECT_EQ(out.close_reason, "bye");
    }
    for (std::uint16_t code : {0, 1, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000,
                               65535}) {
        EXPECT_EQ(first_error(role::server, cframe(8, close_payload(code))), errc::ws_protocol) << code;
    }
    decoder d = server();
    auto out = decode_all(d, cframe(8, ""));
    EXPECT_TRUE(out.closed);
    EXPECT_EQ(out.close_code, close_code::no_status);
    EXPECT_EQ(first_error(role::server, cframe(8, "\x03")), errc::ws_protocol);  // 1-byte payload
    EXPECT_EQ(first_error(role::server, cframe(8, close_payload(1000, "\xff"))), errc::ws_bad_utf8);
    EXPECT_EQ(first_error(role::server, cframe(8, close_payload(1000, "\xe2\x82"))), errc::ws_bad_utf8);
    EXPECT_EQ(first_error(role::server, cframe(8, close_payload(1000, "caf\xc3\xa9"))), errc::ok);
}

TEST(WsDecoder, InputAfterCloseIsDiscarded) {
    decoder d = server();
    auto out = decode_all(d, cframe(8, close_payload(1000)) + cframe(2, "late") + "\xff\xff garbage");
    EXPECT_EQ(out.error, errc::ok);
    EXPECT_TRUE(out.closed);
    EXPECT_TRUE(out.messages.empty());
    EXPECT_TRUE(d.close_received());
}

TEST(WsDecoder, CloseSplitAcrossFeeds) {
    std::string wire = cframe(8, close_payload(4001, "a reason of some length"));
    for (std::size_t cut = 1; cut < wire.size(); ++cut) {
        decoder d = server();
        auto out = decode_chunks(d, wire, [&](std::size_t i) { return i == 0 ? cut : wire.size(); });
        ASSERT_TRUE(out.closed) << cut;
        EXPECT_EQ(out.close_code, 4001);
        EXPECT_EQ(out.close_reason, "a reason of some length");
    }
}

TEST(WsDecoder, Utf8AcrossFramesAndFeeds) {
    // "€" (E2 82 AC) and "😀" (F0 9F 98 80) split across fragment boundaries.
    std::string wire = cframe(1, "a\xe2", false) + cframe(0, "\x82", false) + cframe(9, "") +
                       cframe(0, "\xac\xf0\x9f", false) + cframe(0, "\x98\x80z", true);
    for (std::size_t cut = 1; cut < wire.size(); ++cut) {
        decoder d = server();
        auto out = decode_chunks(d, wire, [&](std::size_t i) { return i == 0 ? cut : 3; });
        ASSERT_EQ(out.error, errc::ok) << cut;
        ASSERT_EQ(out.messages.size(), 1u);
        EXPECT_EQ(out.messages[0].data, "a\xe2\x82\xac\xf0\x9f\x98\x80z");
    }
}

TEST(WsDecoder, InvalidUtf8InTextIs1007) {
    for (std::string_view bad : {"\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xe0\x80\x80",
                                 "abc\x80", "\xff"}) {
        auto e = first_error(role::server, cframe(1, bad));
        EXPECT_EQ(e, errc::ws_bad_utf8) << bad;
        EXPECT_EQ(close_code_for(e), 1007);
    }
    // Truncated at the end of the message (but fine at the end of a fragment).
    EXPECT_EQ(first_error(role::server, cframe(1, "ok\xe2\x82")), errc::ws_bad_utf8);
    EXPECT_EQ(first_error(role::server, cframe(1, "ok\xe2\x82", false) + cframe(0, "\xac")), errc::ok);
    EXPECT_EQ(first_error(role::server, cframe(1, "ok\xe2\x82", false) + cframe(0, "")),
              errc::ws_bad_utf8);
    // Binary messages are not checked.
    EXPECT_EQ(first_error(role::server, cframe(2, "\xff\xfe\xc0")), errc::ok);
}

TEST(WsDecoder, InvalidUtf8FailsFastBeforeMessageEnd) {
    // RFC 6455 §8.1: fail as soon as the invalid byte is seen, not at the end of the message.
    std::string wire = cframe(1, "valid start \xff then more", false);
    decoder d = server();
    auto out = decode_all(d, wire);
    EXPECT_EQ(out.error, errc::ws_bad_utf8);
}

TEST(WsDecoder, FrameLimitCheckedOnTheHeaderBeforePayload) {
    limits lim;
    lim.max_frame_payload = 1000;
    std::string wire = cframe(2, std::string(1001, 'x'));
    decoder d(role::server, lim);
    // Feed the header only: the error must come before any payload byte is present.
    std::vector<std::byte> hdr(8);
    std::memcpy(hdr.data(), wire.data(), 8);
    mut_bytes in(hdr);
    auto ev = d.next(in);
    ASSERT_FALSE(ev);
    EXPECT_EQ(ev.code(), errc::ws_too_big);
    EXPECT_EQ(close_code_for(ev.code()), 1009);
    EXPECT_EQ(first_error(role::server, cframe(2, std::string(1000, 'x')), lim), errc::ok);
}

TEST(WsDecoder, DefaultFrameLimitIsOneMiB) {
    std::string big(1 << 20, 'x');
    EXPECT_EQ(first_error(role::server, cframe(2, big)), errc::ok);
    big += 'x';
    EXPECT_EQ(first_error(role::server, cframe(2, big)), errc::ws_too_big);
}

TEST(WsDecoder, MessageLimitAcrossFragments) {
    limits lim;
    lim.max_message = 100;
    std::string ok = cframe(2, std::string(60, 'a'), false) + cframe(0, std::string(40, 'b'));
    EXPECT_EQ(first_error(role::server, ok, lim), errc::ok);
    std::string bad = cframe(2, std::string(60, 'a'), false) + cframe(0, std::string(41, 'b'));
    EXPECT_EQ(first_error(role::server, bad, lim), errc::ws_too_big);
    // A new message starts the count again.
    EXPECT_EQ(first_error(role::server, ok + ok, lim), errc::ok);
}

TEST(WsDecoder, ErrorIsSticky) {
    decoder d = server();
    EXPECT_EQ(decode_all(d, cframe(3, "")).error, errc::ws_protocol);
    EXPECT_TRUE(d.failed());
    std::string more = cframe(2, "fine");
    std::vector<std::byte> buf(more.size());
    std::memcpy(buf.data(), more.data(), more.size());
    mut_bytes in(buf);
    auto ev = d.next(in);
    ASSERT_FALSE(ev);
    EXPECT_EQ(ev.code(), errc::ws_protocol);
}

TEST(WsDecoder, CallerMayStopAfterAnyEventAndResume) {
    // next() returns one event at a time; the rest of `in` stays untouched for the next call.
    std::string wire = cframe(2, "one") + cframe(2, "two") + cframe(2, "three");
    std::vector<std::byte> buf(wire.size());
    std::memcpy(buf.data(), wire.data(), wire.size());
    decoder d = server();
    mut_bytes in(buf);
    std::vector<std::string> got;
    for (;;) {
        auto ev = d.next(in);
        ASSERT_TRUE(ev);
        if (ev->type == event_type::need_more) break;
        got.emplace_back(ev->text());
    }
    EXPECT_EQ(got, (std::vector<std::string>{"one", "two", "three"}));
}

TEST(WsDecoder, RandomisedFramesAndChunking) {
    // Random mixes of messages (fragmented or not) and control frames, fed in random chunks.
    std::mt19937 rng(11);
    for (int iter = 0; iter < 200; ++iter) {
        std::string wire;
        std::vector<message> want;
        std::vector<std::string> pings;
        int msgs = 1 + static_cast<int>(rng() % 6);
        for (int m = 0; m < msgs; ++m) {
            bool text = rng() % 2;
            std::string payload = text ? random_text(rng, rng() % 3000) : random_bytes(rng, rng() % 3000);
            want.push_back({text ? opcode::text : opcode::binary, payload});
            std::size_t off = 0;
            bool first = true;
            do {
                std::size_t k = std::min<std::size_t>(payload.size() - off, rng() % 1000);
                bool last = off + k == payload.size();
                wire += cframe(first ? (text ? 1 : 2) : 0, std::string_view(payload).substr(off, k), last);
                if (rng() % 3 == 0 && !last) {
                    pings.push_back(random_bytes(rng, rng() % 126));
                    wire += cframe(9, pings.back());
                }
                first = false;
                off += k;
                if (last) break;
            } while (true);
        }
        decoder d = server();
        auto out = decode_chunks(d, wire, [&](std::size_t) { return 1 + rng() % 200; });
        ASSERT_EQ(out.error, errc::ok) << iter << " " << out.error_detail;
        ASSERT_EQ(out.messages, want) << iter;
        ASSERT_EQ(out.pings, pings);
        ASSERT_TRUE(out.order_ok);
    }
}

TEST(WsDecoder, BadHeadersFailAsSoonAsTheDecidingBytesArrive) {
    // The first two bytes decide masking, opcode, RSV and control-frame rules; the extended
    // length decides minimality; the limits need the length only. None waits for more.
    using verdict = std::pair<std::size_t, errc>;  // (bytes fed when it failed, error)
    auto after = [](std::string_view head, const limits& lim = {}) {
        decoder d(role::server, lim);
        std::vector<std::byte> buf(head.size());
        std::memcpy(buf.data(), head.data(), head.size());
        for (std::size_t i = 0; i < buf.size(); ++i) {  // one byte at a time, like a slow peer
            mut_bytes in(buf.data() + i, 1);
            auto ev = d.next(in);
            if (!ev) return verdict{i + 1, ev.code()};
        }
        return verdict{0, errc::ok};
    };
    EXPECT_EQ(after(std::string("\x82\xff\x00", 3)), (verdict{0, errc::ok}));
    EXPECT_EQ(after(std::string("\x82\x7f\x00\x00", 4)), (verdict{2, errc::ws_protocol}));  // unmasked
    EXPECT_EQ(after(std::string("\x89\xfe\x00\x7e", 4)), (verdict{2, errc::ws_protocol}));  // 126-byte ping
    EXPECT_EQ(after(std::string("\x80\x85", 2)), (verdict{2, errc::ws_protocol}));  // continuation first
    EXPECT_EQ(after(std::string("\x82\xff\x00\x00\x00\x00\x00\x00\x00\x05\x01\x02", 12)),
              (verdict{10, errc::ws_protocol}));  // non-minimal 64-bit length, before the key
    EXPECT_EQ(after(std::string("\x82\xfe\x00\x05\x01\x02", 6)), (verdict{4, errc::ws_protocol}));
    limits lim;
    lim.max_frame_payload = 10;
    EXPECT_EQ(after(std::string("\x82\xfe\x01\x00\x01\x02\x03\x04\xaa", 9), lim),
              (verdict{8, errc::ws_too_big}));  // whole header in, no payload byte needed
}
