// permessage-deflate (RFC 7692): negotiation in both roles, compressed round trips, context
// takeover, the decompression bomb limit, and hostile compressed input.
#include <gtest/gtest.h>
#include <zlib.h>

#include <random>

#include "util.hh"

using namespace ws_test;

namespace {

std::optional<deflate_params> negotiate(std::vector<std::string_view> offers, const deflate_config& cfg,
                                        std::string* response = nullptr) {
    std::string r;
    auto p = negotiate_deflate(offers, cfg, r);
    if (response) *response = r;
    return p;
}

deflate_config enabled() {
    deflate_config c;
    c.enabled = true;
    c.min_size = 0;
    return c;
}

// Raw DEFLATE of `s` made directly with zlib (independent of ws::encoder).
std::string raw_deflate(std::string_view s, int flush, int window = 15) {
    z_stream z{};
    EXPECT_EQ(deflateInit2(&z, 6, Z_DEFLATED, -window, 8, Z_DEFAULT_STRATEGY), Z_OK);
    std::string out(s.size() + 1024, '\0');
    z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(s.data()));
    z.avail_in = static_cast<uInt>(s.size());
    z.next_out = reinterpret_cast<Bytef*>(out.data());
    z.avail_out = static_cast<uInt>(out.size());
    int rc = deflate(&z, flush);
    EXPECT_TRUE(rc == Z_OK || rc == Z_STREAM_END);
    out.resize(out.size() - z.avail_out);
    deflateEnd(&z);
    return out;
}

std::string strip_tail(std::string s) {
    if (s.size() >= 4 && s.substr(s.size() - 4) == std::string("\x00\x00\xff\xff", 4)) s.resize(s.size() - 4);
    return s;
}

}  // namespace

// ---- negotiation -------------------------------------------------------------------------------

TEST(WsDeflateNegotiation, DisabledByDefault) {
    std::string r;
    EXPECT_FALSE(negotiate({"permessage-deflate"}, deflate_config{}, &r));
    EXPECT_EQ(r, "");
    EXPECT_EQ(deflate_offer(deflate_config{}), "");
}

TEST(WsDeflateNegotiation, ServerAcceptsPlainOffer) {
    std::string r;
    auto p = negotiate({"permessage-deflate"}, enabled(), &r);
    ASSERT_TRUE(p);
    EXPECT_EQ(*p, deflate_params{});
    EXPECT_EQ(r, "permessage-deflate");
}

TEST(WsDeflateNegotiation, ServerHonoursEveryParameter) {
    std::string r;
    auto p = negotiate({"permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
                        "server_max_window_bits=10; client_max_window_bits=12"},
                       enabled(), &r);
    ASSERT_TRUE(p);
    EXPECT_TRUE(p->server_no_context_takeover);
    EXPECT_TRUE(p->client_no_context_takeover);
    EXPECT_EQ(p->server_max_window_bits, 10);
    EXPECT_EQ(p->client_max_window_bits, 12);
    EXPECT_EQ(r, "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
                 "server_max_window_bits=10; client_max_window_bits=12");
}

TEST(WsDeflateNegotiation, ServerPolicyAndFallbackOffers) {
    deflate_config c = enabled();
    c.server_no_context_takeover = true;
    c.client_max_window_bits = 10;
    std::string r;
    // The first offer has no client_max_window_bits, so the client's window cannot be limited:
    // declined; the second (in a second header field) is accepted and limited.
    auto p = negotiate({"permessage-deflate", "permessage-deflate; client_max_window_bits"}, c, &r);
    ASSERT_TRUE(p);
    EXPECT_TRUE(p->server_no_context_takeover);
    EXPECT_EQ(p->client_max_window_bits, 10);
    EXPECT_EQ(r, "permessage-deflate; server_no_context_takeover; client_max_window_bits=10");
}

TEST(WsDeflateNegotiation, ServerDeclinesInvalidOffers) {
    for (std::string_view bad : {
             "permessage-deflate; server_max_window_bits",        // value required
             "permessage-deflate; server_max_window_bits=7",      // out of range
             "permessage-deflate; server_max_window_bits=16",
             "permessage-deflate; server_max_window_bits=010",    // leading zero
             "permessage-deflate; client_max_window_bits=abc",
             "permessage-deflate; server_no_context_takeover=1",  // no value allowed
             "permessage-deflate; foo",                          // unknown parameter
             "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
             "x-webkit-deflate-frame",                           // another extension
             "permessage-deflate; =",                            // syntax
         }) {
        EXPECT_FALSE(negotiate({bad}, enabled())) << bad;
    }
    // A valid offer after an invalid one is taken.
    auto p = negotiate({"permessage-deflate; foo, permessage-deflate; server_max_window_bits=\"9\""}, enabled());
    ASSERT_TRUE(p);
    EXPECT_EQ(p->server_max_window_bits, 9);
}

