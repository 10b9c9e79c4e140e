// Writes the seed corpus of the `ssh_packet` fuzz target (fuzz/corpus/ssh_packet): real wire
// bytes from handshakes run with the target's own deterministic harness, so that seeds for the
// raw modes carry valid KEX messages (signatures included) up to NEWKEYS.
//   ssh_packet_seeds DIR
#include <fstream>
#include <string>

#include "ssh_packet_fuzz.cc"

using namespace ssh_fuzz;

namespace {

std::string g_dir;
int g_n = 0;

void put_chunk(std::string& s, bytes b) {
    if (b.size() < 0xff) {
        s += char(b.size());
    } else {
        s += char(0xff);
        s += char(b.size() >> 8);
        s += char(b.size() & 0xff);
    }
    s.append(reinterpret_cast<const char*>(b.data()), b.size());
}

// Splits `wire` into chunks of `step` bytes.
std::string chunked(bytes wire, std::size_t step) {
    std::string s;
    while (!wire.empty()) {
        std::size_t k = std::min(step, wire.size());
        put_chunk(s, wire.first(k));
        wire = wire.subspan(k);
    }
    return s;
}

void write_seed(const std::string& name, const std::string& body) {
    std::ofstream(g_dir + "/" + std::to_string(g_n++) + "-" + name, std::ios::binary) << body;
}

std::vector<std::byte> cat(std::vector<std::byte> a, const std::vector<std::byte>& b) {
    a.insert(a.end(), b.begin(), b.end());
    return a;
}

// Runs a handshake between the harness's victim (same seed as fuzz_raw) and a real peer, and
// returns everything the peer sent to the victim.
std::vector<std::byte> peer_flight(role victim) {
    side v(victim, 2);
    side peer(victim == role::server ? role::client : role::server, 5);
    std::vector<std::byte> sent;
    for (int i = 0; i < 8; ++i) {
        auto p = peer.take();
        sent = cat(sent, p);
        v.feed(p);
        peer.feed(v.take());
    }
    if (!v.t->established()) __builtin_trap();
    // One encrypted message after the handshake (its MAC only checks with these exact keys).
    std::byte app[4] = {std::byte{94}, std::byte{0}, std::byte{0}, std::byte{1}};
    (void)peer.t->send(app, peer.out);
    return cat(sent, peer.take());
}

std::vector<std::byte> kexinit_payload() {
    kexinit k;
    k.kex = "curve25519-sha256";
    k.host_key = "ssh-ed25519";
    k.enc_c2s = k.enc_s2c = "aes256-gcm@openssh.com";
    k.mac_c2s = k.mac_s2c = "hmac-sha2-256";
    k.comp_c2s = k.comp_s2c = "none";
    return encode_kexinit(k);
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 2) return 2;
    g_dir = argv[1];

    // Mode 0: sealed packets for each suite, whole and in small chunks.
    for (std::uint8_t suite = 0; suite < 8; ++suite) {
        static const cipher_id ciphers[] = {cipher_id::none,       cipher_id::aes128_gcm,
                                            cipher_id::aes256_gcm, cipher_id::chacha20_poly1305,
                                            cipher_id::aes128_ctr, cipher_id::aes256_ctr,
                                            cipher_id::aes256_ctr, cipher_id::aes128_ctr};
        static const mac_id macs[] = {mac_id::none,          mac_id::none,
                                      mac_id::none,          mac_id::none,
                                      mac_id::hmac_sha2_256, mac_id::hmac_sha2_512,
                                      mac_id::hmac_sha2_256_etm, mac_id::hmac_sha2_512_etm};
        fuzz_rng r(1);
        packet_limits lim;
        lim.max_packet = 64 * 1024;
        packet_layer tx(lim, r);
        std::vector<std::byte> key(info(ciphers[suite]).key_len, std::byte{7});
        std::vector<std::byte> iv(16, std::byte{9});
        std::vector<std::byte> mk(info(macs[suite]).key_len, std::byte{11});
        if (suite != 0) tx.set_send_cipher(make_cipher(ciphers[suite], macs[suite], key, iv, mk).value());
        buffer_chain out;
        // 5000: past 1 KiB, so ChaCha20's AVX-512 path and the wolfCrypt tail are in the seeds.
        for (std::size_t n : {1u, 40u, 700u, 5000u}) {
            std::vector<std::byte> p(n, std::byte{0x61});
            p[0] = std::byte{94};
            (void)tx.write(p, out);
        }
        std::string w = out.to_string();
        for (std::size_t step : {7u, 1000u, 3000u}) {
            write_seed("packets-suite" + std::to_string(suite),
                       std::string("\x00", 1) + char(suite) + chunked(as_bytes(w), step));
        }
    }

