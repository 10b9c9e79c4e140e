#pragma once
// Verification keys and key sets.
//
// Every key carries its algorithm, fixed when the key is loaded, and a token is only ever
// checked with a key whose algorithm equals the token's `alg` (RFC 8725 §3.1, §2.1). That is what
// makes algorithm confusion impossible: an RSA public key is never an HMAC secret, an HMAC
// secret never a public key, and the header's `jwk`/`jku`/`x5c`/`x5u` members are never used to
// find a key.
//
// A `key_set` is immutable once built and holds only plain bytes (no wolfCrypt state): the control
// plane builds one off the data path, validates every key completely (sizes, point on curve,
// decodable modulus), and publishes it to the shards as `std::shared_ptr<const key_set>`; any
// number of threads may then read it concurrently without locks. Verification imports the key
// material into wolfCrypt structures on the caller's stack.
//
// Loading is not on the data path but still reports errors as `result` (no exceptions in
// src/proto); the human-readable reason, naming the bad key (its index in `keys` and its `kid`),
// goes to the `why` string the caller passes.
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "proto/base/buffer.hh"
#include "proto/base/result.hh"

namespace ferry::jwt {

// JWS algorithms ferry accepts (RFC 7518 §3, RFC 8037 §3.1). `none` has no value here: it can
// never be selected, allowed or configured.
enum class alg : std::uint8_t {
    hs256,  // HMAC-SHA256, shared secret of at least 32 bytes
    rs256,  // RSASSA-PKCS1-v1_5 with SHA-256, modulus 2048..4096 bits
    es256,  // ECDSA P-256 with SHA-256, signature as raw r||s (64 bytes)
    eddsa,  // Ed25519 (RFC 8032)
};
inline constexpr std::size_t alg_count = 4;

// The JOSE name ("HS256", "RS256", "ES256", "EdDSA").
std::string_view name(alg a) noexcept;
// Exact, case-sensitive match of a JOSE `alg` value; nullopt for anything else, "none" included.
std::optional<alg> alg_by_name(std::string_view s) noexcept;

// A set of algorithms (the verifier's allow-list).
class alg_set {
public:
    constexpr alg_set() = default;
    constexpr alg_set(std::initializer_list<alg> l) {
        for (alg a : l) bits_ |= bit(a);
    }
    static constexpr alg_set all() { return {alg::hs256, alg::rs256, alg::es256, alg::eddsa}; }
    constexpr bool contains(alg a) const noexcept { return bits_ & bit(a); }
    constexpr alg_set& add(alg a) noexcept {
        bits_ |= bit(a);
        return *this;
    }
    constexpr bool empty() const noexcept { return bits_ == 0; }

private:
    static constexpr std::uint8_t bit(alg a) noexcept { return std::uint8_t(1u << unsigned(a)); }
    std::uint8_t bits_ = 0;
};

// One verification key. Material, by algorithm:
//   hs256: a = the secret
//   rs256: a = modulus n, b = public exponent e (big-endian, no leading zeros)
//   es256: a = x, b = y (32 bytes each, big-endian)
//   eddsa: a = the 32-byte public key
// Secrets are wiped when the key is destroyed.
class key {
public:
    alg algorithm() const noexcept { return alg_; }
    // The JWK `kid`, empty if the key has none (an HS256 secret file has none unless given one).
    std::string_view kid() const noexcept { return kid_; }
    bytes a() const noexcept { return a_; }
    bytes b() const noexcept { return b_; }
    // Modulus size for RSA keys, 8 * secret size for HMAC, 256 for the curves.
    std::uint32_t bits() const noexcept { return bits_; }

    key(key&&) noexcept = default;
    key& operator=(key&&) noexcept = default;
    key(const key&) = default;
    key& operator=(const key&) = default;
    ~key();

private:
    friend class key_set_builder;
    key() = default;
    alg alg_ = alg::hs256;
    std::uint32_t bits_ = 0;
    std::string kid_;
    std::vector<std::byte> a_, b_;
};

// Immutable, validated set of keys. Cheap to share read-only between threads.
class key_set {
public:
    key_set() = default;
    std::span<const key> keys() const noexcept { return keys_; }
    std::size_t size() const noexcept { return keys_.size(); }
    bool empty() const noexcept { return keys_.empty(); }
    // The key whose `kid` equals `kid` (kids are unique within a set), or nullptr.
    const key* find_kid(std::string_view kid) const noexcept;
    // Algorithms for which the set holds at least one key.
    alg_set algorithms() const noexcept { return algs_; }

private:
    friend class key_set_builder;
    std::vector<key> keys_;
    alg_set algs_;
};

// Bounds for JWK set documents (they may come from a URL: treat them as hostile too).
struct jwks_limits {
    std::size_t max_text = 256 * 1024;  // bytes of the JWKS document
    std::uint32_t max_keys = 64;        // entries of `keys`, skipped ones included
    std::uint32_t max_rsa_bits = 4096;  // wolfSSL here is built with RSA_MAX_SIZE 4096
    std::uint32_t min_rsa_bits = 2048;  // RFC 7518 §3.3
    std::size_t min_hmac_secret = 32;   // RFC 7518 §3.2: at least the hash size
    std::size_t max_kid = 256;
};

// What to do with a well-formed JWK that ferry cannot use (a `"use":"enc"` key, RS384, P-384,
// Ed448, ...). Identity providers publish such keys next to the ones that sign tokens, so
// skipping is the default; each skipped key is named in `jwks_report::skipped`. A key that claims
// a supported algorithm but is malformed (short modulus, point off the curve, bad base64url) is
// always an error.
enum class unusable_keys : std::uint8_t { skip, reject };

struct jwks_options {
    jwks_limits lim;
    unusable_keys unusable = unusable_keys::skip;
};

struct jwks_report {
    std::vector<std::string> skipped;  // "keys[3] (kid \"enc-1\"): use is \"enc\""
};

// Collects keys, then freezes them into a key_set. Not thread-safe; used by the control plane.
class key_set_builder {
public:
    // An HS256 secret (raw bytes, at least lim.min_hmac_secret). `kid` may be empty.
    // errc::jwks_invalid with the reason in `why`.
    status add_hs256_secret(bytes secret, std::string_view kid = {}, std::string* why = nullptr,
                            const jwks_limits& lim = {});
    // Every usable key of a JWK set (RFC 7517 §5): RSA (n, e), EC P-256 (x, y), OKP Ed25519 (x),
    // oct (k, only with "alg":"HS256"). Keys carrying private members (d, p, q, ...) are refused:
    // a verifier must never hold signing keys. All-or-nothing: on error nothing is added.
    // errc::jwks_invalid with the reason, naming the key, in `why`.
    status add_jwks(std::string_view json, const jwks_options& opt = {}, jwks_report* report = nullptr,
                    std::string* why = nullptr);
    std::size_t size() const noexcept { return keys_.size(); }
    // Freezes the keys. The builder is empty afterwards.
    std::shared_ptr<const key_set> build();

private:
    status add(key k, std::string* why, const std::string& who);
    std::vector<key> keys_;
};

// The content of an HS256 secret file: raw bytes with one trailing newline ("\n" or "\r\n")
// removed, so that `echo "$SECRET" > file` and editors that end files with a newline work.
// Fails (errc::jwks_invalid) if fewer than `min_size` bytes remain.
result<std::vector<std::byte>> hs256_secret_from_file(bytes contents, std::size_t min_size = 32);

}  // namespace ferry::jwt
