// The encoder (frame layout, masking, scatter-gather, fragmentation, control frames) and the
// codec's close handshake and automatic replies.
#include <gtest/gtest.h>

#include <numeric>
#include <random>
#include <set>

#include "util.hh"

using namespace ws_test;

namespace {

std::string str(const buffer_chain& c) { return c.to_string(); }

slice slice_of(std::string_view s) { return slice::copy_of(as_bytes(s)); }

// Parses frames with the independent reader below and returns (header byte 0, payload) pairs,
// unmasking with the key found on the wire.
struct wire_frame {
    unsigned b0 = 0;
    bool masked = false;
    std::size_t header_len = 0;
    std::uint32_t key = 0;
    std::string payload;
};
std::vector<wire_frame> split_frames(std::string_view w) {
    std::vector<wire_frame> out;
    std::size_t i = 0;
    while (i < w.size()) {
        wire_frame f;
        f.b0 = static_cast<unsigned char>(w[i]);
        unsigned b1 = static_cast<unsigned char>(w[i + 1]);
        f.masked = b1 & 0x80;
        std::uint64_t n = b1 & 0x7F;
        std::size_t h = 2;
        if (n == 126) {
            n = (std::uint64_t(static_cast<unsigned char>(w[i + 2])) << 8) | static_cast<unsigned char>(w[i + 3]);
            h = 4;
        } else if (n == 127) {
            n = 0;
            for (int k = 0; k < 8; ++k) n = (n << 8) | static_cast<unsigned char>(w[i + 2 + k]);
            h = 10;
        }
        unsigned char key[4] = {0, 0, 0, 0};
        if (f.masked) {
            std::memcpy(key, w.data() + i + h, 4);
            std::memcpy(&f.key, key, 4);
            h += 4;
        }
        f.header_len = h;
        f.payload.assign(w.substr(i + h, n));
        for (std::size_t k = 0; k < f.payload.size(); ++k) f.payload[k] ^= static_cast<char>(key[k % 4]);
        out.push_back(f);
        i += h + n;
    }
    return out;
}

}  // namespace

TEST(WsEncoder, ServerFramesMatchTheRfcLayout) {
    encoder e(role::server);
    buffer_chain out;
    ASSERT_TRUE(e.send_copy(out, opcode::text, as_bytes(std::string_view("Hello"))));
    // RFC 6455 §5.7: a single-frame unmasked text message "Hello".
    EXPECT_EQ(str(out), std::string("\x81\x05Hello", 7));
    out.clear();
    ASSERT_TRUE(e.ping(out, as_bytes(std::string_view("Hello"))));
    EXPECT_EQ(str(out), std::string("\x89\x05Hello", 7));
    out.clear();
    ASSERT_TRUE(e.pong(out, as_bytes(std::string_view("Hello"))));
    EXPECT_EQ(str(out), std::string("\x8a\x05Hello", 7));
}

TEST(WsEncoder, LengthFormsAreMinimal) {
    encoder e(role::server);
    for (std::size_t n : {0, 125, 126, 65535, 65536, 100000}) {
        buffer_chain out;
        std::string p(n, 'q');
        ASSERT_TRUE(e.send(out, opcode::binary, slice_of(p)));
        auto frames = split_frames(str(out));
        ASSERT_EQ(frames.size(), 1u);
        EXPECT_EQ(frames[0].b0, 0x82u);
        EXPECT_EQ(frames[0].header_len, n < 126 ? 2u : n <= 65535 ? 4u : 10u) << n;
        EXPECT_EQ(frames[0].payload, p);
        EXPECT_EQ(frames[0].header_len, header_size(n, false));
    }
}

TEST(WsEncoder, ServerLinksLargePayloadsWithoutCopy) {
    encoder e(role::server);
    buffer_chain out;
    slice s = slice_of(std::string(4096, 'z'));
    const std::byte* p = s.data();
    ASSERT_TRUE(e.send(out, opcode::binary, s));
    ASSERT_EQ(out.fragments(), 2u);  // header, then the caller's slice
    iovec iov[2];
    ASSERT_EQ(out.to_iovec(iov, 2), 2u);
    EXPECT_EQ(iov[0].iov_len, 4u);
    EXPECT_EQ(iov[1].iov_base, p);
    EXPECT_EQ(iov[1].iov_len, 4096u);
}

