#include "proto/ssh/cipher.hh"

#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/aes.h>
#include <wolfssl/wolfcrypt/chacha.h>
#include <wolfssl/wolfcrypt/hmac.h>
#include <wolfssl/wolfcrypt/poly1305.h>

#include <array>
#include <cstring>

#include "proto/ssh/chacha_wide.hh"
#include "proto/ssh/crypto.hh"

namespace ferry::ssh {

status packet_cipher::seal_from(std::uint32_t seq, mut_bytes packet, std::size_t body_at, bytes body,
                                mut_bytes tag) noexcept {
    if (!body.empty()) std::memcpy(packet.data() + body_at, body.data(), body.size());
    return seal(seq, packet, tag);
}

namespace {

inline byte* u8p(std::byte* p) noexcept { return reinterpret_cast<byte*>(p); }
inline const byte* u8p(const std::byte* p) noexcept { return reinterpret_cast<const byte*>(p); }

constexpr cipher_info cipher_table[] = {
    {"none", 0, 0, 8, false},
    {"aes128-ctr", 16, 16, 16, false},
    {"aes256-ctr", 32, 16, 16, false},
    {"aes128-gcm@openssh.com", 16, 12, 16, true},
    {"aes256-gcm@openssh.com", 32, 12, 16, true},
    {"chacha20-poly1305@openssh.com", 64, 0, 8, true},
};
constexpr mac_info mac_table[] = {
    {"none", 0, 0, false},
    {"hmac-sha2-256", 32, 32, false},
    {"hmac-sha2-512", 64, 64, false},
    {"hmac-sha2-256-etm@openssh.com", 32, 32, true},
    {"hmac-sha2-512-etm@openssh.com", 64, 64, true},
};

// ---- none ------------------------------------------------------------------------------------

class null_cipher final : public packet_cipher {
public:
    std::size_t block_size() const noexcept override { return 8; }
    std::size_t tag_size() const noexcept override { return 0; }
    std::size_t length_bytes() const noexcept override { return 4; }
    bool length_in_clear() const noexcept override { return false; }
    status seal(std::uint32_t, mut_bytes, mut_bytes) noexcept override { return {}; }
    result<std::uint32_t> open_length(std::uint32_t, mut_bytes first) noexcept override {
        return load_be32(first.data());
    }
    status open(std::uint32_t, mut_bytes, bytes) noexcept override { return {}; }
};

// ---- AES-GCM (RFC 5647, OpenSSH variant) -----------------------------------------------------

class gcm_cipher final : public packet_cipher {
public:
    ~gcm_cipher() override {
        wc_AesFree(&aes_);
        wipe(iv_);
    }
    status init(bytes key, bytes iv) noexcept {
        if (wc_AesInit(&aes_, nullptr, INVALID_DEVID) != 0) return fail(errc::crypto, "aes init");
        if (wc_AesGcmSetKey(&aes_, u8p(key.data()), static_cast<word32>(key.size())) != 0) {
            return fail(errc::crypto, "gcm key");
        }
        std::memcpy(iv_.data(), iv.data(), 12);
        return {};
    }
    std::size_t block_size() const noexcept override { return 16; }
    std::size_t tag_size() const noexcept override { return 16; }
    std::size_t length_bytes() const noexcept override { return 4; }
    bool length_in_clear() const noexcept override { return true; }

