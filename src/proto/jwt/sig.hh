#pragma once
// JWS signature primitives on wolfCrypt (internal to src/proto/jwt; tests may use them).
// wolfCrypt headers stay in sig.cc: its macros and struct layouts must not leak to includers.
//
// Every function works on stack-local wolfCrypt objects, so concurrent calls on the same
// (immutable) key material from several threads are safe.
#include <array>
#include <cstddef>
#include <string_view>

#include "proto/base/buffer.hh"
#include "proto/base/result.hh"
#include "proto/jwt/keys.hh"

namespace ferry::jwt::detail {

using digest = std::array<std::byte, 32>;

// Checks the JWS signature `sig` over `signing_input` (ASCII(header64 '.' payload64)) with `k`,
// using k.algorithm() and nothing else. errc::token_bad_signature when it does not verify
// (including a signature of the wrong length), errc::crypto if wolfCrypt itself fails.
status verify_signature(const key& k, std::string_view signing_input, bytes sig) noexcept;

// HMAC-SHA256 (minting, and HS256 verification).
status hmac_sha256(bytes secret, bytes data, digest& out) noexcept;
digest sha256(bytes data) noexcept;

// Constant-time equality of two byte strings; lengths are not secret (false if they differ).
bool equal_ct(bytes a, bytes b) noexcept;
// Zeroes memory in a way the compiler may not elide.
void wipe(mut_bytes b) noexcept;

// Load-time validation of public key material; `why` gets a static reason on failure.
// Both take big-endian unsigned integers without leading zero bytes (n, e) or fixed-size
// coordinates (x, y: 32 bytes each; Ed25519: 32 bytes).
bool check_rsa_public(bytes n, bytes e, const char*& why) noexcept;
bool check_p256_public(bytes x, bytes y, const char*& why) noexcept;
bool check_ed25519_public(bytes a, const char*& why) noexcept;

}  // namespace ferry::jwt::detail