TEST(WsEncoder, ClientMasksEveryFrameWithAFreshKey) {
    counter_mask km;
    encoder e(role::client, std::nullopt, {}, km.source());
    buffer_chain out;
    std::mt19937 rng(5);
    std::vector<std::string> payloads;
    for (std::size_t n : {0, 1, 5, 125, 126, 600, 70000}) {
        payloads.push_back(random_bytes(rng, n));
        // Alternate the copying and the in-place paths.
        if (payloads.size() % 2) {
            ASSERT_TRUE(e.send_copy(out, opcode::binary, as_bytes(payloads.back())));
        } else {
            ASSERT_TRUE(e.send(out, opcode::binary, slice_of(payloads.back())));
        }
    }
    std::string wire = str(out);
    auto frames = split_frames(wire);
    ASSERT_EQ(frames.size(), payloads.size());
    std::set<std::uint32_t> keys;
    for (std::size_t i = 0; i < frames.size(); ++i) {
        EXPECT_TRUE(frames[i].masked);
        EXPECT_EQ(frames[i].payload, payloads[i]);
        keys.insert(frames[i].key);
    }
    EXPECT_EQ(keys.size(), frames.size());  // one key per frame, from the source
    // And a server decoder reads them back.
    decoder d(role::server);
    auto got = decode_chunks(d, wire, [](std::size_t i) { return 1 + (i * 37) % 1000; });
    ASSERT_EQ(got.error, errc::ok);
    ASSERT_EQ(got.messages.size(), payloads.size());
    for (std::size_t i = 0; i < payloads.size(); ++i) EXPECT_EQ(got.messages[i].data, payloads[i]);
}

TEST(WsEncoder, ClientInPlaceMaskingVersusCopy) {
    counter_mask km;
    encoder e(role::client, std::nullopt, {}, km.source());
    const std::string original(2000, 'm');
    // send_copy leaves the caller's bytes alone.
    buffer_chain out;
    ASSERT_TRUE(e.send_copy(out, opcode::binary, as_bytes(original)));
    // send(slice) masks the slice's memory in place and links it: no payload copy.
    slice s = slice_of(original);
    ASSERT_TRUE(e.send(out, opcode::binary, s));
    EXPECT_NE(as_string(s.view()), original);  // masked in place
    auto frames = split_frames(str(out));
    ASSERT_EQ(frames.size(), 2u);
    EXPECT_EQ(frames[0].payload, original);
    EXPECT_EQ(frames[1].payload, original);
    iovec iov[8];
    std::size_t n = out.to_iovec(iov, 8);
    bool linked = false;
    for (std::size_t i = 0; i < n; ++i) linked |= iov[i].iov_base == s.data();
    EXPECT_TRUE(linked);
}

TEST(WsEncoder, FragmentationHelper) {
    encoder e(role::server);
    buffer_chain out;
    std::string p(1000, 'f');
    for (std::size_t i = 0; i < p.size(); ++i) p[i] = static_cast<char>('a' + i % 26);
    send_options o;
    o.fragment_size = 300;
    ASSERT_TRUE(e.send(out, opcode::text, slice_of(p), o));
    auto frames = split_frames(str(out));
    ASSERT_EQ(frames.size(), 4u);
    EXPECT_EQ(frames[0].b0, 0x01u);  // text, not final
    EXPECT_EQ(frames[1].b0, 0x00u);  // continuation
    EXPECT_EQ(frames[2].b0, 0x00u);
    EXPECT_EQ(frames[3].b0, 0x80u);  // final continuation
    EXPECT_EQ(frames[3].payload.size(), 100u);
    decoder d(role::client);
    auto got = decode_all(d, str(out));
    ASSERT_EQ(got.messages.size(), 1u);
    EXPECT_EQ(got.messages[0], (message{opcode::text, p}));
}

TEST(WsEncoder, StreamingPartsWithInterleavedControl) {
    counter_mask km;
    encoder e(role::client, std::nullopt, {}, km.source());
    buffer_chain out;
    ASSERT_TRUE(e.send_part_copy(out, opcode::binary, as_bytes(std::string_view("ab")), fin::no));
    EXPECT_TRUE(e.in_message());
    // A whole message cannot start while one is open.
    EXPECT_EQ(e.send_copy(out, opcode::text, {}).code(), errc::invalid_argument);
    ASSERT_TRUE(e.ping(out, as_bytes(std::string_view("hb"))));
    ASSERT_TRUE(e.send_part(out, opcode::binary, slice_of(std::string(700, 'c')), fin::no));
    ASSERT_TRUE(e.send_part_copy(out, opcode::binary, {}, fin::yes));
    EXPECT_FALSE(e.in_message());
    decoder d(role::server);
    auto got = decode_bytewise(d, str(out));
    ASSERT_EQ(got.error, errc::ok);
    ASSERT_EQ(got.messages.size(), 1u);
    EXPECT_EQ(got.messages[0].data, "ab" + std::string(700, 'c'));
    EXPECT_EQ(got.pings, std::vector<std::string>{"hb"});
}