TEST(WsDeflateNegotiation, ClientOfferAndResponseChecks) {
    deflate_config c = enabled();
    c.server_no_context_takeover = true;
    c.client_max_window_bits = 12;
    EXPECT_EQ(deflate_offer(c), "permessage-deflate; client_max_window_bits=12; server_no_context_takeover");
    auto accept = [&](std::vector<std::string_view> v) { return accept_deflate_response(v, c); };
    auto ok = accept({"permessage-deflate; server_no_context_takeover; client_max_window_bits=11"});
    ASSERT_TRUE(ok);
    ASSERT_TRUE(*ok);
    EXPECT_TRUE((*ok)->server_no_context_takeover);
    EXPECT_EQ((*ok)->client_max_window_bits, 11);
    EXPECT_FALSE(accept({"permessage-deflate"}));  // server_no_context_takeover not granted
    EXPECT_FALSE(accept({"permessage-deflate; server_no_context_takeover; client_max_window_bits=13"}));
    EXPECT_FALSE(accept({"permessage-deflate; server_no_context_takeover; client_max_window_bits"}));
    EXPECT_FALSE(accept({"permessage-deflate; server_no_context_takeover, permessage-deflate; server_no_context_takeover"}));
    EXPECT_FALSE(accept({"foo"}));
    EXPECT_FALSE(accept({"permessage-deflate; server_no_context_takeover; bar"}));
    EXPECT_FALSE(accept({"permessage-deflate; server_no_context_takeover;"}));
    auto none = accept({});
    ASSERT_TRUE(none);
    EXPECT_FALSE(*none);
    // Not offered at all: any extension in the response fails.
    EXPECT_FALSE(accept_deflate_response(std::vector<std::string_view>{"permessage-deflate"}, deflate_config{}));
}

TEST(WsDeflateNegotiation, ClientAndServerAgree) {
    deflate_config cc = enabled();
    cc.client_no_context_takeover = true;
    cc.server_max_window_bits = 11;
    deflate_config sc = enabled();
    std::string resp;
    auto sp = negotiate({deflate_offer(cc)}, sc, &resp);
    ASSERT_TRUE(sp);
    auto cp = accept_deflate_response(std::vector<std::string_view>{resp}, cc);
    ASSERT_TRUE(cp);
    ASSERT_TRUE(*cp);
    EXPECT_EQ(**cp, *sp);
    EXPECT_EQ(sp->server_max_window_bits, 11);
    EXPECT_TRUE(sp->client_no_context_takeover);
}

// ---- compressed messages -----------------------------------------------------------------------

namespace {

// One direction: an encoder of role `from` and a decoder of the other role.
struct pmd_link {
    counter_mask km;
    encoder enc;
    decoder dec;
    pmd_link(role from, const deflate_params& p, const limits& lim = {}, deflate_config cfg = enabled())
        : enc(from, p, cfg, km.source()),
          dec(from == role::client ? role::server : role::client, lim, p) {}
};

}  // namespace

TEST(WsDeflate, RoundTripBothRolesWithAndWithoutTakeover) {
    std::mt19937 rng(21);
    for (role from : {role::client, role::server}) {
        for (bool no_takeover : {false, true}) {
            deflate_params p;
            p.client_no_context_takeover = no_takeover;
            p.server_no_context_takeover = no_takeover;
            pmd_link l(from, p);
            buffer_chain out;
            std::vector<message> want;
            for (int i = 0; i < 40; ++i) {
                bool text = i % 2;
                std::string m = text ? random_text(rng, rng() % 20000)
                                     : std::string(rng() % 20000, static_cast<char>('a' + i % 3));
                send_options o;
                o.fragment_size = i % 3 == 0 ? 1 + rng() % 500 : 0;
                ASSERT_TRUE(l.enc.send_copy(out, text ? opcode::text : opcode::binary, as_bytes(m), o));
                want.push_back({text ? opcode::text : opcode::binary, m});
            }
            std::string wire = out.to_string();
            auto got = decode_chunks(l.dec, wire, [&](std::size_t) { return 1 + rng() % 3000; });
            ASSERT_EQ(got.error, errc::ok) << got.error_detail;
            ASSERT_EQ(got.messages, want);
            ASSERT_TRUE(got.order_ok);
        }
    }
}

