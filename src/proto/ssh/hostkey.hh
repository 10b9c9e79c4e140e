#pragma once
// Host keys (RFC 4253 §6.6, RFC 8709): `ssh-ed25519` blobs and signatures, fingerprints, and the
// client's verification hook.
//
// Verification is the embedder's policy: a `host_key_verifier` is asked once per key exchange
// and answers synchronously (the relay's key is pinned in the agent's config or remembered in a
// trust-on-first-use store that the embedder loads before connecting). `pinned_host_keys` is the
// simple in-memory implementation.
#include <string>
#include <string_view>
#include <vector>

#include "proto/base/buffer.hh"
#include "proto/base/result.hh"
#include "proto/ssh/crypto.hh"

namespace ferry::ssh {

inline constexpr std::string_view ssh_ed25519 = "ssh-ed25519";

// string "ssh-ed25519" || string key(32)
std::vector<std::byte> ed25519_key_blob(const ed25519_public& pub);
result<ed25519_public> parse_ed25519_key_blob(bytes blob);
// string "ssh-ed25519" || string signature(64)
std::vector<std::byte> ed25519_signature_blob(const ed25519_signature& sig);
// Checks an `ssh-ed25519` signature blob over `msg` by the key in `key_blob`.
status verify_ed25519_signature_blob(bytes key_blob, bytes sig_blob, bytes msg);

// "SHA256:<base64 without padding>", as `ssh-keygen -l` prints it.
std::string fingerprint_sha256(bytes key_blob);

class host_key_verifier {
public:
    virtual ~host_key_verifier() = default;
    // `key_blob` is the server's public host key in wire encoding (its algorithm is the first
    // string inside). Returns true to continue the handshake.
    virtual bool accept(std::string_view algorithm, bytes key_blob) = 0;
};

class pinned_host_keys final : public host_key_verifier {
public:
    enum class policy : std::uint8_t {
        pinned_only,          // accept only keys added with pin()
        trust_on_first_use,   // with no pin yet, remember the first key seen and pin it
    };
    explicit pinned_host_keys(policy p = policy::pinned_only) : policy_(p) {}

    void pin(bytes key_blob) { keys_.emplace_back(key_blob.begin(), key_blob.end()); }
    // Pins by fingerprint ("SHA256:..."), as operators copy it from `ssh-keygen -l`.
    void pin_fingerprint(std::string fp) { fingerprints_.push_back(std::move(fp)); }
    bool accept(std::string_view algorithm, bytes key_blob) override;
    const std::vector<std::vector<std::byte>>& keys() const noexcept { return keys_; }

private:
    policy policy_;
    std::vector<std::vector<std::byte>> keys_;
    std::vector<std::string> fingerprints_;
};

}  // namespace ferry::ssh