TEST(WsEncoder, ArgumentChecks) {
    encoder e(role::server);
    buffer_chain out;
    EXPECT_EQ(e.ping(out, as_bytes(std::string(126, 'x'))).code(), errc::invalid_argument);
    EXPECT_EQ(e.pong(out, as_bytes(std::string(126, 'x'))).code(), errc::invalid_argument);
    EXPECT_EQ(e.send_copy(out, opcode::ping, {}).code(), errc::invalid_argument);
    EXPECT_EQ(e.close(out, 1005, "why").code(), errc::invalid_argument);
    EXPECT_EQ(e.close(out, 1006).code(), errc::invalid_argument);
    EXPECT_EQ(e.close(out, 1015).code(), errc::invalid_argument);
    EXPECT_EQ(e.close(out, 999).code(), errc::invalid_argument);
    EXPECT_EQ(e.close(out, 1000, std::string(124, 'r')).code(), errc::invalid_argument);
    EXPECT_EQ(e.close(out, 1000, "\xff").code(), errc::invalid_argument);
    EXPECT_TRUE(out.empty());  // nothing was written by the failed calls
    ASSERT_TRUE(e.close(out, 1001, std::string(123, 'r')));
    auto frames = split_frames(str(out));
    ASSERT_EQ(frames.size(), 1u);
    EXPECT_EQ(frames[0].b0, 0x88u);
    EXPECT_EQ(frames[0].payload, close_payload(1001, std::string(123, 'r')));
    // After close: no data, no ping, no second close; a pong is still fine.
    EXPECT_EQ(e.send_copy(out, opcode::text, {}).code(), errc::closed);
    EXPECT_EQ(e.ping(out, {}).code(), errc::closed);
    EXPECT_EQ(e.close(out, 1000).code(), errc::closed);
    EXPECT_TRUE(e.pong(out, {}));
}

TEST(WsEncoder, EmptyCloseFrame) {
    encoder e(role::server);
    buffer_chain out;
    ASSERT_TRUE(e.close(out, close_code::no_status));
    EXPECT_EQ(str(out), std::string("\x88\x00", 2));
}

// ---- codec ---------------------------------------------------------------------------------------

namespace {

struct pair_fixture {
    counter_mask km;
    codec srv{role::server};
    codec cli;
    buffer_chain to_srv, to_cli;
    pair_fixture() : cli(role::client, [&] {
        codec_options o;
        o.mask = km.source();
        return o;
    }()) {}

    // Moves everything written to one side into the other's decoder.
    std::vector<event_type> pump(codec& c, buffer_chain& wire, buffer_chain& replies, std::vector<std::string>* data = nullptr,
                                 errc* err = nullptr) {
        std::string bytes = wire.to_string();
        wire.clear();
        std::vector<std::byte> buf(bytes.size());
        std::memcpy(buf.data(), bytes.data(), bytes.size());
        mut_bytes in(buf);
        std::vector<event_type> types;
        for (;;) {
            auto ev = c.next(in, replies);
            if (!ev) {
                if (err) *err = ev.code();
                break;
            }
            if (ev->type == event_type::need_more) break;
            types.push_back(ev->type);
            if (data) data->emplace_back(ev->text());
        }
        return types;
    }
};

}  // namespace

TEST(WsCodec, AutoPong) {
    pair_fixture f;
    ASSERT_TRUE(f.cli.ping(f.to_srv, as_bytes(std::string_view("are you there"))));
    auto t = f.pump(f.srv, f.to_srv, f.to_cli);
    EXPECT_EQ(t, std::vector<event_type>{event_type::ping});
    std::vector<std::string> data;
    t = f.pump(f.cli, f.to_cli, f.to_srv, &data);
    EXPECT_EQ(t, std::vector<event_type>{event_type::pong});
    EXPECT_EQ(data, std::vector<std::string>{"are you there"});
}