TEST(WsDeflate, CompressedFramesCarryRsv1OnTheFirstFrameOnly) {
    deflate_params p;
    pmd_link l(role::server, p);
    buffer_chain out;
    send_options o;
    o.fragment_size = 10;
    ASSERT_TRUE(l.enc.send_copy(out, opcode::text, as_bytes(std::string(500, 'a') + "xyz"), o));
    std::string w = out.to_string();
    EXPECT_EQ(static_cast<unsigned char>(w[0]) & 0x40, 0x40);  // RSV1 on the first frame
    std::size_t second = 2 + static_cast<unsigned char>(w[1]);
    EXPECT_EQ(static_cast<unsigned char>(w[second]) & 0x40, 0);  // not on continuations
    // Small messages stay uncompressed (min_size), and compress::no is honoured.
    deflate_config cfg = enabled();
    cfg.min_size = 32;
    pmd_link l2(role::server, p, {}, cfg);
    buffer_chain o2;
    ASSERT_TRUE(l2.enc.send_copy(o2, opcode::text, as_bytes(std::string_view("short"))));
    ASSERT_TRUE(l2.enc.send_copy(o2, opcode::text, as_bytes(std::string(100, 'a')), {compress::no, 0}));
    std::string w2 = o2.to_string();
    EXPECT_EQ(w2.substr(0, 7), std::string("\x81\x05short", 7));
    EXPECT_EQ(static_cast<unsigned char>(w2[7]), 0x81u);
}

TEST(WsDeflate, ContextTakeoverIsHonoured) {
    // With takeover the second identical message refers back to the first and is much smaller;
    // without, both compress to the same size.
    const std::string m = "the quick brown fox jumps over the lazy dog 0123456789 " + std::string(200, '~');
    for (bool no_takeover : {false, true}) {
        deflate_params p;
        p.server_no_context_takeover = no_takeover;
        encoder e(role::server, p, enabled());
        buffer_chain a, b;
        ASSERT_TRUE(e.send_copy(a, opcode::text, as_bytes(m)));
        ASSERT_TRUE(e.send_copy(b, opcode::text, as_bytes(m)));
        if (no_takeover) {
            EXPECT_EQ(a.size(), b.size());
        } else {
            EXPECT_LT(b.size() * 2, a.size());
        }
    }
    // A receiver that resets after each message (it agreed to no takeover) cannot decode a
    // message that refers to the previous one: proof that the reset happens.
    deflate_params sender;  // takeover
    encoder e(role::server, sender, enabled());
    buffer_chain out;
    ASSERT_TRUE(e.send_copy(out, opcode::text, as_bytes(m)));
    ASSERT_TRUE(e.send_copy(out, opcode::text, as_bytes(m)));
    deflate_params receiver;
    receiver.server_no_context_takeover = true;
    decoder d(role::client, {}, receiver);
    auto got = decode_all(d, out.to_string());
    EXPECT_NE(got.error, errc::ok);
    decoder d2(role::client, {}, sender);
    auto got2 = decode_all(d2, out.to_string());
    ASSERT_EQ(got2.error, errc::ok);
    EXPECT_EQ(got2.messages.size(), 2u);
}

TEST(WsDeflate, DecompressionBombStopsAtTheMessageLimit) {
    // 16 MiB of zeros compresses to ~16 KiB: well under the frame limit on the wire.
    std::string zeros(16u << 20, '\0');
    std::string z = strip_tail(raw_deflate(zeros, Z_SYNC_FLUSH));
    ASSERT_LT(z.size(), 1u << 20);
    limits lim;
    lim.max_message = 1u << 20;
    decoder d(role::server, lim, deflate_params{});
    std::string wire = cframe(2, z, true, 4);
    std::vector<std::byte> buf(wire.size());
    std::memcpy(buf.data(), wire.data(), wire.size());
    mut_bytes in(buf);
    std::uint64_t delivered = 0;
    errc err = errc::ok;
    for (;;) {
        auto ev = d.next(in);
        if (!ev) {
            err = ev.code();
            break;
        }
        if (ev->type == event_type::need_more) break;
        delivered += ev->payload.size();
    }
    EXPECT_EQ(err, errc::ws_too_big);
    EXPECT_EQ(close_code_for(err), 1009);
    EXPECT_LE(delivered, lim.max_message);  // never more than the limit reached the caller
}

