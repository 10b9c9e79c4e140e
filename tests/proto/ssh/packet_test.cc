// Version exchange and binary packet protocol (RFC 4253 §4.2, §6).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "proto/ssh/cipher.hh"
#include "proto/ssh/packet.hh"
#include "proto/ssh/version.hh"
#include "test_util.hh"

using namespace ferry;
using namespace ferry::ssh;
using ferry::ssh::test::counting_rng;
using ferry::ssh::test::hex;

namespace {

// ---- version exchange ------------------------------------------------------------------------

struct vresult {
    errc code = errc::ok;
    bool done = false;
    std::string version;
    std::size_t left = 0;
};

vresult parse_version(role self, std::string_view input, std::size_t chunk = 1000000) {
    version_parser p(self, version_limits{});
    vresult r;
    bytes all = as_bytes(input);
    while (!all.empty()) {
        bytes in = all.first(std::min(chunk, all.size()));
        all = all.subspan(in.size());
        auto d = p.feed(in);
        if (!d) {
            r.code = d.code();
            return r;
        }
        if (*d) {
            r.done = true;
            r.version = p.peer_version();
            r.left = in.size() + all.size();
            return r;
        }
        EXPECT_TRUE(in.empty());
    }
    return r;
}

TEST(SshVersion, ParsesVersionLineAndStopsAtItsEnd) {
    for (std::size_t chunk : {1ul, 2ul, 3ul, 7ul, 1000ul}) {
        std::string in("SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n\x00\x00\x00\x14", 36);
        auto r = parse_version(role::server, in, chunk);
        EXPECT_TRUE(r.done);
        EXPECT_EQ(r.version, "SSH-2.0-OpenSSH_9.2p1 Debian-2");
        EXPECT_EQ(r.left, 4u);  // the first packet's bytes stay in the input
    }
    auto lf = parse_version(role::client, "SSH-2.0-x\n");
    EXPECT_TRUE(lf.done);
    EXPECT_EQ(lf.version, "SSH-2.0-x");
    EXPECT_TRUE(parse_version(role::client, "SSH-1.99-old\r\n").done);
}

TEST(SshVersion, ClientAcceptsBannerLinesServerDoesNot) {
    std::string in = "Welcome\r\nto the host\r\nSSH-2.0-srv\r\n";
    auto c = parse_version(role::client, in, 5);
    EXPECT_TRUE(c.done);
    EXPECT_EQ(c.version, "SSH-2.0-srv");
    auto s = parse_version(role::server, in);
    EXPECT_EQ(s.code, errc::ssh_protocol);
}

TEST(SshVersion, EnforcesLimits) {
    // 255 bytes with CR LF is the maximum.
    std::string ok = "SSH-2.0-" + std::string(255 - 10, 'a') + "\r\n";
    ASSERT_EQ(ok.size(), 255u);
    EXPECT_TRUE(parse_version(role::client, ok).done);
    std::string too_long = "SSH-2.0-" + std::string(255 - 9, 'a') + "\r\n";
    EXPECT_EQ(parse_version(role::client, too_long).code, errc::limit_exceeded);
    // An endless line without a newline is cut off at the limit, not buffered.
    EXPECT_EQ(parse_version(role::server, std::string(100000, 'x'), 333).code,
              errc::limit_exceeded);
    std::string many;
    for (int i = 0; i < 200; ++i) many += "banner\r\n";
    EXPECT_EQ(parse_version(role::client, many + "SSH-2.0-x\r\n").code, errc::limit_exceeded);
    EXPECT_EQ(parse_version(role::client, std::string(20000, 'b') + "\n").code,
              errc::limit_exceeded);
}

TEST(SshVersion, RejectsOtherVersionsAndBadLines) {
    EXPECT_EQ(parse_version(role::client, "SSH-1.5-old\r\n").code, errc::ssh_version);
    EXPECT_EQ(parse_version(role::client, "SSH-3.0-new\r\n").code, errc::ssh_version);
    EXPECT_EQ(parse_version(role::client, "SSH-2.0-\r\n").code, errc::ssh_protocol);
    EXPECT_EQ(parse_version(role::client, std::string("SSH-2.0-a\0b\r\n", 13)).code,
              errc::ssh_protocol);
    EXPECT_TRUE(valid_version_string("SSH-2.0-ferry_0.1"));
    EXPECT_FALSE(valid_version_string("SSH-2.0-"));
    EXPECT_FALSE(valid_version_string("SSH-1.0-x"));
    EXPECT_FALSE(valid_version_string("SSH-2.0-" + std::string(250, 'a')));
}

// ---- packets ---------------------------------------------------------------------------------

struct suite {
    cipher_id c;
    mac_id m;
};
const suite kSuites[] = {
    {cipher_id::none, mac_id::none},
    {cipher_id::aes128_gcm, mac_id::none},
    {cipher_id::aes256_gcm, mac_id::none},
    {cipher_id::chacha20_poly1305, mac_id::none},
    {cipher_id::aes128_ctr, mac_id::hmac_sha2_256},
    {cipher_id::aes256_ctr, mac_id::hmac_sha2_512},
    {cipher_id::aes256_ctr, mac_id::hmac_sha2_256_etm},
    {cipher_id::aes128_ctr, mac_id::hmac_sha2_512_etm},
};

std::string name(const suite& s) {
    return std::string(info(s.c).name) + "/" + std::string(info(s.m).name);
}

std::unique_ptr<packet_cipher> cipher_for(const suite& s, int salt) {
    if (s.c == cipher_id::none) return make_null_cipher();
    std::vector<std::byte> key(info(s.c).key_len), iv(16), mk(info(s.m).key_len);
    for (std::size_t i = 0; i < key.size(); ++i) key[i] = std::byte(i * 3 + salt);
    for (std::size_t i = 0; i < iv.size(); ++i) iv[i] = std::byte(i + 100 + salt);
    for (std::size_t i = 0; i < mk.size(); ++i) mk[i] = std::byte(i * 7 + salt);
    auto c = make_cipher(s.c, s.m, key, iv, mk);
    EXPECT_TRUE(c);
    return std::move(*c);
}

struct pair_t {
    counting_rng r1{1}, r2{2};
    packet_layer tx, rx;
    pair_t(const suite& s, packet_limits lim = {}) : tx(lim, r1), rx(lim, r2) {
        tx.set_send_cipher(cipher_for(s, 1));
        rx.set_recv_cipher(cipher_for(s, 1));
    }
};

std::vector<std::byte> flat(const buffer_chain& c) {
    std::string s = c.to_string();
    std::vector<std::byte> v(s.size());
    std::memcpy(v.data(), s.data(), s.size());
    return v;
}

std::vector<std::byte> payload_of(std::size_t n, int seed) {
    std::vector<std::byte> p(n);
    for (std::size_t i = 0; i < n; ++i) p[i] = std::byte((i * 31 + seed) & 0xff);
    return p;
}

// Reads everything from `wire` delivered in chunks of `chunk` bytes; returns the payloads.
result<std::vector<std::vector<std::byte>>> read_all(packet_layer& rx, std::vector<std::byte> wire,
                                                     std::size_t chunk) {
    std::vector<std::vector<std::byte>> got;
    mut_bytes all(wire);
    while (!all.empty()) {
        mut_bytes in = all.first(std::min(chunk, all.size()));
        all = all.subspan(in.size());
        for (;;) {
            auto p = rx.read(in);
            if (!p) return fail(p.err());
            if (!*p) break;
            got.emplace_back((*p)->payload.begin(), (*p)->payload.end());
        }
        EXPECT_TRUE(in.empty());
    }
    return got;
}

TEST(SshPacket, RoundTripEverySuiteAtEverySplit) {
    for (const auto& s : kSuites) {
        SCOPED_TRACE(name(s));
        for (std::size_t chunk : {1ul, 3ul, 4ul, 5ul, 15ul, 16ul, 17ul, 64ul, 1000ul, 1ul << 20}) {
            pair_t p(s);
            buffer_chain out;
            std::vector<std::vector<std::byte>> sent;
            for (std::size_t n : {1ul, 2ul, 15ul, 16ul, 17ul, 100ul, 1000ul, 33000ul}) {
                sent.push_back(payload_of(n, int(n)));
                ASSERT_TRUE(p.tx.write(sent.back(), out));
            }
            // head + body gather form.
            auto h = payload_of(5, 9), b = payload_of(300, 10);
            ASSERT_TRUE(p.tx.write(h, b, out));
            auto hb = h;
            hb.insert(hb.end(), b.begin(), b.end());
            sent.push_back(hb);
            auto got = read_all(p.rx, flat(out), chunk);
            ASSERT_TRUE(got) << to_string(got.code());
            EXPECT_EQ(*got, sent) << "chunk " << chunk;
            EXPECT_EQ(p.rx.recv_seq(), sent.size());
            EXPECT_EQ(p.tx.send_seq(), sent.size());
            EXPECT_EQ(p.rx.received_bytes(), out.size());
            EXPECT_FALSE(p.rx.mid_packet());
        }
    }
}

TEST(SshPacket, PaddingRulesOnTheWire) {
    // Every packet: padding >= 4, and the aligned part a multiple of max(8, block).
    for (const auto& s : kSuites) {
        SCOPED_TRACE(name(s));
        for (std::size_t n = 1; n < 70; ++n) {
            counting_rng r;
            packet_layer tx(packet_limits{}, r);
            auto c = cipher_for(s, 1);
            std::size_t blk = std::max<std::size_t>(8, c->block_size());
            bool clear = c->length_in_clear();
            std::size_t tag = c->tag_size();
            tx.set_send_cipher(std::move(c));
            buffer_chain out;
            auto pl = payload_of(n, 1);
            ASSERT_TRUE(tx.write(pl, out));
            std::size_t total = out.size() - tag;
            std::size_t plen = total - 4;
            EXPECT_EQ((clear ? plen : total) % blk, 0u) << n;
            EXPECT_GE(plen - 1 - n, 4u);
            EXPECT_LT(plen - 1 - n, 4 + blk);
        }
    }
}

TEST(SshPacket, SequenceNumbersAdvanceAndReset) {
    // (Wrapping at 2^32 is covered by the chacha KAT, sealed at 0xfffffffe and 0xffffffff.)
    pair_t p({cipher_id::chacha20_poly1305, mac_id::none});
    buffer_chain out;
    for (int i = 0; i < 10; ++i) ASSERT_TRUE(p.tx.write(payload_of(10, i), out));
    auto got = read_all(p.rx, flat(out), 7);
    ASSERT_TRUE(got);
    EXPECT_EQ(p.rx.recv_seq(), 10u);
    p.tx.reset_send_seq();
    p.rx.reset_recv_seq();
    buffer_chain out2;
    ASSERT_TRUE(p.tx.write(payload_of(10, 1), out2));
    ASSERT_TRUE(read_all(p.rx, flat(out2), 100));
    EXPECT_EQ(p.rx.recv_seq(), 1u);
}

TEST(SshPacket, MismatchedSequenceFailsMac) {
    for (const auto& s : kSuites) {
        if (s.c == cipher_id::none || (info(s.c).aead && s.c != cipher_id::chacha20_poly1305)) {
            continue;  // none has no MAC; GCM binds its own counter
        }
        SCOPED_TRACE(name(s));
        pair_t p(s);
        buffer_chain out;
        ASSERT_TRUE(p.tx.write(payload_of(10, 1), out));
        p.rx.reset_recv_seq();
        (void)read_all(p.rx, flat(out), 100);  // seq 0: fine
        buffer_chain out2;
        p.tx.reset_send_seq();  // the sender restarts at 0, the receiver expects 1
        ASSERT_TRUE(p.tx.write(payload_of(10, 2), out2));
        auto got = read_all(p.rx, flat(out2), 100);
        ASSERT_FALSE(got);
        if (s.c == cipher_id::chacha20_poly1305) {
            // The length itself is encrypted under the sequence number: it decodes to garbage,
            // which the length checks refuse before any MAC is computed.
            EXPECT_NE(got.code(), errc::ok);
        } else {
            // CTR does not use the sequence number for the length: the MAC catches it.
            EXPECT_EQ(got.code(), errc::ssh_mac);
        }
    }
}

TEST(SshPacket, CorruptedBytesNeverPass) {
    for (const auto& s : kSuites) {
        if (s.c == cipher_id::none) continue;
        SCOPED_TRACE(name(s));
        for (std::size_t pos = 0; pos < 60; pos += 5) {
            pair_t p(s);
            buffer_chain out;
            ASSERT_TRUE(p.tx.write(payload_of(40, 1), out));
            auto w = flat(out);
            if (pos >= w.size()) continue;
            w[pos] ^= std::byte{0x40};
            auto got = read_all(p.rx, w, 1000);
            // A corrupted length may leave the reader waiting for more bytes (never a payload).
            if (got) {
                EXPECT_TRUE(got->empty()) << pos;
            } else {
                EXPECT_TRUE(got.code() == errc::ssh_mac || got.code() == errc::bad_length ||
                            got.code() == errc::limit_exceeded)
                    << pos << " " << to_string(got.code());
            }
        }
    }
}

// Seals a hand-made packet (length, padding length, payload, padding) with `c` at `seq`.
std::vector<std::byte> forge(packet_cipher& c, std::uint32_t seq, std::uint32_t plen,
                             std::uint8_t padlen, std::size_t body_bytes) {
    std::vector<std::byte> w(4 + body_bytes + c.tag_size());
    store_be32(w.data(), plen);
    w[4] = std::byte(padlen);
    w[5] = std::byte{94};
    EXPECT_TRUE(c.seal(seq, mut_bytes(w).first(4 + body_bytes),
                       mut_bytes(w).subspan(4 + body_bytes)));
    return w;
}

TEST(SshPacket, RejectsBadPaddingWithAValidMac) {
    for (const auto& s : kSuites) {
        SCOPED_TRACE(name(s));
        auto c = cipher_for(s, 1);
        std::size_t blk = std::max<std::size_t>(8, c->block_size());
        std::uint32_t plen = c->length_in_clear() ? std::uint32_t(2 * blk) : std::uint32_t(2 * blk - 4);
        // padding 3 (< 4)
        {
            auto sc = cipher_for(s, 1);
            auto w = forge(*sc, 0, plen, 3, plen);
            pair_t p(s);
            auto got = read_all(p.rx, w, 1000);
            ASSERT_FALSE(got);
            EXPECT_EQ(got.code(), errc::ssh_protocol);
        }
        // padding covers the whole packet (no payload byte left)
        {
            auto sc = cipher_for(s, 1);
            auto w = forge(*sc, 0, plen, std::uint8_t(plen - 1), plen);
            pair_t p(s);
            auto got = read_all(p.rx, w, 1000);
            ASSERT_FALSE(got);
            EXPECT_EQ(got.code(), errc::ssh_protocol);
        }
        // misaligned length
        {
            auto sc = cipher_for(s, 1);
            auto w = forge(*sc, 0, plen + 1, 4, plen + 1);
            pair_t p(s);
            auto got = read_all(p.rx, w, 1000);
            ASSERT_FALSE(got);
            EXPECT_EQ(got.code(), errc::bad_length);
        }
    }
}

TEST(SshPacket, OversizedLengthIsRejectedBeforeBuffering) {
    packet_limits lim;
    lim.max_packet = 64 * 1024;
    counting_rng r;
    packet_layer rx(lim, r);
    // none cipher: a length of 1 MiB, then nothing: refused on the first 4 bytes.
    std::vector<std::byte> w(8);
    store_be32(w.data(), 1u << 20);
    mut_bytes in(w);
    auto got = rx.read(in);
    ASSERT_FALSE(got);
    EXPECT_EQ(got.code(), errc::limit_exceeded);
    // 0xffffffff does not overflow the check.
    counting_rng r2;
    packet_layer rx2(lim, r2);
    store_be32(w.data(), 0xffffffffu);
    mut_bytes in2(w);
    EXPECT_EQ(rx2.read(in2).code(), errc::limit_exceeded);
    // Tiny lengths.
    for (std::uint32_t l : {0u, 1u, 4u}) {
        counting_rng r3;
        packet_layer rx3(lim, r3);
        store_be32(w.data(), l);
        mut_bytes in3(w);
        EXPECT_EQ(rx3.read(in3).code(), errc::bad_length) << l;
    }
}

TEST(SshPacket, WriteRefusesOversizedPayload) {
    packet_limits lim;
    lim.max_packet = 4096;
    for (const auto& s : kSuites) {
        SCOPED_TRACE(name(s));
        counting_rng r;
        packet_layer tx(lim, r);
        tx.set_send_cipher(cipher_for(s, 1));
        buffer_chain out;
        auto ok = payload_of(tx.max_payload(), 1);
        EXPECT_TRUE(tx.write(ok, out));
        auto big = payload_of(lim.max_packet, 1);
        EXPECT_EQ(tx.write(big, out).code(), errc::limit_exceeded);
        EXPECT_EQ(tx.write(bytes{}, out).code(), errc::invalid_argument);
        EXPECT_LE(out.size(), lim.max_packet);
    }
}

TEST(SshPacket, WholePacketsAreOpenedInPlace) {
    // A whole packet in the input: the payload view points into the caller's buffer.
    pair_t p({cipher_id::aes256_gcm, mac_id::none});
    buffer_chain out;
    ASSERT_TRUE(p.tx.write(payload_of(1000, 3), out));
    auto w = flat(out);
    mut_bytes in(w);
    auto got = p.rx.read(in);
    ASSERT_TRUE(got && *got);
    EXPECT_EQ((*got)->payload.data(), w.data() + 5);
    EXPECT_TRUE(in.empty());
}

}  // namespace