    // Modes 1 and 2: a real peer's flight to the victim, in two chunkings.
    for (role victim : {role::server, role::client}) {
        auto w = peer_flight(victim);
        char mode = victim == role::server ? 1 : 2;
        write_seed(victim == role::server ? "client-flight" : "server-flight",
                   std::string(1, mode) + chunked(w, 1000));
        write_seed(victim == role::server ? "client-flight-small" : "server-flight-small",
                   std::string(1, mode) + chunked(w, 13));
        // Banner lines and a bad version.
        std::string banner = "hello\r\nworld\r\nSSH-2.0-x\r\n";
        write_seed("banner", std::string(1, mode) + chunked(as_bytes(banner), 5));
        write_seed("old-version", std::string(1, mode) + chunked(as_bytes(std::string("SSH-1.5-old\r\n")), 100));
    }

    // Modes 3 and 4: payload sequences from an established peer.
    auto b = [](std::initializer_list<int> v) {
        std::vector<std::byte> o;
        for (int x : v) o.push_back(std::byte(x));
        return o;
    };
    std::vector<std::pair<std::string, std::vector<std::vector<std::byte>>>> seqs = {
        {"ignore-debug", {b({2, 0, 0, 0, 1, 'x'}), b({4, 1, 0, 0, 0, 2, 'h', 'i', 0, 0, 0, 0})}},
        {"app-data", {b({94, 0, 0, 0, 0, 0, 0, 0, 3, 'a', 'b', 'c'}), b({80, 0, 0, 0, 0})}},
        {"service", {b({5, 0, 0, 0, 12, 's', 's', 'h', '-', 'u', 's', 'e', 'r', 'a', 'u', 't', 'h'})}},
        {"rekey", {b({94, 1}), {}, b({94, 2}), b({94, 3})}},
        {"peer-kexinit", {kexinit_payload(), b({94, 4})}},
        {"disconnect", {b({1, 0, 0, 0, 11, 0, 0, 0, 3, 'b', 'y', 'e', 0, 0, 0, 0})}},
        {"unimplemented", {b({3, 0, 0, 0, 7}), b({15})}},
        {"ext-info", {b({7, 0, 0, 0, 1, 0, 0, 0, 1, 'a', 0, 0, 0, 1, 'b'})}},
        {"stray-kex", {b({21}), b({30, 0, 0, 0, 32})}},
        {"big", {std::vector<std::byte>(3000, std::byte{94})}},
    };
    auto str = [](std::vector<std::byte>& v, std::string_view t) {
        writer(v).string(t);
    };
    // User authentication, server victim: service request, then requests.
    std::vector<std::byte> sr;
    writer(sr).u8(5).string("ssh-userauth");
    std::vector<std::byte> none, pw_bad, pw_ok, pk_query;
    writer(none).u8(50).string("fuzz").string("ssh-connection").string("none");
    writer(pw_bad).u8(50).string("fuzz").string("ssh-connection").string("password").boolean(false).string("x");
    writer(pw_ok).u8(50).string("fuzz").string("ssh-connection").string("password").boolean(false).string("pw");
    std::vector<std::byte> kb(51, std::byte{0});
    writer(pk_query).u8(50).string("fuzz").string("ssh-connection").string("publickey").boolean(false)
        .string("ssh-ed25519");
    {
        std::vector<std::byte> blob;
        writer(blob).string("ssh-ed25519").string(bytes(kb).first(32));
        writer(pk_query).string(bytes(blob));
    }
    std::vector<std::byte> chan_open = {std::byte{90}};
    str(chan_open, "session");
    writer(chan_open).u32(0).u32(1 << 20).u32(32768);
    seqs.push_back({"auth-password", {sr, none, pw_bad, pw_ok, chan_open}});
    seqs.push_back({"auth-pk-query", {sr, pk_query, pw_ok}});
    seqs.push_back({"auth-out-of-order", {none, sr, chan_open}});
    // Client victim: what a server answers.
    std::vector<std::byte> sa, fail_all, banner, ok = {std::byte{52}};
    writer(sa).u8(6).string("ssh-userauth");
    writer(fail_all).u8(51).string("publickey,password").boolean(false);
    writer(banner).u8(53).string("hello").string("");
    seqs.push_back({"auth-answers", {sa, banner, fail_all, fail_all, ok, b({94, 1})}});
    seqs.push_back({"auth-pk-ok", {sa, fail_all, b({60, 0, 0, 0, 0}), ok}});
    for (int mode : {3, 4}) {
        for (auto& [name, payloads] : seqs) {
            bool auth = name.rfind("auth", 0) == 0;
            std::string s(1, char(mode | (auth ? 0x80 : 0)));
            for (auto& p : payloads) put_chunk(s, p);
            write_seed(std::string(mode == 3 ? "srv-" : "cli-") + name, s);
        }
    }
    return 0;
}