    status seal(std::uint32_t, mut_bytes p, mut_bytes tag) noexcept override {
        int r = wc_AesGcmEncrypt(&aes_, u8p(p.data() + 4), u8p(p.data() + 4),
                                 static_cast<word32>(p.size() - 4), u8p(iv_.data()), 12,
                                 u8p(tag.data()), 16, u8p(p.data()), 4);
        if (r != 0) return fail(errc::crypto, "gcm encrypt");
        next_iv();
        return {};
    }
    // Streaming GCM over three pieces: [4, body_at) in place, the body from its own buffer
    // into the packet, the padding in place. Same IV, AAD (the length) and bytes as seal().
    status seal_from(std::uint32_t, mut_bytes p, std::size_t body_at, bytes body, mut_bytes tag) noexcept override {
        byte* base = u8p(p.data());
        const std::size_t body_end = body_at + body.size();
        int r = wc_AesGcmInit(&aes_, nullptr, 0, u8p(iv_.data()), 12);
        if (r == 0) r = wc_AesGcmEncryptUpdate(&aes_, base + 4, base + 4, static_cast<word32>(body_at - 4), base, 4);
        if (r == 0 && !body.empty()) {
            r = wc_AesGcmEncryptUpdate(&aes_, base + body_at, u8p(body.data()), static_cast<word32>(body.size()),
                                       nullptr, 0);
        }
        if (r == 0 && body_end < p.size()) {
            r = wc_AesGcmEncryptUpdate(&aes_, base + body_end, base + body_end,
                                       static_cast<word32>(p.size() - body_end), nullptr, 0);
        }
        if (r == 0) r = wc_AesGcmEncryptFinal(&aes_, u8p(tag.data()), 16);
        if (r != 0) return fail(errc::crypto, "gcm encrypt");
        next_iv();
        return {};
    }
    result<std::uint32_t> open_length(std::uint32_t, mut_bytes first) noexcept override {
        return load_be32(first.data());
    }
    status open(std::uint32_t, mut_bytes p, bytes tag) noexcept override {
        // wolfCrypt compares the tag with ConstantCompare.
        int r = wc_AesGcmDecrypt(&aes_, u8p(p.data() + 4), u8p(p.data() + 4),
                                 static_cast<word32>(p.size() - 4), u8p(iv_.data()), 12,
                                 u8p(tag.data()), 16, u8p(p.data()), 4);
        if (r != 0) return fail(errc::ssh_mac, "gcm tag mismatch");
        next_iv();
        return {};
    }

private:
    // RFC 5647 §7.1: the 64-bit invocation counter (the last 8 bytes) increments per packet.
    void next_iv() noexcept { store_be64(iv_.data() + 4, load_be64(iv_.data() + 4) + 1); }
    Aes aes_;
    std::array<std::byte, 12> iv_{};
};

// ---- chacha20-poly1305@openssh.com -----------------------------------------------------------

class chachapoly_cipher final : public packet_cipher {
public:
    ~chachapoly_cipher() override {
        wipe(mut_bytes(reinterpret_cast<std::byte*>(&main_), sizeof main_));
        wipe(mut_bytes(reinterpret_cast<std::byte*>(&header_), sizeof header_));
    }
    status init(bytes key) noexcept {
        if (wc_Chacha_SetKey(&main_, u8p(key.data()), 32) != 0 ||
            wc_Chacha_SetKey(&header_, u8p(key.data() + 32), 32) != 0) {
            return fail(errc::crypto, "chacha key");
        }
        return {};
    }
    std::size_t block_size() const noexcept override { return 8; }
    std::size_t tag_size() const noexcept override { return 16; }
    std::size_t length_bytes() const noexcept override { return 4; }
    bool length_in_clear() const noexcept override { return true; }