TEST(WsDeflate, InflatedSizeUpToTheLimitIsFine) {
    limits lim;
    lim.max_message = 100000;
    std::string m(100000, 'k');
    decoder d(role::server, lim, deflate_params{});
    auto got = decode_all(d, cframe(2, strip_tail(raw_deflate(m, Z_SYNC_FLUSH)), true, 4));
    ASSERT_EQ(got.error, errc::ok);
    ASSERT_EQ(got.messages.size(), 1u);
    EXPECT_EQ(got.messages[0].data, m);
    decoder d2(role::server, lim, deflate_params{});
    EXPECT_EQ(decode_all(d2, cframe(2, strip_tail(raw_deflate(m + "k", Z_SYNC_FLUSH)), true, 4)).error,
              errc::ws_too_big);
}

TEST(WsDeflate, SmallInflateChunkAndBytewiseInput) {
    // Output buffer smaller than the inflated message, input one byte at a time: exercises the
    // "output full, more pending" path and the re-presented, already unmasked input.
    limits lim;
    lim.inflate_chunk = 256;
    std::mt19937 rng(4);
    std::string m = random_text(rng, 20000);
    deflate_params p;
    pmd_link l(role::client, p, lim);
    buffer_chain out;
    send_options o;
    o.fragment_size = 333;
    ASSERT_TRUE(l.enc.send_copy(out, opcode::text, as_bytes(m), o));
    ASSERT_TRUE(l.enc.send_copy(out, opcode::text, as_bytes(m)));
    auto got = decode_bytewise(l.dec, out.to_string());
    ASSERT_EQ(got.error, errc::ok) << got.error_detail;
    ASSERT_EQ(got.messages.size(), 2u);
    EXPECT_EQ(got.messages[0].data, m);
    EXPECT_EQ(got.messages[1].data, m);
}

TEST(WsDeflate, InvalidUtf8InsideCompressedTextIs1007) {
    decoder d(role::server, {}, deflate_params{});
    auto got = decode_all(d, cframe(1, strip_tail(raw_deflate("ok \xed\xa0\x80 surrogate", Z_SYNC_FLUSH)), true, 4));
    EXPECT_EQ(got.error, errc::ws_bad_utf8);
}

TEST(WsDeflate, CorruptDataIsAnError) {
    decoder d(role::server, {}, deflate_params{});
    auto got = decode_all(d, cframe(2, "\xff\xff\xff\xff garbage", true, 4));
    EXPECT_EQ(got.error, errc::ws_deflate);
    EXPECT_EQ(close_code_for(got.error), 1007);
}

TEST(WsDeflate, BlockWithBfinalSet) {
    // RFC 7692 §7.2.3.4: a sender may end the message with a final block; a later message then
    // starts a new stream (which may still refer to the old window with context takeover).
    decoder d(role::server, {}, deflate_params{});
    std::string w = cframe(2, raw_deflate("first message", Z_FINISH), true, 4) +
                    cframe(2, strip_tail(raw_deflate("second", Z_SYNC_FLUSH)), true, 4);
    auto got = decode_all(d, w);
    ASSERT_EQ(got.error, errc::ok) << got.error_detail;
    ASSERT_EQ(got.messages.size(), 2u);
    EXPECT_EQ(got.messages[0].data, "first message");
    EXPECT_EQ(got.messages[1].data, "second");
}

TEST(WsDeflate, UncompressedMessagesMixWithCompressedOnes) {
    decoder d(role::server, {}, deflate_params{});
    std::string w = cframe(1, "plain") + cframe(1, strip_tail(raw_deflate("packed", Z_SYNC_FLUSH)), true, 4) +
                    cframe(1, "plain again");
    auto got = decode_all(d, w);
    ASSERT_EQ(got.error, errc::ok);
    ASSERT_EQ(got.messages.size(), 3u);
    EXPECT_EQ(got.messages[1].data, "packed");
    EXPECT_EQ(got.messages[2].data, "plain again");
}

TEST(WsDeflate, SmallWindowsBothWays) {
    // Window bits 8 (sent as 9 by zlib, whose distances stay <= 250) to 15.
    std::mt19937 rng(31);
    for (std::uint8_t bits : {8, 9, 12, 15}) {
        deflate_params p;
        p.server_max_window_bits = bits;
        p.client_max_window_bits = bits;
        for (role from : {role::client, role::server}) {
            pmd_link l(from, p);
            buffer_chain out;
            std::string m = random_text(rng, 30000);
            ASSERT_TRUE(l.enc.send_copy(out, opcode::text, as_bytes(m)));
            auto got = decode_all(l.dec, out.to_string());
            ASSERT_EQ(got.error, errc::ok);
            EXPECT_EQ(got.messages[0].data, m);
        }
    }
}

