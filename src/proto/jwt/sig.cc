#include "proto/jwt/sig.hh"

#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/ecc.h>
#include <wolfssl/wolfcrypt/ed25519.h>
#include <wolfssl/wolfcrypt/error-crypt.h>
#include <wolfssl/wolfcrypt/hmac.h>
#include <wolfssl/wolfcrypt/rsa.h>
#include <wolfssl/wolfcrypt/sha256.h>

#include <string.h>

#include <cstdint>
#include <cstring>

namespace ferry::jwt::detail {

namespace {

inline const byte* u8p(const std::byte* p) noexcept { return reinterpret_cast<const byte*>(p); }
inline byte* u8p(std::byte* p) noexcept { return reinterpret_cast<byte*>(p); }
const byte kEmpty[1] = {0};
inline const byte* ptr_or_empty(bytes b) noexcept { return b.empty() ? kEmpty : u8p(b.data()); }

// DER DigestInfo prefix for SHA-256 (RFC 8017 §9.2, note 1): the exact bytes that must precede
// the hash in a PKCS#1 v1.5 signature block. Comparing the whole encoding (instead of parsing the
// ASN.1) rules out the lenient-parser forgeries (Bleichenbacher 2006 and its descendants).
constexpr std::uint8_t kSha256DigestInfo[19] = {0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60,
                                                0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                                                0x01, 0x05, 0x00, 0x04, 0x20};

// Order n of the P-256 group (FIPS 186-4 D.1.2.3), big-endian.
constexpr std::uint8_t kP256Order[32] = {
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51};

// Order L of the Ed25519 base point (RFC 8032 §5.1), little-endian like S.
constexpr std::uint8_t kEd25519L[32] = {
    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10};

// a < b for equal-length big-endian integers. Public values only (not constant-time).
bool less_be(const std::byte* a, const std::uint8_t* b, std::size_t n) noexcept {
    for (std::size_t i = 0; i < n; ++i) {
        auto x = std::to_integer<std::uint8_t>(a[i]);
        if (x != b[i]) return x < b[i];
    }
    return false;
}
bool less_be(const std::byte* a, const std::byte* b, std::size_t n) noexcept {
    return less_be(a, reinterpret_cast<const std::uint8_t*>(b), n);
}
bool less_le(const std::byte* a, const std::uint8_t* b, std::size_t n) noexcept {
    for (std::size_t i = n; i-- > 0;) {
        auto x = std::to_integer<std::uint8_t>(a[i]);
        if (x != b[i]) return x < b[i];
    }
    return false;
}
bool all_zero(bytes b) noexcept {
    for (std::byte x : b)
        if (x != std::byte{0}) return false;
    return true;
}

status verify_hs256(const key& k, std::string_view input, bytes sig) noexcept {
    if (sig.size() != 32) return fail(errc::token_bad_signature, "HS256 signature is not 32 bytes");
    digest mac{};
    FERRY_TRY(h, hmac_sha256(k.a(), as_bytes(input), mac));
    bool ok = equal_ct(mac, sig);
    wipe(mac);
    if (!ok) return fail(errc::token_bad_signature, "HS256 signature mismatch");
    return {};
}

status verify_rs256(const key& k, std::string_view input, bytes sig) noexcept {
    bytes n = k.a(), e = k.b();
    // RFC 8017 §8.2.2 step 1: the signature has exactly the modulus' length; and as an integer it
    // must be below the modulus (§5.2.2), or s and s+n would both verify (a malleable token).
    if (sig.size() != n.size()) return fail(errc::token_bad_signature, "RS256 signature length is not the modulus length");
    if (!less_be(sig.data(), n.data(), n.size())) return fail(errc::token_bad_signature, "RS256 signature not below the modulus");
    RsaKey rk;
    if (wc_InitRsaKey(&rk, nullptr) != 0) return fail(errc::crypto, "rsa init");
    byte em[512];  // RSA_MAX_SIZE 4096 bits
    int got = -1;
    if (wc_RsaPublicKeyDecodeRaw(u8p(n.data()), word32(n.size()), u8p(e.data()), word32(e.size()), &rk) == 0) {
        got = wc_RsaSSL_Verify(u8p(sig.data()), word32(sig.size()), em, sizeof em, &rk);
    }
    wc_FreeRsaKey(&rk);
    if (got != int(sizeof kSha256DigestInfo + 32)) return fail(errc::token_bad_signature, "RS256 signature does not verify");
    digest h = sha256(as_bytes(input));
    bool ok = std::memcmp(em, kSha256DigestInfo, sizeof kSha256DigestInfo) == 0 &&
              std::memcmp(em + sizeof kSha256DigestInfo, h.data(), 32) == 0;
    if (!ok) return fail(errc::token_bad_signature, "RS256 digest mismatch");
    return {};
}

status verify_es256(const key& k, std::string_view input, bytes sig) noexcept {
    // RFC 7518 §3.4: the JWS signature is R || S, each 32 bytes big-endian (not DER).
    if (sig.size() != 64) return fail(errc::token_bad_signature, "ES256 signature is not 64 bytes");
    bytes r = sig.first(32), s = sig.subspan(32);
    // 1 <= r, s < n, checked here rather than trusting every wolfCrypt version to do it.
    if (all_zero(r) || all_zero(s) || !less_be(r.data(), kP256Order, 32) || !less_be(s.data(), kP256Order, 32))
        return fail(errc::token_bad_signature, "ES256 r or s out of range");
    byte der[80];
    word32 der_len = sizeof der;
    if (wc_ecc_rs_raw_to_sig(u8p(r.data()), 32, u8p(s.data()), 32, der, &der_len) != 0)
        return fail(errc::token_bad_signature, "ES256 signature encoding");
    digest h = sha256(as_bytes(input));
    ecc_key ek;
    if (wc_ecc_init(&ek) != 0) return fail(errc::crypto, "ecc init");
    int res = 0;
    bool ok = wc_ecc_import_unsigned(&ek, u8p(k.a().data()), u8p(k.b().data()), nullptr, ECC_SECP256R1) == 0 &&
              wc_ecc_verify_hash(der, der_len, u8p(h.data()), 32, &res, &ek) == 0 && res == 1;
    wc_ecc_free(&ek);
    if (!ok) return fail(errc::token_bad_signature, "ES256 signature does not verify");
    return {};
}

status verify_eddsa(const key& k, std::string_view input, bytes sig) noexcept {
    if (sig.size() != 64) return fail(errc::token_bad_signature, "EdDSA signature is not 64 bytes");
    // RFC 8032 §5.1.7 step 1: S must be below L, or S and S+L both verify (malleability).
    if (!less_le(sig.data() + 32, kEd25519L, 32)) return fail(errc::token_bad_signature, "EdDSA S not below L");
    ed25519_key ek;
    if (wc_ed25519_init(&ek) != 0) return fail(errc::crypto, "ed25519 init");
    int res = 0;
    // trusted=1: the point was checked when the key set was loaded (check_ed25519_public).
    bool ok = wc_ed25519_import_public_ex(u8p(k.a().data()), 32, &ek, 1) == 0 &&
              wc_ed25519_verify_msg(u8p(sig.data()), 64, ptr_or_empty(as_bytes(input)), word32(input.size()),
                                    &res, &ek) == 0 &&
              res == 1;
    wc_ed25519_free(&ek);
    if (!ok) return fail(errc::token_bad_signature, "EdDSA signature does not verify");
    return {};
}

}  // namespace

status verify_signature(const key& k, std::string_view input, bytes sig) noexcept {
    switch (k.algorithm()) {
    case alg::hs256: return verify_hs256(k, input, sig);
    case alg::rs256: return verify_rs256(k, input, sig);
    case alg::es256: return verify_es256(k, input, sig);
    case alg::eddsa: return verify_eddsa(k, input, sig);
    }
    return fail(errc::token_alg_not_allowed, "unknown algorithm");
}

status hmac_sha256(bytes secret, bytes data, digest& out) noexcept {
    Hmac h;
    if (wc_HmacInit(&h, nullptr, INVALID_DEVID) != 0) return fail(errc::crypto, "hmac init");
    bool ok = wc_HmacSetKey(&h, WC_SHA256, ptr_or_empty(secret), word32(secret.size())) == 0 &&
              wc_HmacUpdate(&h, ptr_or_empty(data), word32(data.size())) == 0 &&
              wc_HmacFinal(&h, u8p(out.data())) == 0;
    wc_HmacFree(&h);
    // The keyed state (inner/outer pads) is derived from the secret.
    wipe(mut_bytes(reinterpret_cast<std::byte*>(&h), sizeof h));
    if (!ok) return fail(errc::crypto, "hmac");
    return {};
}

digest sha256(bytes data) noexcept {
    digest d{};
    wc_Sha256 s;
    if (wc_InitSha256(&s) == 0) {
        wc_Sha256Update(&s, ptr_or_empty(data), word32(data.size()));
        wc_Sha256Final(&s, u8p(d.data()));
        wc_Sha256Free(&s);
    }
    return d;
}

bool equal_ct(bytes a, bytes b) noexcept {
    if (a.size() != b.size()) return false;
    // Eight bytes a step (cached tokens are compared on every hit). The empty asm makes `acc`
    // opaque to the optimiser, so it cannot turn the loop into an early-exit comparison.
    std::uint64_t acc = 0;
    std::size_t i = 0;
    for (; i + 8 <= a.size(); i += 8) {
        std::uint64_t x, y;
        std::memcpy(&x, a.data() + i, 8);
        std::memcpy(&y, b.data() + i, 8);
        acc |= x ^ y;
        asm volatile("" : "+r"(acc));
    }
    for (; i < a.size(); ++i) {
        acc |= std::to_integer<std::uint64_t>(a[i] ^ b[i]);
        asm volatile("" : "+r"(acc));
    }
    return acc == 0;
}

void wipe(mut_bytes b) noexcept {
    if (!b.empty()) explicit_bzero(b.data(), b.size());
}

bool check_rsa_public(bytes n, bytes e, const char*& why) noexcept {
    if (n.empty() || n[0] == std::byte{0}) {
        why = "RSA modulus has leading zero bytes or is empty";
        return false;
    }
    if (e.empty() || e[0] == std::byte{0}) {
        why = "RSA exponent has leading zero bytes or is empty";
        return false;
    }
    if (!(std::to_integer<unsigned>(n.back()) & 1)) {
        why = "RSA modulus is even";
        return false;
    }
    if (!(std::to_integer<unsigned>(e.back()) & 1) || (e.size() == 1 && std::to_integer<unsigned>(e[0]) < 3)) {
        why = "RSA exponent must be odd and at least 3";
        return false;
    }
    if (e.size() > 8 || e.size() >= n.size()) {
        why = "RSA exponent too large";
        return false;
    }
    RsaKey rk;
    if (wc_InitRsaKey(&rk, nullptr) != 0) {
        why = "wolfCrypt RSA init failed";
        return false;
    }
    bool ok = wc_RsaPublicKeyDecodeRaw(u8p(n.data()), word32(n.size()), u8p(e.data()), word32(e.size()), &rk) == 0;
    wc_FreeRsaKey(&rk);
    if (!ok) why = "wolfCrypt rejects the RSA public key";
    return ok;
}

bool check_p256_public(bytes x, bytes y, const char*& why) noexcept {
    if (x.size() != 32 || y.size() != 32) {
        why = "P-256 coordinates must be 32 bytes each (RFC 7518 §6.2.1.2)";
        return false;
    }
    ecc_key ek;
    if (wc_ecc_init(&ek) != 0) {
        why = "wolfCrypt ECC init failed";
        return false;
    }
    bool ok = wc_ecc_import_unsigned(&ek, u8p(x.data()), u8p(y.data()), nullptr, ECC_SECP256R1) == 0 &&
              wc_ecc_check_key(&ek) == 0;
    wc_ecc_free(&ek);
    if (!ok) why = "EC point is not on P-256";
    return ok;
}

bool check_ed25519_public(bytes a, const char*& why) noexcept {
    if (a.size() != 32) {
        why = "Ed25519 public key must be 32 bytes";
        return false;
    }
    ed25519_key ek;
    if (wc_ed25519_init(&ek) != 0) {
        why = "wolfCrypt Ed25519 init failed";
        return false;
    }
    // wc_ed25519_check_key() needs the private key in this wolfSSL, so probe the point the way
    // verification will use it: a verify call decodes A first and fails with BAD_FUNC_ARG if it
    // is not a curve point; a decodable key gets as far as a signature mismatch.
    bool ok = false;
    if (wc_ed25519_import_public_ex(u8p(a.data()), 32, &ek, 1) == 0) {
        byte probe_sig[64] = {};
        probe_sig[0] = 1;  // R = the encoding of y = 1 (the identity), S = 0
        const byte msg[1] = {0};
        int res = 0;
        int rc = wc_ed25519_verify_msg(probe_sig, sizeof probe_sig, msg, sizeof msg, &res, &ek);
        ok = rc == 0 || rc == SIG_VERIFY_E;
    }
    wc_ed25519_free(&ek);
    if (!ok) why = "not a valid Ed25519 point";
    return ok;
}

}  // namespace ferry::jwt::detail
