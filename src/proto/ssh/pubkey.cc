#include "proto/ssh/pubkey.hh"

#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/ecc.h>
#include <wolfssl/wolfcrypt/hash.h>
#include <wolfssl/wolfcrypt/rsa.h>
#include <wolfssl/wolfcrypt/signature.h>

#include <cstring>
#include <vector>

#include "proto/ssh/crypto.hh"
#include "proto/ssh/hostkey.hh"
#include "proto/ssh/wire.hh"

namespace ferry::ssh {

namespace {

inline const byte* u8p(const std::byte* p) noexcept { return reinterpret_cast<const byte*>(p); }
const byte kEmpty[1] = {0};
inline const byte* msg_ptr(bytes b) noexcept { return b.empty() ? kEmpty : u8p(b.data()); }

// Strips the sign byte of a positive mpint; fails on negative values.
result<bytes> positive(bytes mp) {
    if (mp.empty()) return fail(errc::ssh_auth, "zero integer");
    if (std::to_integer<unsigned>(mp[0]) & 0x80) return fail(errc::ssh_auth, "negative integer");
    while (!mp.empty() && mp[0] == std::byte{0}) mp = mp.subspan(1);
    return mp;
}

struct ecdsa_parts {
    bytes q;
};
result<ecdsa_parts> parse_ecdsa_blob(bytes blob) {
    reader r(blob);
    FERRY_TRY(t, r.text());
    if (*t != "ecdsa-sha2-nistp256") return fail(errc::ssh_auth, "not an ecdsa-sha2-nistp256 key");
    FERRY_TRY(curve, r.text());
    if (*curve != "nistp256") return fail(errc::ssh_auth, "curve is not nistp256");
    FERRY_TRY(q, r.string());
    FERRY_TRY(end, r.expect_end());
    if (q->size() != 65 || (*q)[0] != std::byte{4}) return fail(errc::ssh_auth, "bad P-256 point");
    return ecdsa_parts{*q};
}

struct rsa_parts {
    bytes e, n;
};
result<rsa_parts> parse_rsa_blob(bytes blob) {
    reader r(blob);
    FERRY_TRY(t, r.text());
    if (*t != "ssh-rsa") return fail(errc::ssh_auth, "not an ssh-rsa key");
    FERRY_TRY(e, r.mpint());
    FERRY_TRY(n, r.mpint());
    FERRY_TRY(end, r.expect_end());
    FERRY_TRY(pe, positive(*e));
    FERRY_TRY(pn, positive(*n));
    std::size_t bits = pn->size() * 8;
    if (!pn->empty()) {
        for (unsigned top = std::to_integer<unsigned>((*pn)[0]); !(top & 0x80); top <<= 1) --bits;
    }
    if (bits < 2048 || bits > 4096) return fail(errc::ssh_auth, "RSA key size not in [2048, 4096]");
    if (pe->empty() || pe->size() > 8) return fail(errc::ssh_auth, "bad RSA exponent");
    return rsa_parts{*pe, *pn};
}

// The signature blob: string name || string sig; `name` must be `want`.
result<bytes> sig_body(bytes sig_blob, std::string_view want) {
    reader r(sig_blob);
    FERRY_TRY(n, r.text());
    if (*n != want) return fail(errc::ssh_auth, "signature algorithm mismatch");
    FERRY_TRY(s, r.string());
    FERRY_TRY(end, r.expect_end());
    return *s;
}

status verify_ecdsa(bytes key_blob, bytes sig_blob, bytes data) {
    FERRY_TRY(k, parse_ecdsa_blob(key_blob));
    FERRY_TRY(body, sig_body(sig_blob, "ecdsa-sha2-nistp256"));
    reader rs(*body);
    FERRY_TRY(r, rs.mpint());
    FERRY_TRY(s, rs.mpint());
    FERRY_TRY(end, rs.expect_end());
    FERRY_TRY(pr, positive(*r));
    FERRY_TRY(ps, positive(*s));
    if (pr->size() > 32 || ps->size() > 32) return fail(errc::ssh_auth, "ecdsa r/s too long");
    auto h = sha256(data);
    byte der[80];
    word32 der_len = sizeof der;
    if (wc_ecc_rs_raw_to_sig(u8p(pr->data()), word32(pr->size()), u8p(ps->data()),
                             word32(ps->size()), der, &der_len) != 0) {
        return fail(errc::ssh_auth, "ecdsa signature encoding");
    }
    ecc_key key;
    if (wc_ecc_init(&key) != 0) return fail(errc::crypto, "ecc init");
    int res = 0;
    bool ok = wc_ecc_import_x963_ex(u8p(k->q.data()), 65, &key, ECC_SECP256R1) == 0 &&
              wc_ecc_verify_hash(der, der_len, reinterpret_cast<const byte*>(h.data()), 32, &res,
                                 &key) == 0 &&
              res == 1;
    wc_ecc_free(&key);
    if (!ok) return fail(errc::ssh_auth, "bad ecdsa signature");
    return {};
}

status verify_rsa(user_key_alg a, bytes key_blob, bytes sig_blob, bytes data) {
    FERRY_TRY(k, parse_rsa_blob(key_blob));
    FERRY_TRY(body, sig_body(sig_blob, name(a)));
    std::size_t mod = k->n.size();
    // RFC 8332 §3: the signature is as long as the modulus; tolerate missing leading zeros.
    if (body->size() > mod || body->empty()) return fail(errc::ssh_auth, "rsa signature length");
    std::vector<byte> sig(mod, 0);
    std::memcpy(sig.data() + (mod - body->size()), body->data(), body->size());
    RsaKey key;
    if (wc_InitRsaKey(&key, nullptr) != 0) return fail(errc::crypto, "rsa init");
    bool ok = wc_RsaPublicKeyDecodeRaw(u8p(k->n.data()), word32(mod), u8p(k->e.data()),
                                       word32(k->e.size()), &key) == 0 &&
              wc_SignatureVerify(a == user_key_alg::rsa_sha2_256 ? WC_HASH_TYPE_SHA256
                                                                 : WC_HASH_TYPE_SHA512,
                                 WC_SIGNATURE_TYPE_RSA_W_ENC, msg_ptr(data),
                                 word32(data.size()), sig.data(), word32(sig.size()), &key,
                                 sizeof key) == 0;
    wc_FreeRsaKey(&key);
    if (!ok) return fail(errc::ssh_auth, "bad rsa signature");
    return {};
}

}  // namespace

std::optional<user_key_alg> user_key_alg_by_name(std::string_view n) noexcept {
    if (n == "ssh-ed25519") return user_key_alg::ed25519;
    if (n == "ecdsa-sha2-nistp256") return user_key_alg::ecdsa_p256;
    if (n == "rsa-sha2-256") return user_key_alg::rsa_sha2_256;
    if (n == "rsa-sha2-512") return user_key_alg::rsa_sha2_512;
    return std::nullopt;
}

std::string_view name(user_key_alg a) noexcept {
    switch (a) {
    case user_key_alg::ed25519: return "ssh-ed25519";
    case user_key_alg::ecdsa_p256: return "ecdsa-sha2-nistp256";
    case user_key_alg::rsa_sha2_256: return "rsa-sha2-256";
    case user_key_alg::rsa_sha2_512: return "rsa-sha2-512";
    }
    return "";
}

bool key_blob_matches(user_key_alg a, bytes key_blob) noexcept {
    switch (a) {
    case user_key_alg::ed25519: return bool(parse_ed25519_key_blob(key_blob));
    case user_key_alg::ecdsa_p256: return bool(parse_ecdsa_blob(key_blob));
    case user_key_alg::rsa_sha2_256:
    case user_key_alg::rsa_sha2_512: return bool(parse_rsa_blob(key_blob));
    }
    return false;
}

status verify_user_signature(user_key_alg a, bytes key_blob, bytes sig_blob, bytes data) {
    switch (a) {
    case user_key_alg::ed25519: {
        auto s = verify_ed25519_signature_blob(key_blob, sig_blob, data);
        if (!s) return fail(errc::ssh_auth, s.err().detail);
        return {};
    }
    case user_key_alg::ecdsa_p256: return verify_ecdsa(key_blob, sig_blob, data);
    case user_key_alg::rsa_sha2_256:
    case user_key_alg::rsa_sha2_512: return verify_rsa(a, key_blob, sig_blob, data);
    }
    return fail(errc::ssh_auth, "unsupported key algorithm");
}

}  // namespace ferry::ssh