TEST(WsCodec, PeerInitiatedCloseIsEchoed) {
    pair_fixture f;
    ASSERT_TRUE(f.cli.close(f.to_srv, 4002, "done"));
    EXPECT_EQ(f.cli.state(), close_state::closing);
    f.pump(f.srv, f.to_srv, f.to_cli);
    EXPECT_EQ(f.srv.state(), close_state::closed);
    EXPECT_EQ(f.srv.peer_close_code(), 4002);
    EXPECT_EQ(f.srv.sent_close_code(), 4002);
    f.pump(f.cli, f.to_cli, f.to_srv);
    EXPECT_EQ(f.cli.state(), close_state::closed);
    EXPECT_EQ(f.cli.peer_close_code(), 4002);
    EXPECT_TRUE(f.to_srv.empty());  // the client does not answer the answer
}

TEST(WsCodec, DataStillArrivesWhileClosing) {
    pair_fixture f;
    ASSERT_TRUE(f.srv.close(f.to_cli, close_code::going_away));
    EXPECT_EQ(f.srv.send_copy(f.to_cli, opcode::text, {}).code(), errc::closed);
    ASSERT_TRUE(f.cli.send_copy(f.to_srv, opcode::text, as_bytes(std::string_view("last words"))));
    ASSERT_TRUE(f.cli.close(f.to_srv, close_code::normal));
    std::vector<std::string> data;
    auto t = f.pump(f.srv, f.to_srv, f.to_cli, &data);
    EXPECT_EQ(t, (std::vector<event_type>{event_type::data, event_type::close}));
    EXPECT_EQ(data[0], "last words");
    EXPECT_EQ(f.srv.state(), close_state::closed);
    EXPECT_EQ(f.srv.sent_close_code(), close_code::going_away);  // no second close
}

TEST(WsCodec, ProtocolErrorsSendTheMappedCloseCode) {
    struct tcase {
        std::string wire;
        std::uint16_t code;
    };
    limits lim;
    lim.max_frame_payload = 64;
    for (const auto& tc : {tcase{sframe(2, "unmasked"), 1002}, tcase{cframe(1, "\xc3\x28"), 1007},
                           tcase{cframe(2, std::string(65, 'x')), 1009}, tcase{cframe(5, ""), 1002}}) {
        codec_options o;
        o.lim = lim;
        codec srv(role::server, o);
        std::vector<std::byte> buf(tc.wire.size());
        std::memcpy(buf.data(), tc.wire.data(), tc.wire.size());
        mut_bytes in(buf);
        buffer_chain out;
        auto ev = srv.next(in, out);
        ASSERT_FALSE(ev);
        EXPECT_EQ(close_code_for(ev.code()), tc.code);
        EXPECT_TRUE(srv.failed());
        EXPECT_EQ(srv.state(), close_state::closed);
        EXPECT_EQ(srv.sent_close_code(), tc.code);
        EXPECT_EQ(out.to_string(), sframe(8, close_payload(tc.code)));
    }
}

TEST(WsCodec, EmptyCloseIsAnsweredEmpty) {
    codec srv(role::server);
    std::string w = cframe(8, "");
    std::vector<std::byte> buf(w.size());
    std::memcpy(buf.data(), w.data(), w.size());
    mut_bytes in(buf);
    buffer_chain out;
    auto ev = srv.next(in, out);
    ASSERT_TRUE(ev);
    EXPECT_EQ(ev->type, event_type::close);
    EXPECT_EQ(ev->code, close_code::no_status);
    EXPECT_EQ(out.to_string(), std::string("\x88\x00", 2));
    EXPECT_EQ(srv.state(), close_state::closed);
}

TEST(WsCodec, ClientAndServerTalkInMemory) {
    pair_fixture f;
    std::mt19937 rng(99);
    for (int i = 0; i < 50; ++i) {
        std::string m = random_text(rng, rng() % 5000);
        send_options o;
        o.fragment_size = rng() % 2 ? 0 : 1 + rng() % 700;
        ASSERT_TRUE(f.cli.send_copy(f.to_srv, opcode::text, as_bytes(m), o));
        std::vector<std::string> got;
        f.pump(f.srv, f.to_srv, f.to_cli, &got);
        ASSERT_EQ(std::accumulate(got.begin(), got.end(), std::string()), m);
        ASSERT_TRUE(f.srv.send(f.to_cli, opcode::binary, slice_of(m), o));
        got.clear();
        f.pump(f.cli, f.to_cli, f.to_srv, &got);
        ASSERT_EQ(std::accumulate(got.begin(), got.end(), std::string()), m);
    }
}
