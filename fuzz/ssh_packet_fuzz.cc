// Fuzz target `ssh_packet`: the SSH packet layer and the transport state machine of each role,
// driven by arbitrary peer bytes. Input layout:
//
//   byte 0: mode (low bits, modulo 5); in modes 3 and 4 the top bit turns user authentication on
//     0  packet layer alone: byte 1 picks a cipher suite (fixed keys); the rest is wire bytes
//     1  server transport fed raw peer bytes (version line, plaintext packets, ...)
//     2  client transport fed raw peer bytes
//     3  server after a real in-memory handshake: each chunk is a payload that the (real)
//        client seals and sends, so the fuzzer reaches the encrypted state machine: rekeys,
//        out-of-order KEX messages, DISCONNECT, EXT_INFO; with the top bit of byte 0 set the
//        victim routes messages to its auth_server until authenticated
//     4  the same against a client (with an auth_client)
//   then chunks: the first byte of each chunk gives its length (STYLE 12; 0xff: the next two
//   bytes give it, big-endian), so every split point of the streaming parsers is exercised. In
//   modes 3 and 4 an empty chunk makes the peer start a real rekey instead (at most 3 per input).
//
// Seeds: fuzz/ssh_packet_seeds.cc (target `ssh_packet_seeds`) writes fuzz/corpus/ssh_packet
// from real handshakes run with this file's generator and harness.
//
// Randomness comes from a deterministic generator defined here (fuzz/ and tests/ only; the
// library has none) so that a crash replays exactly.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <vector>

#include "proto/ssh/auth.hh"
#include "proto/ssh/cipher.hh"
#include "proto/ssh/packet.hh"
#include "proto/ssh/transport.hh"
#include "ssh_fuzz_common.hh"

namespace ferry::ssh {
struct transport_test_access {
    static status write_raw(transport& t, bytes payload, buffer_chain& out) {
        return t.write_now(payload, {}, out);
    }
};
}  // namespace ferry::ssh

using namespace ferry;
using namespace ferry::ssh;

namespace ssh_fuzz {

using ssh_fuzz_common::fuzz_rng;

using ssh_fuzz_common::chunks;

const std::byte kHostSeed[32] = {std::byte{0x40}, std::byte{0x41}, std::byte{0x42}};

struct fuzz_policy : auth_policy {
    bool check_password(std::string_view u, std::string_view p) override {
        return u == "fuzz" && p == "pw";
    }
    bool check_publickey(std::string_view, user_key_alg, bytes blob) override {
        return !blob.empty() && blob[blob.size() - 1] == std::byte{0};
    }
};

struct side {
    fuzz_rng rng;
    fuzz_policy policy;
    std::optional<ed25519_private> user_key;
    std::optional<auth_server> as;
    std::optional<auth_client> ac;
    std::optional<ed25519_private> host;
    pinned_host_keys verifier{pinned_host_keys::policy::trust_on_first_use};
    std::optional<transport> t;
    buffer_chain out;
    bool dead = false;
    millis now = 0;

