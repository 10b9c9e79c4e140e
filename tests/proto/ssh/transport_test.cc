// Transport state machine, both roles, joined in memory (no sockets).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "harness.hh"
#include "proto/ssh/packet.hh"
#include "proto/ssh/transport.hh"

using namespace ferry;
using namespace ferry::ssh;
using namespace ferry::ssh::test;

namespace {

transport_config cfg_with(std::string ciphers = "", std::string macs = "", bool strict = true) {
    transport_config c;
    if (!ciphers.empty()) c.ciphers = ciphers;
    if (!macs.empty()) c.macs = macs;
    c.strict_kex = strict;
    return c;
}

void handshake(endpoint& c, endpoint& s, std::size_t chunk = 1 << 30) {
    c.start();
    s.start();
    pump(c, s, chunk);
    ASSERT_FALSE(c.failed) << to_string(c.err.code) << " " << c.err.detail;
    ASSERT_FALSE(s.failed) << to_string(s.err.code) << " " << s.err.detail;
    ASSERT_TRUE(c.has(event_type::handshake_done));
    ASSERT_TRUE(s.has(event_type::handshake_done));
}

// A plaintext packet (the null cipher's framing) carrying `payload`.
std::vector<std::byte> plain_packet(bytes payload) {
    counting_rng r(99);
    packet_layer pl(packet_limits{}, r);
    buffer_chain out;
    EXPECT_TRUE(pl.write(payload, out));
    return flatten(out);
}

// Splits the first output of a transport into the version line and the packets after it.
std::pair<std::vector<std::byte>, std::vector<std::byte>> split_version(std::vector<std::byte> w) {
    std::size_t i = 0;
    while (i < w.size() && w[i] != std::byte{'\n'}) ++i;
    ++i;
    return {std::vector<std::byte>(w.begin(), w.begin() + i),
            std::vector<std::byte>(w.begin() + i, w.end())};
}

std::vector<std::byte> cat(std::vector<std::byte> a, const std::vector<std::byte>& b) {
    a.insert(a.end(), b.begin(), b.end());
    return a;
}

std::optional<recorded> last(const endpoint& e, event_type t) {
    for (auto it = e.events.rbegin(); it != e.events.rend(); ++it) {
        if (it->type == t) return *it;
    }
    return std::nullopt;
}

// ---- handshakes ------------------------------------------------------------------------------

struct combo {
    const char* cipher;
    const char* mac;
};
const combo kCombos[] = {
    {"aes256-gcm@openssh.com", ""},
    {"aes128-gcm@openssh.com", ""},
    {"chacha20-poly1305@openssh.com", ""},
    {"aes256-ctr", "hmac-sha2-256"},
    {"aes256-ctr", "hmac-sha2-512"},
    {"aes256-ctr", "hmac-sha2-256-etm@openssh.com"},
    {"aes256-ctr", "hmac-sha2-512-etm@openssh.com"},
    {"aes128-ctr", "hmac-sha2-256"},
    {"aes128-ctr", "hmac-sha2-512"},
    {"aes128-ctr", "hmac-sha2-256-etm@openssh.com"},
    {"aes128-ctr", "hmac-sha2-512-etm@openssh.com"},
};

TEST(SshTransport, HandshakeAndTrafficWithEveryCipherAndMac) {
    for (const auto& k : kCombos) {
        SCOPED_TRACE(std::string(k.cipher) + " " + k.mac);
        // The client prefers exactly this suite; the server offers everything.
        endpoint c(role::client, 1, cfg_with(k.cipher, k.mac));
        endpoint s(role::server, 2);
        handshake(c, s);
        EXPECT_EQ(info(c.t->negotiated().enc[0]).name, k.cipher);
        EXPECT_EQ(info(s.t->negotiated().enc[1]).name, k.cipher);
        if (*k.mac) {
            EXPECT_EQ(info(c.t->negotiated().mac[0]).name, k.mac);
            EXPECT_EQ(info(s.t->negotiated().mac[1]).name, k.mac);
        }
        EXPECT_TRUE(c.t->strict_kex());
        EXPECT_TRUE(s.t->strict_kex());
        EXPECT_EQ(c.t->session_id().size(), 32u);
        EXPECT_TRUE(std::equal(c.t->session_id().begin(), c.t->session_id().end(),
                               s.t->session_id().begin(), s.t->session_id().end()));
        EXPECT_EQ(c.t->peer_version(), "SSH-2.0-ferry_0.1");
        // RFC 8308: the server announced its signature algorithms.
        EXPECT_TRUE(c.has(event_type::ext_info));
        EXPECT_EQ(c.t->server_sig_algs(),
                  "ssh-ed25519,ecdsa-sha2-nistp256,rsa-sha2-256,rsa-sha2-512");

        std::vector<std::vector<std::byte>> to_s, to_c;
        for (std::size_t n : {0ul, 1ul, 100ul, 32768ul}) {
            to_s.push_back(app_payload(94, n, int(n)));
            to_c.push_back(app_payload(95, n, int(n) + 1));
            ASSERT_TRUE(c.t->send(to_s.back(), c.out));
            ASSERT_TRUE(s.t->send(to_c.back(), s.out));
        }
        pump(c, s);
        EXPECT_EQ(s.messages(), to_s);
        EXPECT_EQ(c.messages(), to_c);
    }
}

TEST(SshTransport, HandshakeSurvivesAnyChunking) {
    for (std::size_t chunk : {1ul, 2ul, 5ul, 17ul, 300ul}) {
        SCOPED_TRACE(chunk);
        endpoint c(role::client, 3, cfg_with("chacha20-poly1305@openssh.com"));
        endpoint s(role::server, 4);
        handshake(c, s, chunk);
        auto p = app_payload(94, 5000, 1);
        ASSERT_TRUE(c.t->send(p, c.out));
        pump(c, s, chunk);
        ASSERT_EQ(s.messages().size(), 1u);
        EXPECT_EQ(s.messages()[0], p);
    }
}

TEST(SshTransport, Curve25519LibsshNameNegotiates) {
    transport_config cc;
    cc.kex = "curve25519-sha256@libssh.org";
    endpoint c(role::client, 5, cc);
    endpoint s(role::server, 6);
    handshake(c, s);
    EXPECT_EQ(c.t->negotiated().kex, kex_id::curve25519_sha256_libssh);
}

TEST(SshTransport, ClientRejectsUnknownHostKey) {
    endpoint c(role::client, 7);
    c.verifier = pinned_host_keys(pinned_host_keys::policy::pinned_only);
    c.verifier.pin_fingerprint("SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    endpoint s(role::server, 8);
    c.start();
    s.start();
    pump(c, s);
    ASSERT_TRUE(c.failed);
    EXPECT_EQ(c.err.code, errc::ssh_host_key);
    EXPECT_EQ(c.t->close_reason(), disconnect_reason::host_key_not_verifiable);
    auto d = last(s, event_type::disconnected);
    ASSERT_TRUE(d);
    EXPECT_EQ(d->reason, disconnect_reason::host_key_not_verifiable);
    EXPECT_FALSE(s.has(event_type::handshake_done));
}

TEST(SshTransport, PinnedFingerprintAndTofu) {
    // Fingerprint of the test host key as printed by `ssh-keygen -lf` (OpenSSH 9.2) for the
    // public key with seed 0x40..0x5f.
    const std::string fp = "SHA256:vFqNDzha593cgR8IPb5kAiL699Qdph88tLNtJJ50ZBQ";
    {
        endpoint c(role::client, 9);
        c.verifier = pinned_host_keys(pinned_host_keys::policy::pinned_only);
        c.verifier.pin_fingerprint(fp);
        endpoint s(role::server, 10);
        handshake(c, s);
        EXPECT_EQ(fingerprint_sha256(c.t->peer_host_key()), fp);
    }
    // TOFU: the first key is remembered; a different key later is refused.
    pinned_host_keys store(pinned_host_keys::policy::trust_on_first_use);
    auto k1 = ed25519_private::from_seed(host_seed());
    std::array<std::byte, 32> other{};
    other[0] = std::byte{1};
    auto k2 = ed25519_private::from_seed(other);
    EXPECT_TRUE(store.accept(ssh_ed25519, ed25519_key_blob(k1->public_key())));
    EXPECT_TRUE(store.accept(ssh_ed25519, ed25519_key_blob(k1->public_key())));
    EXPECT_FALSE(store.accept(ssh_ed25519, ed25519_key_blob(k2->public_key())));
    EXPECT_EQ(store.keys().size(), 1u);
}

// ---- strict KEX ------------------------------------------------------------------------------

TEST(SshTransport, StrictKexRejectsIgnoreBeforeKexinit) {
    // The Terrapin pattern: a packet slipped in before the client's KEXINIT.
    for (bool strict : {true, false}) {
        SCOPED_TRACE(strict);
        endpoint c(role::client, 11, cfg_with("", "", strict));
        endpoint s(role::server, 12);
        c.start();
        s.start();
        auto [ver, rest] = split_version(flatten(c.out));
        std::vector<std::byte> ign = {std::byte{msg::ignore}, std::byte{0}, std::byte{0},
                                      std::byte{0}, std::byte{1}, std::byte{'x'}};
        s.feed(cat(cat(ver, plain_packet(ign)), rest));
        if (strict) {
            ASSERT_TRUE(s.failed);
            EXPECT_EQ(s.err.code, errc::ssh_protocol);
            EXPECT_EQ(s.t->close_reason(), disconnect_reason::protocol_error);
            c.feed(flatten(s.out));  // the server's version, KEXINIT and DISCONNECT
            auto d = last(c, event_type::disconnected);
            ASSERT_TRUE(d);
            EXPECT_EQ(d->reason, disconnect_reason::protocol_error);
        } else {
            // Without strict KEX the same stream is legal.
            ASSERT_FALSE(s.failed);
            pump(c, s);
            EXPECT_TRUE(c.has(event_type::handshake_done));
            EXPECT_FALSE(c.t->strict_kex());
        }
    }
}

TEST(SshTransport, StrictKexRejectsAnyExtraMessageDuringInitialKex) {
    for (std::uint8_t m : {msg::ignore, msg::debug, msg::unimplemented, std::uint8_t(8)}) {
        for (bool strict : {true, false}) {
            SCOPED_TRACE(std::to_string(m) + (strict ? " strict" : " loose"));
            endpoint c(role::client, 13, cfg_with("", "", strict));
            endpoint s(role::server, 14);
            c.start();
            s.start();
            s.feed(flatten(c.out));  // client version + KEXINIT
            c.feed(flatten(s.out));  // server version + KEXINIT -> client sends ECDH_INIT
            ASSERT_FALSE(c.failed);
            std::vector<std::byte> extra = {std::byte{m}, std::byte{0}, std::byte{0},
                                            std::byte{0}, std::byte{0}, std::byte{0},
                                            std::byte{0}, std::byte{0}, std::byte{0}};
            s.feed(cat(plain_packet(extra), flatten(c.out)));
            EXPECT_EQ(s.failed, strict);
            if (strict) {
                EXPECT_EQ(s.err.code, errc::ssh_protocol);
            }
            if (!strict) {
                pump(c, s);
                EXPECT_TRUE(c.has(event_type::handshake_done));
            }
        }
    }
}

TEST(SshTransport, StrictKexResetsSequenceNumbersAtNewkeys) {
    for (bool strict : {true, false}) {
        SCOPED_TRACE(strict);
        endpoint c(role::client, 15, cfg_with("", "", strict));
        endpoint s(role::server, 16);
        handshake(c, s);
        // Sent: client KEXINIT, ECDH_INIT, NEWKEYS; server KEXINIT, ECDH_REPLY, NEWKEYS, EXT_INFO.
        // Strict KEX restarts counting after each NEWKEYS.
        EXPECT_EQ(c.t->send_seq(), strict ? 0u : 3u);
        EXPECT_EQ(s.t->send_seq(), strict ? 1u : 4u);
        EXPECT_EQ(c.t->recv_seq(), s.t->send_seq());
        EXPECT_EQ(s.t->recv_seq(), c.t->send_seq());
        ASSERT_TRUE(c.t->rekey(c.out, c.now));
        pump(c, s);
        EXPECT_EQ(c.t->send_seq(), strict ? 0u : 6u);
        EXPECT_EQ(s.t->recv_seq(), c.t->send_seq());
    }
}

TEST(SshTransport, RequireStrictKexRefusesOldPeers) {
    transport_config sc;
    sc.require_strict_kex = true;
    endpoint c(role::client, 17, cfg_with("", "", false));
    endpoint s(role::server, 18, sc);
    c.start();
    s.start();
    pump(c, s);
    ASSERT_TRUE(s.failed);
    EXPECT_EQ(s.err.code, errc::ssh_kex);
    auto d = last(c, event_type::disconnected);
    ASSERT_TRUE(d);
    EXPECT_EQ(d->reason, disconnect_reason::key_exchange_failed);
}

// ---- rekeying --------------------------------------------------------------------------------

TEST(SshTransport, ClientRekeyMidStreamLosesNothing) {
    for (const auto& k : kCombos) {
        SCOPED_TRACE(k.cipher);
        endpoint c(role::client, 19, cfg_with(k.cipher, k.mac));
        endpoint s(role::server, 20);
        handshake(c, s);
        std::vector<std::vector<std::byte>> to_s, to_c;
        for (int i = 0; i < 10; ++i) {
            to_s.push_back(app_payload(94, 1000 + i, i));
            ASSERT_TRUE(c.t->send(to_s.back(), c.out));
        }
        ASSERT_TRUE(c.t->rekey(c.out, c.now));
        EXPECT_TRUE(c.t->in_kex());
        for (int i = 0; i < 10; ++i) {
            to_s.push_back(app_payload(94, 2000 + i, i));
            ASSERT_TRUE(c.t->send(to_s.back(), c.out));  // queued until our NEWKEYS
            to_c.push_back(app_payload(95, 3000 + i, i));
            ASSERT_TRUE(s.t->send(to_c.back(), s.out));
        }
        EXPECT_GT(c.t->queued_bytes(), 0u);
        pump(c, s);
        ASSERT_FALSE(c.failed || s.failed);
        EXPECT_EQ(c.t->queued_bytes(), 0u);
        EXPECT_EQ(c.t->kex_count(), 2u);
        EXPECT_EQ(s.t->kex_count(), 2u);
        EXPECT_TRUE(c.has(event_type::rekey_done));
        EXPECT_TRUE(s.has(event_type::rekey_done));
        EXPECT_EQ(s.messages(), to_s);
        EXPECT_EQ(c.messages(), to_c);
        // The session id stays the first exchange hash.
        EXPECT_TRUE(std::equal(c.t->session_id().begin(), c.t->session_id().end(),
                               s.t->session_id().begin(), s.t->session_id().end()));
    }
}

TEST(SshTransport, ServerInitiatedRekey) {
    endpoint c(role::client, 21);
    endpoint s(role::server, 22);
    handshake(c, s);
    ASSERT_TRUE(s.t->rekey(s.out, s.now));
    auto p = app_payload(95, 100, 1);
    ASSERT_TRUE(s.t->send(p, s.out));
    pump(c, s);
    EXPECT_EQ(c.t->kex_count(), 2u);
    ASSERT_EQ(c.messages().size(), 1u);
    EXPECT_EQ(c.messages()[0], p);
}

TEST(SshTransport, RekeysByBytesDuringABulkTransfer) {
    transport_config cc;
    cc.limits.rekey_bytes = 256 * 1024;
    endpoint c(role::client, 23, cc);
    endpoint s(role::server, 24);
    handshake(c, s);
    c.t->allow_automatic_rekey();
    std::vector<std::vector<std::byte>> sent;
    for (int i = 0; i < 128; ++i) {  // 4 MiB in 32 KiB messages
        sent.push_back(app_payload(94, 32768, i));
        ASSERT_TRUE(c.t->send(sent.back(), c.out));
        if (i % 4 == 3) pump(c, s, 4096);
    }
    pump(c, s);
    ASSERT_FALSE(c.failed || s.failed);
    EXPECT_GE(c.t->kex_count(), 12u);
    EXPECT_EQ(s.messages(), sent);
}

TEST(SshTransport, RekeysByTime) {
    transport_config cc;
    cc.limits.rekey_interval = 60 * 1000;
    endpoint c(role::client, 25, cc);
    endpoint s(role::server, 26);
    handshake(c, s);
    // Not before authentication (OpenSSH refuses KEXINIT during userauth).
    ASSERT_TRUE(c.t->tick(c.out, c.now + 120 * 1000));
    EXPECT_FALSE(c.t->in_kex());
    c.t->allow_automatic_rekey();
    ASSERT_TRUE(c.t->tick(c.out, c.now + 59 * 1000));
    EXPECT_FALSE(c.t->in_kex());
    EXPECT_TRUE(c.out.empty());
    ASSERT_TRUE(c.t->tick(c.out, c.now + 60 * 1000));
    EXPECT_TRUE(c.t->in_kex());
    c.now += 60 * 1000;
    pump(c, s);
    EXPECT_EQ(c.t->kex_count(), 2u);
    EXPECT_FALSE(c.t->in_kex());
}

TEST(SshTransport, RekeyQueueIsBounded) {
    transport_config cc;
    cc.limits.max_kex_queue_bytes = 100 * 1000;
    endpoint c(role::client, 27, cc);
    endpoint s(role::server, 28);
    handshake(c, s);
    ASSERT_TRUE(c.t->rekey(c.out, c.now));
    std::vector<std::vector<std::byte>> sent;
    for (int i = 0;; ++i) {
        auto p = app_payload(94, 10000, i);
        auto r = c.t->send(p, c.out);
        if (!r) {
            EXPECT_EQ(r.code(), errc::limit_exceeded);
            break;
        }
        sent.push_back(p);
        ASSERT_LT(i, 100);
    }
    EXPECT_EQ(sent.size(), 9u);
    pump(c, s);
    EXPECT_EQ(s.messages(), sent);
    // After the rekey the queue is empty and sending works again.
    ASSERT_TRUE(c.t->send(app_payload(94, 10000, 1), c.out));
}

TEST(SshTransport, HostKeyMayNotChangeOnRekey) {
    endpoint c(role::client, 29);
    endpoint s(role::server, 30);
    handshake(c, s);
    std::array<std::byte, 32> other{};
    other[5] = std::byte{7};
    *s.host = ed25519_private::from_seed(other).value();
    ASSERT_TRUE(c.t->rekey(c.out, c.now));
    pump(c, s);
    ASSERT_TRUE(c.failed);
    EXPECT_EQ(c.err.code, errc::ssh_host_key);
}

// ---- transport messages ----------------------------------------------------------------------

TEST(SshTransport, DisconnectCarriesReasonAndText) {
    endpoint c(role::client, 31);
    endpoint s(role::server, 32);
    handshake(c, s);
    c.t->disconnect(disconnect_reason::by_application, "bye now", c.out);
    EXPECT_TRUE(c.t->closed());
    EXPECT_EQ(c.t->send(app_payload(94, 1, 1), c.out).code(), errc::closed);
    s.feed(flatten(c.out));
    auto d = last(s, event_type::disconnected);
    ASSERT_TRUE(d);
    EXPECT_EQ(d->reason, disconnect_reason::by_application);
    EXPECT_EQ(d->text, "bye now");
    EXPECT_TRUE(s.t->closed());
    std::vector<std::byte> more(10);
    mut_bytes in(more);
    EXPECT_EQ(s.t->feed(in, s.out, 0).code(), errc::closed);
}

TEST(SshTransport, DebugIgnoreAndUnimplemented) {
    endpoint c(role::client, 33);
    endpoint s(role::server, 34);
    handshake(c, s);
    ASSERT_TRUE(c.t->send_debug("hello there", true, c.out));
    ASSERT_TRUE(c.t->send_ignore(as_bytes(std::string_view("padding")), c.out));
    std::uint32_t seq = c.t->send_seq() + 1;  // after the app message below
    ASSERT_TRUE(c.t->send(app_payload(94, 3, 3), c.out));
    // An unknown transport-range message: the server answers UNIMPLEMENTED with its seq.
    std::vector<std::byte> unknown = {std::byte{15}, std::byte{1}};
    ASSERT_TRUE(transport_test_access::write_raw(*c.t, unknown, c.out));
    pump(c, s);
    ASSERT_FALSE(s.failed);
    auto d = last(s, event_type::debug);
    ASSERT_TRUE(d);
    EXPECT_EQ(d->text, "hello there");
    EXPECT_EQ(s.messages().size(), 1u);  // IGNORE produced no event
    auto u = last(c, event_type::unimplemented);
    ASSERT_TRUE(u);
    EXPECT_EQ(u->seq, seq);
}

TEST(SshTransport, CorruptedCiphertextEndsWithMacError) {
    for (const auto& k : kCombos) {
        SCOPED_TRACE(std::string(k.cipher) + " " + k.mac);
        endpoint c(role::client, 35, cfg_with(k.cipher, k.mac));
        endpoint s(role::server, 36);
        handshake(c, s);
        ASSERT_TRUE(c.t->send(app_payload(94, 200, 1), c.out));
        auto w = flatten(c.out);
        w[w.size() - 20] ^= std::byte{0x01};  // inside the payload or the tag
        s.feed(w);
        ASSERT_TRUE(s.failed);
        EXPECT_EQ(s.err.code, errc::ssh_mac);
        EXPECT_EQ(s.t->close_reason(), disconnect_reason::mac_error);
        c.feed(flatten(s.out));
        auto d = last(c, event_type::disconnected);
        ASSERT_TRUE(d);
        EXPECT_EQ(d->reason, disconnect_reason::mac_error);
    }
}

TEST(SshTransport, OversizedPacketEndsWithProtocolError) {
    transport_config sc;
    sc.limits.packet.max_packet = 35000;
    transport_config cc;
    cc.limits.packet.max_packet = 1 << 20;
    endpoint c(role::client, 37, cc);
    endpoint s(role::server, 38, sc);
    handshake(c, s);
    ASSERT_TRUE(c.t->send(app_payload(94, 100000, 1), c.out));
    s.feed(flatten(c.out));
    ASSERT_TRUE(s.failed);
    EXPECT_EQ(s.err.code, errc::limit_exceeded);
    EXPECT_EQ(s.t->close_reason(), disconnect_reason::protocol_error);
}

TEST(SshTransport, OutOfOrderMessagesAreProtocolErrors) {
    // Upper-layer message before the handshake (non-strict, so not caught as a strict violation).
    {
        endpoint c(role::client, 39, cfg_with("", "", false));
        endpoint s(role::server, 40);
        c.start();
        s.start();
        EXPECT_EQ(c.t->send(app_payload(94, 1, 1), c.out).code(), errc::invalid_argument);
        auto [ver, rest] = split_version(flatten(c.out));
        s.feed(cat(cat(ver, rest), plain_packet(app_payload(50, 10, 1))));
        ASSERT_TRUE(s.failed);
        EXPECT_EQ(s.err.code, errc::ssh_protocol);
    }
    // NEWKEYS out of the blue.
    {
        endpoint c(role::client, 41);
        endpoint s(role::server, 42);
        handshake(c, s);
        std::vector<std::byte> nk = {std::byte{msg::newkeys}};
        ASSERT_TRUE(transport_test_access::write_raw(*c.t, nk, c.out));
        pump(c, s);
        ASSERT_TRUE(s.failed);
        EXPECT_EQ(s.err.code, errc::ssh_protocol);
    }
    // An ECDH reply sent to a server.
    {
        endpoint c(role::client, 43);
        endpoint s(role::server, 44);
        handshake(c, s);
        std::vector<std::byte> r = {std::byte{msg::kex_ecdh_reply}, std::byte{0}};
        ASSERT_TRUE(transport_test_access::write_raw(*c.t, r, c.out));
        pump(c, s);
        ASSERT_TRUE(s.failed);
        EXPECT_EQ(s.err.code, errc::ssh_protocol);
    }
    // Upper-layer data after the peer's KEXINIT and before its NEWKEYS (RFC 4253 §7.1).
    {
        endpoint c(role::client, 45);
        endpoint s(role::server, 46);
        handshake(c, s);
        ASSERT_TRUE(c.t->rekey(c.out, c.now));
        ASSERT_TRUE(transport_test_access::write_raw(*c.t, app_payload(94, 5, 5), c.out));
        pump(c, s);
        ASSERT_TRUE(s.failed);
        EXPECT_EQ(s.err.code, errc::ssh_protocol);
    }
    // A second KEXINIT inside one exchange.
    {
        endpoint c(role::client, 47);
        endpoint s(role::server, 48);
        c.start();
        s.start();
        auto w = flatten(c.out);
        auto [ver, rest] = split_version(w);
        s.feed(cat(cat(ver, rest), rest));
        ASSERT_TRUE(s.failed);
        EXPECT_EQ(s.err.code, errc::ssh_protocol);
    }
}

TEST(SshTransport, WrongKexGuessIsSkippedOnce) {
    endpoint s(role::server, 49);
    s.start();
    kexinit k;
    k.kex = "unknown-kex@example.com,curve25519-sha256";
    k.host_key = "ssh-ed25519";
    k.enc_c2s = k.enc_s2c = "aes256-gcm@openssh.com";
    k.mac_c2s = k.mac_s2c = "hmac-sha2-256";
    k.comp_c2s = k.comp_s2c = "none";
    k.first_kex_follows = true;
    std::vector<std::byte> garbage = {std::byte{msg::kex_ecdh_init}, std::byte{9}};
    auto v = as_bytes(std::string_view("SSH-2.0-guesser\r\n"));
    std::vector<std::byte> w(v.begin(), v.end());
    w = cat(w, plain_packet(encode_kexinit(k)));
    w = cat(w, plain_packet(garbage));
    s.feed(w);
    EXPECT_FALSE(s.failed) << s.err.detail;  // the guessed packet was ignored
    s.feed(plain_packet(garbage));
    ASSERT_TRUE(s.failed);  // the next one is parsed (and is malformed)
    EXPECT_EQ(s.err.code, errc::malformed);
}

TEST(SshTransport, NoCommonAlgorithmFailsTheKex) {
    endpoint c(role::client, 51, cfg_with("aes128-ctr", "hmac-sha2-512"));
    endpoint s(role::server, 52, cfg_with("aes256-gcm@openssh.com,aes128-ctr", "hmac-sha2-256"));
    c.start();
    s.start();
    pump(c, s);
    ASSERT_TRUE(c.failed);
    EXPECT_EQ(c.err.code, errc::ssh_kex);
    EXPECT_EQ(c.t->close_reason(), disconnect_reason::key_exchange_failed);
}

TEST(SshTransport, VersionMismatch) {
    endpoint s(role::server, 53);
    s.start();
    auto v = as_bytes(std::string_view("SSH-1.5-ancient\r\n"));
    s.feed(std::vector<std::byte>(v.begin(), v.end()));
    ASSERT_TRUE(s.failed);
    EXPECT_EQ(s.err.code, errc::ssh_version);
    EXPECT_EQ(s.t->close_reason(), disconnect_reason::protocol_version_not_supported);
}

TEST(SshTransport, ConfigurationIsValidated) {
    counting_rng r;
    buffer_chain out;
    {
        transport_config c;
        c.self = role::server;
        c.random = &r;
        transport t(c);
        EXPECT_EQ(t.start(out, 0).code(), errc::invalid_argument);  // no host key
    }
    {
        transport_config c;
        c.random = &r;
        transport t(c);
        EXPECT_EQ(t.start(out, 0).code(), errc::invalid_argument);  // no verifier
    }
    pinned_host_keys v;
    for (auto bad : {std::string("aes256-cbc"), std::string(""), std::string("aes256-ctr,,x")}) {
        transport_config c;
        c.random = &r;
        c.verifier = &v;
        c.ciphers = bad;
        transport t(c);
        EXPECT_EQ(t.start(out, 0).code(), errc::invalid_argument) << bad;
    }
    {
        transport_config c;
        c.random = &r;
        c.verifier = &v;
        c.version = "SSH-2.0-";
        transport t(c);
        EXPECT_EQ(t.start(out, 0).code(), errc::invalid_argument);
    }
    EXPECT_TRUE(out.empty());
}

}  // namespace
