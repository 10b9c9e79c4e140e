#include "proto/ssh/crypto.hh"

// wolfCrypt: options.h first, so its struct layouts match the library we link (docs/wolfssl.md).
#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/chacha.h>
#include <wolfssl/wolfcrypt/curve25519.h>
#include <wolfssl/wolfcrypt/ed25519.h>
#include <wolfssl/wolfcrypt/hmac.h>
#include <wolfssl/wolfcrypt/random.h>
#include <wolfssl/wolfcrypt/sha256.h>
#include <wolfssl/wolfcrypt/sha512.h>

#include <algorithm>
#include <cstring>

namespace ferry::ssh {

namespace {
inline byte* u8p(std::byte* p) noexcept { return reinterpret_cast<byte*>(p); }
inline const byte* u8p(const std::byte* p) noexcept { return reinterpret_cast<const byte*>(p); }
// wolfCrypt rejects a null input pointer even for zero length (an empty span has none).
const byte kEmpty[1] = {0};
inline const byte* msg_ptr(bytes b) noexcept { return b.empty() ? kEmpty : u8p(b.data()); }
}  // namespace

// ---- rng -------------------------------------------------------------------------------------

// The data path asks for a few bytes at a time (packet padding, request ids, traceparent), and
// every Hash_DRBG request costs a fixed few SHA-256 blocks and big-number adds whatever its size:
// a profile of the relay at 17k requests/s had 20% of its CPU there. Small requests are therefore
// served from a ChaCha20 keystream with fast key erasure: each 4 KiB block's first 32 bytes key
// the next block and are wiped, so the state never lets anyone recompute bytes already handed
// out; the key comes from the DRBG at start and again every 256 blocks (1 MiB). Handed-out bytes
// are wiped from the buffer. Requests of 1 KiB or more go to the DRBG directly.
struct system_rng::impl {
    static constexpr std::size_t kBuffer = 4096;
    static constexpr unsigned kReseedBlocks = 256;
    WC_RNG rng;
    ChaCha cc;
    bool ok = false;
    unsigned blocks = 0;   // keystream blocks since the last DRBG key
    std::size_t left = 0;  // unused bytes at the end of buf
    std::byte buf[kBuffer];
    ~impl() {
        wipe(mut_bytes(buf, kBuffer));
        wipe(mut_bytes(reinterpret_cast<std::byte*>(&cc), sizeof cc));
        if (ok) wc_FreeRng(&rng);
    }
    bool drbg(std::byte* out, std::size_t n) noexcept {
        // wolfCrypt caps one request (RNG_MAX_BLOCK_LEN); larger ones are split.
        constexpr std::size_t chunk = 0x10000;
        while (n > 0) {
            const std::size_t k = std::min(n, chunk);
            if (wc_RNG_GenerateBlock(&rng, u8p(out), static_cast<word32>(k)) != 0) return false;
            out += k;
            n -= k;
        }
        return true;
    }
    bool rekey(const std::byte* key) noexcept {
        static constexpr byte zero_iv[CHACHA_IV_BYTES] = {};
        return wc_Chacha_SetKey(&cc, u8p(key), CHACHA_MAX_KEY_SZ) == 0 && wc_Chacha_SetIV(&cc, zero_iv, 0) == 0;
    }
    bool refill() noexcept {
        if (blocks == 0 || blocks >= kReseedBlocks) {
            std::byte key[CHACHA_MAX_KEY_SZ];
            const bool got = drbg(key, sizeof key) && rekey(key);
            wipe(mut_bytes(key, sizeof key));
            if (!got) return false;
            blocks = 0;
        }
        std::memset(buf, 0, kBuffer);
        if (wc_Chacha_Process(&cc, u8p(buf), u8p(buf), static_cast<word32>(kBuffer)) != 0) return false;
        ++blocks;
        // Fast key erasure: the block's first bytes become the next key and are never handed out.
        if (!rekey(buf)) return false;
        wipe(mut_bytes(buf, CHACHA_MAX_KEY_SZ));
        left = kBuffer - CHACHA_MAX_KEY_SZ;
        return true;
    }
};

result<std::unique_ptr<system_rng>> system_rng::create() {
    std::unique_ptr<system_rng> r(new system_rng());
    r->p_ = std::make_unique<impl>();
    if (wc_InitRng(&r->p_->rng) != 0) return fail(errc::crypto, "wc_InitRng failed");
    r->p_->ok = true;
    return r;
}

system_rng::~system_rng() = default;

status system_rng::fill(mut_bytes out) noexcept {
    impl& m = *p_;
    if (out.size() >= impl::kBuffer / 4) {  // large requests: the DRBG directly
        if (!m.drbg(out.data(), out.size())) return fail(errc::crypto, "wc_RNG_GenerateBlock failed");
        return {};
    }
    if (m.left < out.size()) {
        if (!m.refill()) {
            m.left = 0;
            m.blocks = 0;  // start again from the DRBG next time
            return fail(errc::crypto, "random generator failed");
        }
    }
    std::byte* from = m.buf + (impl::kBuffer - m.left);
    std::memcpy(out.data(), from, out.size());
    wipe(mut_bytes(from, out.size()));  // handed out once, never kept
    m.left -= out.size();
    return {};
}

// ---- helpers ---------------------------------------------------------------------------------

bool equal_ct(bytes a, bytes b) noexcept {
    if (a.size() != b.size()) return false;
    unsigned acc = 0;
    for (std::size_t i = 0; i < a.size(); ++i) acc |= std::to_integer<unsigned>(a[i] ^ b[i]);
    return acc == 0;
}

void wipe(mut_bytes b) noexcept {
    // A volatile pointer keeps the stores from being removed as dead.
    volatile std::byte* p = b.data();
    for (std::size_t i = 0; i < b.size(); ++i) p[i] = std::byte{0};
}

// ---- hashes ----------------------------------------------------------------------------------

std::size_t digest_size(hash_alg a) noexcept {
    return a == hash_alg::sha256 ? std::size_t(WC_SHA256_DIGEST_SIZE) : std::size_t(WC_SHA512_DIGEST_SIZE);
}

struct hasher::impl {
    union {
        wc_Sha256 s256;
        wc_Sha512 s512;
    };
    impl() {}
};

hasher::hasher(hash_alg a) : alg_(a), p_(std::make_unique<impl>()) {
    // Init only fails on a null argument.
    if (a == hash_alg::sha256) {
        wc_InitSha256(&p_->s256);
    } else {
        wc_InitSha512(&p_->s512);
    }
}

hasher::~hasher() {
    if (!p_) return;
    if (alg_ == hash_alg::sha256) {
        wc_Sha256Free(&p_->s256);
    } else {
        wc_Sha512Free(&p_->s512);
    }
}

hasher::hasher(hasher&&) noexcept = default;
hasher& hasher::operator=(hasher&&) noexcept = default;

void hasher::update(bytes b) noexcept {
    if (alg_ == hash_alg::sha256) {
        wc_Sha256Update(&p_->s256, u8p(b.data()), static_cast<word32>(b.size()));
    } else {
        wc_Sha512Update(&p_->s512, u8p(b.data()), static_cast<word32>(b.size()));
    }
}

void hasher::final(mut_bytes out) noexcept {
    if (alg_ == hash_alg::sha256) {
        wc_Sha256Final(&p_->s256, u8p(out.data()));
    } else {
        wc_Sha512Final(&p_->s512, u8p(out.data()));
    }
}

std::array<std::byte, 32> sha256(bytes data) noexcept {
    std::array<std::byte, 32> out{};
    wc_Sha256 s;
    wc_InitSha256(&s);
    wc_Sha256Update(&s, u8p(data.data()), static_cast<word32>(data.size()));
    wc_Sha256Final(&s, u8p(out.data()));
    wc_Sha256Free(&s);
    return out;
}

status hmac(hash_alg a, bytes key, bytes data, mut_bytes out) noexcept {
    if (out.size() < digest_size(a)) return fail(errc::invalid_argument, "hmac output too small");
    Hmac h;
    if (wc_HmacInit(&h, nullptr, INVALID_DEVID) != 0) return fail(errc::crypto, "wc_HmacInit");
    int type = a == hash_alg::sha256 ? int(WC_SHA256) : int(WC_SHA512);
    int r = wc_HmacSetKey(&h, type, u8p(key.data()), static_cast<word32>(key.size()));
    if (r == 0) r = wc_HmacUpdate(&h, u8p(data.data()), static_cast<word32>(data.size()));
    if (r == 0) r = wc_HmacFinal(&h, u8p(out.data()));
    wc_HmacFree(&h);
    if (r != 0) return fail(errc::crypto, "hmac failed");
    return {};
}

// ---- X25519 ----------------------------------------------------------------------------------

status x25519_public(x25519_key& priv, x25519_key& pub) noexcept {
    priv[0] &= std::byte{248};
    priv[31] &= std::byte{127};
    priv[31] |= std::byte{64};
    if (wc_curve25519_make_pub(32, u8p(pub.data()), 32, u8p(priv.data())) != 0) {
        return fail(errc::crypto, "x25519 public key failed");
    }
    return {};
}

status x25519_shared(const x25519_key& priv, const x25519_key& peer, x25519_key& out) noexcept {
    // wc_curve25519_generic computes X25519(priv, basepoint) on little-endian strings (RFC 7748);
    // it insists on a clamped scalar, which x25519_public() produced. RFC 7748 §5 says the top
    // bit of the peer's u-coordinate is ignored; wolfCrypt does not mask it, so we do.
    x25519_key u = peer;
    u[31] &= std::byte{0x7f};
    int r = wc_curve25519_generic(32, u8p(out.data()), 32, u8p(priv.data()), 32, u8p(u.data()));
    if (r != 0) return fail(errc::crypto, "x25519 failed");
    unsigned acc = 0;
    for (std::byte b : out) acc |= std::to_integer<unsigned>(b);
    if (acc == 0) return fail(errc::crypto, "x25519 shared secret is zero");
    return {};
}

// ---- Ed25519 ---------------------------------------------------------------------------------

struct ed25519_private::impl {
    ed25519_key key;
    impl() { wc_ed25519_init(&key); }
    ~impl() { wc_ed25519_free(&key); }
};

result<ed25519_private> ed25519_private::from_seed(bytes seed) {
    if (seed.size() != 32) return fail(errc::invalid_argument, "ed25519 seed must be 32 bytes");
    ed25519_private k;
    k.p_ = std::make_unique<impl>();
    if (wc_ed25519_import_private_only(u8p(seed.data()), 32, &k.p_->key) != 0 ||
        wc_ed25519_make_public(&k.p_->key, u8p(k.pub_.data()), 32) != 0 ||
        wc_ed25519_import_private_key(u8p(seed.data()), 32, u8p(k.pub_.data()), 32,
                                      &k.p_->key) != 0) {
        return fail(errc::crypto, "ed25519 key import failed");
    }
    return k;
}

result<ed25519_private> ed25519_private::generate(rng& r) {
    std::array<std::byte, 32> seed{};
    FERRY_TRY(ok, r.fill(seed));
    auto k = from_seed(seed);
    wipe(seed);
    return k;
}

ed25519_private::ed25519_private(ed25519_private&&) noexcept = default;
ed25519_private& ed25519_private::operator=(ed25519_private&&) noexcept = default;
ed25519_private::~ed25519_private() = default;  // wc_ed25519_free zeroes the key

status ed25519_private::sign(bytes msg, ed25519_signature& sig) noexcept {
    word32 len = 64;
    if (wc_ed25519_sign_msg(msg_ptr(msg), static_cast<word32>(msg.size()), u8p(sig.data()),
                            &len, &p_->key) != 0 ||
        len != 64) {
        return fail(errc::crypto, "ed25519 sign failed");
    }
    return {};
}

bool ed25519_verify(const ed25519_public& pub, bytes msg, bytes sig) noexcept {
    if (sig.size() != 64) return false;
    ed25519_key key;
    if (wc_ed25519_init(&key) != 0) return false;
    int res = 0;
    bool ok = wc_ed25519_import_public(u8p(pub.data()), 32, &key) == 0 &&
              wc_ed25519_verify_msg(u8p(sig.data()), 64, msg_ptr(msg),
                                    static_cast<word32>(msg.size()), &res, &key) == 0 &&
              res == 1;
    wc_ed25519_free(&key);
    return ok;
}

}  // namespace ferry::ssh
