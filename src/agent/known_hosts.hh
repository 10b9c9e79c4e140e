#pragma once
// The agent's record of relay host keys, in OpenSSH's known_hosts format so operators can read
// it, copy lines from `ssh-keyscan`, or point the agent at an existing file:
//
//   [relay.example.com]:8443 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI...  [comment]
//   relay.example.com ssh-ed25519 AAAA...                               (port 22)
//
// Policy (SPEC R7): trust on first use, then pinned. With no line for the relay's name, the
// first key seen is appended to the file (created 0600, its folder 0700) and accepted; with
// lines for the name, the key must equal one of them, else the handshake fails and both
// fingerprints are reported. Only what ferry needs is understood: comma-separated exact host
// names; hashed names (|1|...), wildcard patterns, negations and @markers are skipped (a
// @revoked line for the offered key rejects it).
//
// The parser is pure (text in, entries out) and fuzzed (fuzz/known_hosts_fuzz.cc); the file is
// read when the verifier is asked (once per key exchange) and appended to at most once.
// Thread: the agent's shard (the file access is a small blocking read/append during the SSH
// handshake, when the agent has nothing else in flight on that session).
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "proto/base/buffer.hh"
#include "proto/base/result.hh"
#include "proto/ssh/hostkey.hh"

namespace ferry::agent {

// The name a relay is recorded under: "host" for port 22, "[host]:port" otherwise (OpenSSH's
// form), host lower-cased.
std::string known_hosts_name(std::string_view host, std::uint16_t port);

struct known_host_key {
    std::string type;              // "ssh-ed25519", ...
    std::vector<std::byte> blob;   // the wire-format public key
    bool revoked = false;          // from a "@revoked" line
};

struct known_hosts_match {
    std::vector<known_host_key> keys;  // every key recorded for the name (and @revoked ones)
    std::size_t skipped = 0;           // lines not understood (malformed, hashed, patterns)
};

// Every key recorded for `name` in `text` (a whole known_hosts file).
known_hosts_match find_known_hosts(std::string_view text, std::string_view name);

// One line, "NAME TYPE BASE64\n", for `blob` (its type is read from the blob).
std::string known_hosts_line(std::string_view name, bytes blob);

// Standard base64 (RFC 4648 §4, padded), as known_hosts and authorized_keys use it.
std::string base64_encode(bytes in);
result<std::vector<std::byte>> base64_decode(std::string_view text);

class known_hosts_verifier final : public ssh::host_key_verifier {
public:
    enum class outcome : std::uint8_t {
        none,      // not asked yet
        matched,   // the key is recorded for the name
        learned,   // no key was recorded: trusted on first use (and saved)
        mismatch,  // other keys are recorded: refused (expected_fingerprints, offered)
        refused,   // unsupported algorithm, revoked key, or the file could not be read/written
    };

    // `path`: the file ("" keeps what is learned in memory only). `name`: known_hosts_name().
    known_hosts_verifier(std::string path, std::string name);

    bool accept(std::string_view algorithm, bytes key_blob) override;

    outcome last() const noexcept { return last_; }
    const std::string& name() const noexcept { return name_; }
    const std::string& offered_fingerprint() const noexcept { return offered_; }
    // "SHA256:..., SHA256:..." of the keys on record when last() == mismatch.
    const std::string& expected_fingerprints() const noexcept { return expected_; }
    // Why last() == refused.
    const std::string& detail() const noexcept { return detail_; }

private:
    std::string path_;
    std::string name_;
    std::string memory_;  // lines learned without a file (and a cache of what we appended)
    outcome last_ = outcome::none;
    std::string offered_, expected_, detail_;
};

}  // namespace ferry::agent