TEST(WsDeflate, StreamingCompressedParts) {
    deflate_params p;
    pmd_link l(role::client, p);
    buffer_chain out;
    std::string all;
    for (int i = 0; i < 10; ++i) {
        std::string part = "token " + std::to_string(i) + " ";
        all += part;
        ASSERT_TRUE(l.enc.send_part_copy(out, opcode::text, as_bytes(part), fin::no, compress::yes));
    }
    ASSERT_TRUE(l.enc.send_part_copy(out, opcode::text, {}, fin::yes, compress::yes));
    auto got = decode_all(l.dec, out.to_string());
    ASSERT_EQ(got.error, errc::ok) << got.error_detail;
    ASSERT_EQ(got.messages.size(), 1u);
    EXPECT_EQ(got.messages[0].data, all);
}

TEST(WsDeflate, MessageEndComesWithItsLastByteWhenTheOutputFits) {
    // A caller that loops only while input remains still sees the end of a compressed message
    // whose inflated tail fits in one chunk.
    decoder d(role::server, {}, deflate_params{});
    std::string w = cframe(1, strip_tail(raw_deflate("hello, compressed world", Z_SYNC_FLUSH)), true, 4);
    std::vector<std::byte> buf(w.size());
    std::memcpy(buf.data(), w.data(), w.size());
    mut_bytes in(buf);
    bool last = false;
    std::string got;
    while (!in.empty()) {
        auto ev = d.next(in);
        ASSERT_TRUE(ev);
        if (ev->type == event_type::data) {
            got.append(ev->text());
            last = ev->last;
        }
    }
    EXPECT_TRUE(last);
    EXPECT_EQ(got, "hello, compressed world");
}

TEST(WsDeflate, OutputCanOutlastTheInputSoCallUntilNeedMore) {
    // 64 KiB of one letter inflates from a few hundred bytes into 256-byte chunks: most of the
    // message comes out of calls made after the last input byte was consumed.
    limits lim;
    lim.inflate_chunk = 256;
    decoder d(role::server, lim, deflate_params{});
    const std::string m(64 * 1024, 'a');
    std::string w = cframe(1, strip_tail(raw_deflate(m, Z_SYNC_FLUSH)), true, 4);
    std::vector<std::byte> buf(w.size());
    std::memcpy(buf.data(), w.data(), w.size());
    mut_bytes in(buf);
    std::string got;
    bool last = false, emptied_before_end = false;
    for (;;) {
        auto ev = d.next(in);
        ASSERT_TRUE(ev);
        if (ev->type == event_type::need_more) break;
        if (in.empty() && !ev->last) emptied_before_end = true;
        ASSERT_LE(ev->payload.size(), 256u);
        got.append(ev->text());
        last = ev->last;
    }
    EXPECT_TRUE(emptied_before_end);
    EXPECT_TRUE(last);
    EXPECT_EQ(got, m);
}

TEST(WsDeflate, FinalBlockFillingTheOutputThenMoreFrameBytesLater) {
    // Regression (found by the ws_frame fuzzer as a hang): a final block whose output fills the
    // inflate buffer exactly ends the stream while the frame still has bytes to come. The next
    // call, with no input, must report need_more instead of spinning. Inflated sizes around
    // the 16 KiB inflate_chunk, trailing bytes after the final block, every split point near
    // the end of the compressed data.
    for (std::size_t size : {16383u, 16384u, 16385u, 32768u}) {
        std::string plain(size, 'a');
        std::string packed = raw_deflate(plain, Z_FINISH) + std::string(7, '\x55');
        std::string wire = cframe(2, packed, true, 4);
        for (std::size_t cut = wire.size() - 12; cut < wire.size(); ++cut) {
            decoder d(role::server, {}, deflate_params{});
            auto got = decode_chunks(d, wire, [&](std::size_t off) { return off == 0 ? cut : wire.size() - off; });
            ASSERT_EQ(got.error, errc::ok) << got.error_detail << " size " << size << " cut " << cut;
            ASSERT_EQ(got.messages.size(), 1u) << "size " << size << " cut " << cut;
            EXPECT_EQ(got.messages[0].data, plain);
        }
    }
}
