#pragma once
// base64url without padding (RFC 4648 §5, as JWS uses it: RFC 7515 §2 and appendix C).
//
// The decoder is strict because a token's bytes are also its cache key and its signing input:
// every accepted text must have exactly one decoding and every decoding exactly one text.
// It rejects '=' padding, any byte outside [A-Za-z0-9_-] (including whitespace and the '+' '/'
// of standard base64), a length of 1 mod 4 (no whole byte), and non-canonical tails (unused low
// bits of the last character that are not zero, RFC 4648 §3.5).
#include <cstddef>
#include <string>
#include <string_view>

#include "proto/base/buffer.hh"
#include "proto/base/result.hh"

namespace ferry::jwt::base64url {

// Number of bytes `decode` produces for `text_len` characters, or SIZE_MAX if the length is
// impossible (1 mod 4).
std::size_t decoded_size(std::size_t text_len) noexcept;
// Number of characters `encode` produces for `n` bytes.
constexpr std::size_t encoded_size(std::size_t n) noexcept { return (n / 3) * 4 + (n % 3 ? n % 3 + 1 : 0); }

// Decodes `text` into `out`. Precondition: out.size() >= decoded_size(text.size()) (checked:
// a short buffer fails with errc::invalid_argument). Returns the number of bytes written.
// Errors: errc::malformed with `offset` at the offending character.
result<std::size_t> decode(std::string_view text, mut_bytes out) noexcept;

// Convenience for tests and the key loader: decodes into a fresh string.
result<std::string> decode(std::string_view text);

// Appends the unpadded base64url encoding of `in` to `out`.
void encode(bytes in, std::string& out);
inline std::string encode(bytes in) {
    std::string s;
    encode(in, s);
    return s;
}

}  // namespace ferry::jwt::base64url