    status seal(std::uint32_t seq, mut_bytes p, mut_bytes tag) noexcept override {
        FERRY_TRY(r1, crypt_length(seq, p.first(4), p.first(4)));
        FERRY_TRY(r2, crypt_body(seq, p.subspan(4)));
        FERRY_TRY(r3, compute_tag(p, tag.data()));
        return {};
    }
    result<std::uint32_t> open_length(std::uint32_t seq, mut_bytes first) noexcept override {
        // Decrypted into a copy: the tag covers the encrypted length.
        std::array<std::byte, 4> len{};
        FERRY_TRY(r, crypt_length(seq, first.first(4), len));
        return load_be32(len.data());
    }
    status open(std::uint32_t seq, mut_bytes p, bytes tag) noexcept override {
        std::array<std::byte, 16> want{};
        FERRY_TRY(r0, poly_key(seq));
        FERRY_TRY(r1, compute_tag(p, want.data()));
        if (!equal_ct(want, tag)) return fail(errc::ssh_mac, "poly1305 tag mismatch");
        FERRY_TRY(r2, crypt_length(seq, p.first(4), p.first(4)));
        return crypt_body_after_key(seq, p.subspan(4));
    }

private:
    // Original ChaCha20 (64-bit nonce, 64-bit counter) mapped onto wolfCrypt's IETF variant
    // (96-bit nonce, 32-bit counter): state words 13..15 are the IETF nonce, so the 12 nonce
    // bytes are the high 32 bits of the 64-bit counter (always 0 here: packets are < 256 GiB)
    // followed by the 8-byte big-endian sequence number. Checked by a known-answer test.
    static void nonce(std::uint32_t seq, byte out[12]) noexcept {
        std::memset(out, 0, 4);
        store_be64(reinterpret_cast<std::byte*>(out + 4), seq);
    }
    status crypt_length(std::uint32_t seq, bytes in, mut_bytes out) noexcept {
        byte iv[12];
        nonce(seq, iv);
        if (wc_Chacha_SetIV(&header_, iv, 0) != 0 ||
            wc_Chacha_Process(&header_, u8p(out.data()), u8p(in.data()), 4) != 0) {
            return fail(errc::crypto, "chacha length");
        }
        return {};
    }
    // Sets main_ to (K_2, seq, counter 0) and derives the Poly1305 key from block 0; main_ is
    // then positioned at block 1 for the payload.
    status poly_key(std::uint32_t seq) noexcept {
        byte iv[12];
        nonce(seq, iv);
        byte block0[64] = {};
        if (wc_Chacha_SetIV(&main_, iv, 0) != 0 ||
            wc_Chacha_Process(&main_, block0, block0, 64) != 0 ||
            wc_Poly1305SetKey(&poly_, block0, 32) != 0) {
            return fail(errc::crypto, "poly1305 key");
        }
        wipe(mut_bytes(reinterpret_cast<std::byte*>(block0), sizeof block0));
        return {};
    }
    status crypt_body(std::uint32_t seq, mut_bytes body) noexcept {
        FERRY_TRY(r, poly_key(seq));
        return crypt_body_after_key(seq, body);
    }
    // The payload from block 1 on: whole KiB chunks 16 blocks at a time with AVX-512 where the
    // CPU has it (chacha_wide.hh), the rest (or all of it) with wolfCrypt.
    status crypt_body_after_key(std::uint32_t seq, mut_bytes body) noexcept {
        std::size_t done = 0;
        if (body.size() >= 1024 && detail::chacha_wide_available()) {
            byte iv[12];
            nonce(seq, iv);
            // wc_Chacha_SetKey left K_2 as state words 4..11 (little-endian loads): the key the
            // wide code takes (ChaChaWide.LargePacketsSealLikeTheReference checks it).
            done = detail::chacha_wide_xor(main_.X + 4, iv + 4, 1, body.data(), body.data(), body.size());
            if (done < body.size() && wc_Chacha_SetIV(&main_, iv, static_cast<word32>(1 + done / 64)) != 0) {
                return fail(errc::crypto, "chacha body");
            }
        }
        if (done < body.size() && wc_Chacha_Process(&main_, u8p(body.data() + done), u8p(body.data() + done),
                                                    static_cast<word32>(body.size() - done)) != 0) {
            return fail(errc::crypto, "chacha body");
        }
        return {};
    }
    // Precondition: poly_key() ran for this packet.
    status compute_tag(bytes p, std::byte* tag) noexcept {
        if (wc_Poly1305Update(&poly_, u8p(p.data()), static_cast<word32>(p.size())) != 0 ||
            wc_Poly1305Final(&poly_, u8p(tag)) != 0) {
            return fail(errc::crypto, "poly1305");
        }
        return {};
    }
    ChaCha main_;
    ChaCha header_;
    Poly1305 poly_;
};

// ---- AES-CTR with HMAC-SHA2 (encrypt-and-MAC or encrypt-then-MAC) -----------------------------

class ctr_hmac_cipher final : public packet_cipher {
public:
    ~ctr_hmac_cipher() override {
        wc_AesFree(&aes_);
        wc_HmacFree(&hmac_);
    }
    status init(bytes key, bytes iv, const mac_info& m, bytes mac_key) noexcept {
        etm_ = m.etm;
        tag_len_ = m.tag_len;
        if (wc_AesInit(&aes_, nullptr, INVALID_DEVID) != 0) return fail(errc::crypto, "aes init");
        // CTR mode only ever runs the forward cipher, in both directions.
        if (wc_AesSetKey(&aes_, u8p(key.data()), static_cast<word32>(key.size()), u8p(iv.data()),
                         AES_ENCRYPTION) != 0) {
            return fail(errc::crypto, "aes-ctr key");
        }
        if (wc_HmacInit(&hmac_, nullptr, INVALID_DEVID) != 0) return fail(errc::crypto, "hmac");
        int type = m.tag_len == 32 ? int(WC_SHA256) : int(WC_SHA512);
        // wolfCrypt keeps the padded key and restarts the inner hash after each Final, so the
        // key schedule is computed once per direction.
        if (wc_HmacSetKey(&hmac_, type, u8p(mac_key.data()),
                          static_cast<word32>(mac_key.size())) != 0) {
            return fail(errc::crypto, "hmac key");
        }
        return {};
    }
    std::size_t block_size() const noexcept override { return 16; }
    std::size_t tag_size() const noexcept override { return tag_len_; }
    std::size_t length_bytes() const noexcept override { return etm_ ? 4 : 16; }
    bool length_in_clear() const noexcept override { return etm_; }

