#pragma once
// Thin wrappers over wolfCrypt for the SSH layer. wolfCrypt headers stay in the .cc files: its
// option macros and `byte`/`word32` typedefs must not leak into every includer, and its struct
// layouts depend on the build's options.h (docs/wolfssl.md).
//
// Nothing here reads a clock or a file. Randomness comes from an injected `rng` (sans-IO): the
// embedder passes `system_rng` in production; tests and fuzz targets pass their own
// deterministic generators, which exist only in tests/ and fuzz/, never in the library.
#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>

#include "proto/base/buffer.hh"
#include "proto/base/result.hh"

namespace ferry::ssh {

class rng {
public:
    virtual ~rng() = default;
    // Fills `out` with unpredictable bytes. Fails only if the generator itself fails.
    virtual status fill(mut_bytes out) noexcept = 0;
};

// wolfCrypt's Hash-DRBG seeded from the OS. One per shard (not thread-safe).
class system_rng final : public rng {
public:
    static result<std::unique_ptr<system_rng>> create();
    ~system_rng() override;
    status fill(mut_bytes out) noexcept override;

private:
    system_rng() = default;
    struct impl;
    std::unique_ptr<impl> p_;
};

// Constant-time equality of two equal-length byte strings (false if the lengths differ; the
// lengths themselves are not secret).
bool equal_ct(bytes a, bytes b) noexcept;
// Zeroes secret material in a way the compiler may not elide.
void wipe(mut_bytes b) noexcept;
template <std::size_t N>
void wipe(std::array<std::byte, N>& a) noexcept {
    wipe(mut_bytes(a));
}

// ---- hashes ----------------------------------------------------------------------------------

enum class hash_alg : std::uint8_t { sha256, sha512 };
std::size_t digest_size(hash_alg a) noexcept;

// Incremental SHA-2 (the exchange hash and key derivation).
class hasher {
public:
    explicit hasher(hash_alg a);
    ~hasher();
    hasher(hasher&&) noexcept;
    hasher& operator=(hasher&&) noexcept;
    void update(bytes b) noexcept;
    // Writes digest_size() bytes to `out` (precondition: out.size() >= digest_size()) and
    // resets the state for reuse.
    void final(mut_bytes out) noexcept;
    hash_alg alg() const noexcept { return alg_; }

private:
    hash_alg alg_;
    struct impl;
    std::unique_ptr<impl> p_;
};

std::array<std::byte, 32> sha256(bytes data) noexcept;

// One-shot HMAC (tests and key checks; the packet layer keeps keyed contexts).
status hmac(hash_alg a, bytes key, bytes data, mut_bytes out) noexcept;

// ---- X25519 (RFC 7748) -----------------------------------------------------------------------

using x25519_key = std::array<std::byte, 32>;

// Clamps `priv` in place (RFC 7748 §5) and computes its public key.
status x25519_public(x25519_key& priv, x25519_key& pub) noexcept;
// The shared secret X25519(priv, peer). Fails with errc::crypto when the result is all zero
// (a low-order peer point; RFC 8731 §3 requires aborting).
status x25519_shared(const x25519_key& priv, const x25519_key& peer, x25519_key& out) noexcept;

// ---- Ed25519 (RFC 8032) ----------------------------------------------------------------------

using ed25519_public = std::array<std::byte, 32>;
using ed25519_signature = std::array<std::byte, 64>;

// A signing key (the server's host key, or a client's user key). Move-only; wipes on destruction.
class ed25519_private {
public:
    // From the 32-byte seed (RFC 8032's private key).
    static result<ed25519_private> from_seed(bytes seed);
    // A fresh key from `r`.
    static result<ed25519_private> generate(rng& r);
    ed25519_private(ed25519_private&&) noexcept;
    ed25519_private& operator=(ed25519_private&&) noexcept;
    ~ed25519_private();

    const ed25519_public& public_key() const noexcept { return pub_; }
    // Deterministic signature (RFC 8032). Not const: wolfCrypt's key object holds hash state.
    status sign(bytes msg, ed25519_signature& sig) noexcept;

private:
    ed25519_private() = default;
    ed25519_public pub_{};
    struct impl;
    std::unique_ptr<impl> p_;
};

bool ed25519_verify(const ed25519_public& pub, bytes msg, bytes sig) noexcept;

}  // namespace ferry::ssh