    side(role r, std::uint64_t seed) : rng(seed) {
        transport_config cfg;
        cfg.self = r;
        cfg.random = &rng;
        if (r == role::server) {
            host.emplace(ed25519_private::from_seed(bytes(kHostSeed, 32)).value());
            cfg.host_key = &*host;
        } else {
            cfg.verifier = &verifier;
        }
        cfg.limits.rekey_bytes = 64 * 1024;  // reach byte-triggered rekeys
        t.emplace(std::move(cfg));
        dead = !t->start(out, now);
        t->allow_automatic_rekey();
    }
    // The victim also runs user authentication.
    void with_auth() {
        if (t->self() == role::server) {
            auth_server_config c;
            c.policy = &policy;
            c.banner = "fuzz";
            c.limits.failure_delay = 500;
            as.emplace(*t, c);
        } else {
            user_key.emplace(ed25519_private::from_seed(bytes(kHostSeed, 32)).value());
            auth_client_config c;
            c.user = "fuzz";
            c.password = "pw";
            c.key = &*user_key;
            ac.emplace(*t, c);
        }
    }
    // Feeds bytes; answers upper-layer messages with a small reply so both directions move.
    void feed(std::vector<std::byte> wire) {
        mut_bytes in(wire);
        now += 1000;
        if (as && !as->tick(out, now)) dead = true;
        while (!dead) {
            auto ev = t->feed(in, out, now);
            if (!ev) {
                dead = true;
                break;
            }
            if (ev->type == event_type::need_more) break;
            if (ev->type == event_type::handshake_done && ac && !ac->start(out)) dead = true;
            if (ev->type == event_type::message && as && !as->authenticated()) {
                if (!as->handle(ev->payload, out, now)) dead = true;
                continue;
            }
            if (ev->type == event_type::message && ac && !ac->authenticated()) {
                auto a = ac->handle(ev->payload, out);
                if (!a || a->type == auth_event_type::failed) dead = true;
                continue;
            }
            if (ev->type == event_type::message && ev->payload.size() > 1 &&
                std::to_integer<std::uint8_t>(ev->payload[0]) >= msg::connection_first) {
                std::byte reply[2] = {std::byte{98}, ev->payload[1]};
                (void)t->send(reply, out);
            }
            if (ev->type == event_type::disconnected) dead = true;
        }
        if (!dead) (void)t->tick(out, now);
    }
    std::vector<std::byte> take() {
        std::string s = out.to_string();
        out.clear();
        return {reinterpret_cast<const std::byte*>(s.data()),
                reinterpret_cast<const std::byte*>(s.data()) + s.size()};
    }
};

void fuzz_packet_layer(std::uint8_t suite, chunks& in) {
    static const cipher_id ciphers[] = {cipher_id::none,       cipher_id::aes128_gcm,
                                        cipher_id::aes256_gcm, cipher_id::chacha20_poly1305,
                                        cipher_id::aes128_ctr, cipher_id::aes256_ctr,
                                        cipher_id::aes256_ctr, cipher_id::aes128_ctr};
    static const mac_id macs[] = {mac_id::none,          mac_id::none,
                                  mac_id::none,          mac_id::none,
                                  mac_id::hmac_sha2_256, mac_id::hmac_sha2_512,
                                  mac_id::hmac_sha2_256_etm, mac_id::hmac_sha2_512_etm};
    suite %= 8;
    fuzz_rng r(1);
    packet_limits lim;
    lim.max_packet = 64 * 1024;
    std::vector<std::byte> key(info(ciphers[suite]).key_len, std::byte{7});
    std::vector<std::byte> iv(16, std::byte{9});
    std::vector<std::byte> mk(info(macs[suite]).key_len, std::byte{11});
    // Both directions of a pair under the same fixed keys (suite 0: no cipher).
    auto keyed = [&](packet_layer& recv, packet_layer& send) {
        if (suite == 0) return;
        auto c = make_cipher(ciphers[suite], macs[suite], key, iv, mk);
        auto c2 = make_cipher(ciphers[suite], macs[suite], key, iv, mk);
        if (!c || !c2) __builtin_trap();
        recv.set_recv_cipher(std::move(*c));
        send.set_send_cipher(std::move(*c2));
    };
    packet_layer rx(lim, r), tx(lim, r);
    keyed(rx, tx);
    buffer_chain out;
    // Every chunk is also sealed as a payload (any size up to the limit) by a second pair and
    // opened again: the cipher's bulk paths (AVX-512 ChaCha20 from 1 KiB, the wolfCrypt tail,
    // AES-GCM sealing a body from its own buffer) meet arbitrary lengths under ASan, and must
    // give the payload back.
    packet_layer seal_tx(lim, r), seal_rx(lim, r);
    keyed(seal_rx, seal_tx);
    while (!in.done()) {
        auto c = in.next();
        if (!c.empty() && c.size() <= seal_tx.max_payload()) {
            // Split into head and body where the first byte says: the body is sealed from its
            // own buffer (packet_cipher::seal_from).
            const std::size_t k = std::to_integer<std::size_t>(c[0]) * c.size() / 256;
            buffer_chain sealed;
            if (!seal_tx.write(bytes(c).first(k), bytes(c).subspan(k), sealed)) __builtin_trap();
            std::vector<std::byte> wire(sealed.size());
            sealed.peek(mut_bytes(wire));
            mut_bytes w(wire);
            auto p = seal_rx.read(w);
            if (!p || !*p || (*p)->payload.size() != c.size() ||
                std::memcmp((*p)->payload.data(), c.data(), c.size()) != 0 || !w.empty()) {
                __builtin_trap();
            }
        }
        mut_bytes m(c);
        for (;;) {
            auto p = rx.read(m);
            if (!p) return;
            if (!*p) break;
            // Round-trip the payload through the sealing side too.
            if (!tx.write((*p)->payload, out)) __builtin_trap();
            out.clear();
        }
    }
}

void fuzz_raw(role victim, chunks& in) {
    side s(victim, 2);
    while (!in.done() && !s.dead) {
        s.feed(in.next());
        s.out.clear();
    }
}

void fuzz_established(role victim, bool auth, chunks& in) {
    side v(victim, 3);
    if (auth) v.with_auth();
    side peer(victim == role::server ? role::client : role::server, 4);
    for (int i = 0; i < 8 && !v.dead && !peer.dead; ++i) {
        v.feed(peer.take());
        peer.feed(v.take());
    }
    if (v.dead || peer.dead || !v.t->established()) __builtin_trap();  // a clean handshake
    int rekeys = 0;
    while (!in.done() && !v.dead && !peer.dead) {
        auto payload = in.next();
        if (payload.empty()) {
            // Key exchanges are the slow part of an input: a few per input are enough.
            if (++rekeys <= 3 && !peer.t->in_kex() && !peer.t->rekey(peer.out, peer.now)) return;
        } else if (!transport_test_access::write_raw(*peer.t, payload, peer.out)) {
            return;
        }
        // Deliver, and let the real peer answer (rekeys need both sides).
        for (int i = 0; i < 4 && !v.dead && !peer.dead; ++i) {
            v.feed(peer.take());
            peer.feed(v.take());
        }
    }
}

}  // namespace ssh_fuzz

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 2) return 0;
    using namespace ssh_fuzz;
    std::uint8_t mode = data[0] % 5;
    if (mode == 0) {
        chunks in(data + 2, size - 2);
        fuzz_packet_layer(data[1], in);
        return 0;
    }
    chunks in(data + 1, size - 1);
    switch (mode) {
    case 1: fuzz_raw(role::server, in); break;
    case 2: fuzz_raw(role::client, in); break;
    case 3: fuzz_established(role::server, data[0] & 0x80, in); break;
    case 4: fuzz_established(role::client, data[0] & 0x80, in); break;
    }
    return 0;
}
