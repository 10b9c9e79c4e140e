#include "proto/ssh/kex.hh"

#include <cstring>

#include "proto/ssh/hostkey.hh"
#include "proto/ssh/wire.hh"

namespace ferry::ssh {

std::string_view name(kex_id k) noexcept {
    return k == kex_id::curve25519_sha256 ? "curve25519-sha256" : "curve25519-sha256@libssh.org";
}

std::vector<std::byte> encode_kexinit(const kexinit& k) {
    std::vector<std::byte> b;
    b.reserve(512);
    writer w(b);
    w.u8(msg::kexinit).raw(k.cookie);
    for (const std::string* s : {&k.kex, &k.host_key, &k.enc_c2s, &k.enc_s2c, &k.mac_c2s,
                                 &k.mac_s2c, &k.comp_c2s, &k.comp_s2c, &k.lang_c2s, &k.lang_s2c}) {
        w.string(*s);
    }
    w.boolean(k.first_kex_follows).u32(0);
    return b;
}

result<kexinit> parse_kexinit(bytes payload) {
    reader r(payload);
    FERRY_TRY(m, r.u8());
    if (*m != msg::kexinit) return fail(errc::ssh_protocol, "not a KEXINIT");
    kexinit k;
    FERRY_TRY(cookie, r.raw(16));
    std::memcpy(k.cookie.data(), cookie->data(), 16);
    for (std::string* s : {&k.kex, &k.host_key, &k.enc_c2s, &k.enc_s2c, &k.mac_c2s, &k.mac_s2c,
                           &k.comp_c2s, &k.comp_s2c, &k.lang_c2s, &k.lang_s2c}) {
        FERRY_TRY(l, r.name_list());
        s->assign(*l);
    }
    FERRY_TRY(follows, r.boolean());
    k.first_kex_follows = *follows;
    FERRY_TRY(reserved, r.u32());
    // RFC 4253 §7.1: the reserved field is 0 now, but is to be ignored if not.
    (void)reserved;
    FERRY_TRY(end, r.expect_end());
    return k;
}

namespace {

bool is_marker(std::string_view n) noexcept {
    return n == kex_strict_client || n == kex_strict_server || n == ext_info_client ||
           n == ext_info_server;
}

// First name of `client` that `server` also lists (and that is not a pseudo-algorithm).
std::string_view choose(std::string_view client, std::string_view server) noexcept {
    name_iter it(client);
    for (std::string_view n = it.next(); !n.empty(); n = it.next()) {
        if (!is_marker(n) && name_list_contains(server, n)) return n;
    }
    return {};
}

std::string_view first_real(std::string_view list) noexcept {
    name_iter it(list);
    for (std::string_view n = it.next(); !n.empty(); n = it.next()) {
        if (!is_marker(n)) return n;
    }
    return {};
}

}  // namespace

result<algorithms> negotiate(const kexinit& c, const kexinit& s, role self) {
    algorithms a;
    std::string_view kex = choose(c.kex, s.kex);
    if (kex == "curve25519-sha256") {
        a.kex = kex_id::curve25519_sha256;
    } else if (kex == "curve25519-sha256@libssh.org") {
        a.kex = kex_id::curve25519_sha256_libssh;
    } else {
        return fail(errc::ssh_kex, "no common key exchange algorithm");
    }
    std::string_view hk = choose(c.host_key, s.host_key);
    if (hk != ssh_ed25519) return fail(errc::ssh_kex, "no common host key algorithm");
    const std::string* enc[2] = {&c.enc_c2s, &c.enc_s2c};
    const std::string* senc[2] = {&s.enc_c2s, &s.enc_s2c};
    const std::string* mac[2] = {&c.mac_c2s, &c.mac_s2c};
    const std::string* smac[2] = {&s.mac_c2s, &s.mac_s2c};
    const std::string* comp[2] = {&c.comp_c2s, &c.comp_s2c};
    const std::string* scomp[2] = {&s.comp_c2s, &s.comp_s2c};
    for (int d = 0; d < 2; ++d) {
        auto e = cipher_by_name(choose(*enc[d], *senc[d]));
        if (!e) return fail(errc::ssh_kex, "no common cipher");
        a.enc[d] = *e;
        if (!info(*e).aead) {
            auto m = mac_by_name(choose(*mac[d], *smac[d]));
            if (!m) return fail(errc::ssh_kex, "no common MAC");
            a.mac[d] = *m;
        }
        if (choose(*comp[d], *scomp[d]) != "none") {
            return fail(errc::ssh_kex, "no common compression");
        }
    }
    a.strict = name_list_contains(c.kex, kex_strict_client) &&
               name_list_contains(s.kex, kex_strict_server);
    a.client_ext_info = name_list_contains(c.kex, ext_info_client);
    // RFC 4253 §7.1: a guessed packet is right only if the guesser's first kex and host key
    // algorithms are the negotiated ones.
    const kexinit& peer = self == role::client ? s : c;
    if (peer.first_kex_follows) {
        a.guess_wrong = first_real(peer.kex) != kex || first_real(peer.host_key) != hk;
    }
    return a;
}

std::array<std::byte, 32> exchange_hash(std::string_view v_c, std::string_view v_s, bytes i_c,
                                        bytes i_s, bytes k_s, bytes q_c, bytes q_s,
                                        bytes shared_secret) {
    std::vector<std::byte> b;
    b.reserve(v_c.size() + v_s.size() + i_c.size() + i_s.size() + k_s.size() + 128);
    writer w(b);
    w.string(v_c).string(v_s).string(i_c).string(i_s).string(k_s).string(q_c).string(q_s);
    w.mpint_unsigned(shared_secret);
    auto h = sha256(b);
    wipe(mut_bytes(b));
    return h;
}

void derive_key(hash_alg h, bytes k_mpint, bytes xh, char letter, bytes session_id,
                mut_bytes out) {
    if (out.empty()) return;
    hasher hs(h);
    std::size_t dl = digest_size(h);
    std::array<std::byte, 64> d{};
    std::byte l{static_cast<unsigned char>(letter)};
    hs.update(k_mpint);
    hs.update(xh);
    hs.update(bytes(&l, 1));
    hs.update(session_id);
    hs.final(d);
    std::size_t have = std::min(dl, out.size());
    std::memcpy(out.data(), d.data(), have);
    // K_{n+1} = HASH(K || H || K_1 || ... || K_n): everything produced so far.
    while (have < out.size()) {
        hs.update(k_mpint);
        hs.update(xh);
        hs.update(bytes(out.data(), have));
        hs.final(d);
        std::size_t k = std::min(dl, out.size() - have);
        std::memcpy(out.data() + have, d.data(), k);
        have += k;
    }
    wipe(d);
}

session_keys::~session_keys() {
    for (int d = 0; d < 2; ++d) {
        wipe(mut_bytes(iv[d]));
        wipe(mut_bytes(key[d]));
        wipe(mut_bytes(mac[d]));
    }
}

session_keys derive_session_keys(const algorithms& a, bytes shared_secret, bytes xh,
                                 bytes session_id) {
    std::vector<std::byte> k;
    writer(k).mpint_unsigned(shared_secret);
    session_keys s;
    static constexpr char letters[3][2] = {{'A', 'B'}, {'C', 'D'}, {'E', 'F'}};
    for (int d = 0; d < 2; ++d) {
        const cipher_info& ci = info(a.enc[d]);
        s.iv[d].resize(ci.iv_len);
        s.key[d].resize(ci.key_len);
        s.mac[d].resize(ci.aead ? 0 : info(a.mac[d]).key_len);
        derive_key(hash_alg::sha256, k, xh, letters[0][d], session_id, s.iv[d]);
        derive_key(hash_alg::sha256, k, xh, letters[1][d], session_id, s.key[d]);
        derive_key(hash_alg::sha256, k, xh, letters[2][d], session_id, s.mac[d]);
    }
    wipe(mut_bytes(k));
    return s;
}

}  // namespace ferry::ssh