    status seal(std::uint32_t seq, mut_bytes p, mut_bytes tag) noexcept override {
        if (etm_) {
            FERRY_TRY(r1, crypt(p.subspan(4)));
            return mac(seq, p, tag.data());
        }
        FERRY_TRY(r1, mac(seq, p, tag.data()));
        return crypt(p);
    }
    result<std::uint32_t> open_length(std::uint32_t, mut_bytes first) noexcept override {
        if (etm_) return load_be32(first.data());
        FERRY_TRY(r, crypt(first.first(16)));
        return load_be32(first.data());
    }
    status open(std::uint32_t seq, mut_bytes p, bytes tag) noexcept override {
        std::array<std::byte, 64> want{};
        if (etm_) {
            FERRY_TRY(r1, mac(seq, p, want.data()));
            if (!equal_ct(bytes(want).first(tag_len_), tag)) {
                return fail(errc::ssh_mac, "hmac mismatch");
            }
            return crypt(p.subspan(4));
        }
        FERRY_TRY(r1, crypt(p.subspan(16)));  // the first block was decrypted by open_length
        FERRY_TRY(r2, mac(seq, p, want.data()));
        if (!equal_ct(bytes(want).first(tag_len_), tag)) {
            return fail(errc::ssh_mac, "hmac mismatch");
        }
        return {};
    }

private:
    status crypt(mut_bytes b) noexcept {
        if (b.empty()) return {};
        if (wc_AesCtrEncrypt(&aes_, u8p(b.data()), u8p(b.data()),
                             static_cast<word32>(b.size())) != 0) {
            return fail(errc::crypto, "aes-ctr");
        }
        return {};
    }
    status mac(std::uint32_t seq, bytes p, std::byte* out) noexcept {
        byte s[4];
        store_be32(reinterpret_cast<std::byte*>(s), seq);
        if (wc_HmacUpdate(&hmac_, s, 4) != 0 ||
            wc_HmacUpdate(&hmac_, u8p(p.data()), static_cast<word32>(p.size())) != 0 ||
            wc_HmacFinal(&hmac_, u8p(out)) != 0) {
            return fail(errc::crypto, "hmac");
        }
        return {};
    }
    Aes aes_;
    Hmac hmac_;
    bool etm_ = false;
    std::size_t tag_len_ = 32;
};

}  // namespace

const cipher_info& info(cipher_id c) noexcept { return cipher_table[static_cast<int>(c)]; }
const mac_info& info(mac_id m) noexcept { return mac_table[static_cast<int>(m)]; }

std::optional<cipher_id> cipher_by_name(std::string_view name) noexcept {
    for (int i = 1; i < int(std::size(cipher_table)); ++i) {
        if (cipher_table[i].name == name) return static_cast<cipher_id>(i);
    }
    return std::nullopt;
}

std::optional<mac_id> mac_by_name(std::string_view name) noexcept {
    for (int i = 1; i < int(std::size(mac_table)); ++i) {
        if (mac_table[i].name == name) return static_cast<mac_id>(i);
    }
    return std::nullopt;
}

std::unique_ptr<packet_cipher> make_null_cipher() { return std::make_unique<null_cipher>(); }

result<std::unique_ptr<packet_cipher>> make_cipher(cipher_id c, mac_id m, bytes key, bytes iv,
                                                   bytes mac_key) {
    const cipher_info& ci = info(c);
    if (key.size() != ci.key_len || iv.size() < ci.iv_len) {
        return fail(errc::invalid_argument, "cipher key or iv length");
    }
    switch (c) {
    case cipher_id::none: return make_null_cipher();
    case cipher_id::aes128_gcm:
    case cipher_id::aes256_gcm: {
        auto p = std::make_unique<gcm_cipher>();
        FERRY_TRY(r, p->init(key, iv));
        return std::unique_ptr<packet_cipher>(std::move(p));
    }
    case cipher_id::chacha20_poly1305: {
        auto p = std::make_unique<chachapoly_cipher>();
        FERRY_TRY(r, p->init(key));
        return std::unique_ptr<packet_cipher>(std::move(p));
    }
    case cipher_id::aes128_ctr:
    case cipher_id::aes256_ctr: {
        const mac_info& mi = info(m);
        if (m == mac_id::none || mac_key.size() != mi.key_len) {
            return fail(errc::invalid_argument, "ctr needs a MAC");
        }
        auto p = std::make_unique<ctr_hmac_cipher>();
        FERRY_TRY(r, p->init(key, iv.first(16), mi, mac_key));
        return std::unique_ptr<packet_cipher>(std::move(p));
    }
    }
    return fail(errc::unsupported, "cipher");
}

}  // namespace ferry::ssh
