#pragma once
// Protocol version exchange (RFC 4253 §4.2).
//
// Each side sends "SSH-2.0-softwareversion SP comments CR LF" (at most 255 bytes with CR LF). A
// server may send other lines first (a banner); a client may not, and our server refuses them as
// OpenSSH does. "SSH-1.99-" is accepted as 2.0 (RFC 4253 §5.1). A bare LF ends a line too
// (RFC 4253 §4.2 asks to be lenient), but the CR, if present, is not part of the version string
// that goes into the exchange hash.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "proto/base/buffer.hh"
#include "proto/base/result.hh"

namespace ferry::ssh {

enum class role : std::uint8_t { client, server };

struct version_limits {
    // Longest version line, CR LF included (RFC 4253 §4.2: 255).
    std::size_t max_version_line = 255;
    // Lines a server may send before its version line, and their total bytes (client only).
    std::size_t max_banner_lines = 128;
    std::size_t max_banner_bytes = 16 * 1024;
};

// Checks a version string we are about to send ("SSH-2.0-..." without CR LF).
bool valid_version_string(std::string_view v) noexcept;

class version_parser {
public:
    version_parser(role self, const version_limits& lim) noexcept : self_(self), lim_(lim) {}

    // Consumes bytes from the front of `in` up to and including the peer's version line and no
    // further (packets may follow in the same read). Returns true once the version is known.
    // Errors: errc::ssh_version (not SSH-2.0), errc::ssh_protocol (bad line, banner from a
    // client), errc::limit_exceeded (line or banner limits).
    result<bool> feed(bytes& in);

    bool done() const noexcept { return done_; }
    // The peer's version string without CR LF (V_C or V_S of the exchange hash).
    const std::string& peer_version() const noexcept { return line_; }
    std::size_t banner_lines() const noexcept { return banner_lines_; }

private:
    status finish_line();
    role self_;
    version_limits lim_;
    std::string line_;
    std::size_t banner_lines_ = 0;
    std::size_t banner_bytes_ = 0;
    bool done_ = false;
};

}  // namespace ferry::ssh
