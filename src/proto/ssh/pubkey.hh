#pragma once
// User public keys for "publickey" authentication (RFC 4252 §7): ssh-ed25519 (RFC 8709),
// ecdsa-sha2-nistp256 (RFC 5656), rsa-sha2-256 / rsa-sha2-512 (RFC 8332, keys of type ssh-rsa,
// 2048 to 4096 bits). Verification only, except Ed25519, which the client also signs with.
#include <optional>
#include <string_view>

#include "proto/base/buffer.hh"
#include "proto/base/result.hh"

namespace ferry::ssh {

enum class user_key_alg : std::uint8_t { ed25519, ecdsa_p256, rsa_sha2_256, rsa_sha2_512 };

std::optional<user_key_alg> user_key_alg_by_name(std::string_view name) noexcept;
std::string_view name(user_key_alg a) noexcept;

// True when `key_blob` is a well-formed key of the type `a` uses ("ssh-rsa" for rsa-sha2-*).
bool key_blob_matches(user_key_alg a, bytes key_blob) noexcept;

// Verifies the signature blob (string algorithm-name || string signature) over `data` with the
// key in `key_blob`. The blob's algorithm name must be `a`'s. Fails with errc::ssh_auth.
status verify_user_signature(user_key_alg a, bytes key_blob, bytes sig_blob, bytes data);

}  // namespace ferry::ssh
