#pragma once
// Incremental UTF-8 validation (RFC 3629) for text messages and close reasons.
//
// A text message arrives in fragments and each fragment in receive-sized pieces, so a code point
// may be split anywhere: the validator keeps at most the expectations of one partial sequence
// (bytes still needed and the allowed range of the next one) between calls. It rejects what
// RFC 3629 forbids: overlong forms, UTF-16 surrogates (U+D800..U+DFFF), code points above
// U+10FFFF, stray continuation bytes, and (at `complete()`) a sequence cut off by the end of the
// message. Invalid input is reported at the first byte that makes it invalid, so the connection
// fails fast (RFC 6455 §8.1).
//
// Fast path: 16 bytes of ASCII are checked with one vector compare (SSE2) or two 8-byte word
// tests, and runs of 2-byte sequences (Latin, Cyrillic, Greek text) are decoded without
// returning to the dispatch loop.
#include <cstddef>
#include <cstdint>

#include "proto/base/buffer.hh"

namespace ferry::ws {

class utf8_validator {
public:
    // Validates the next `n` bytes of the stream. Returns false when they make the stream
    // invalid; the validator then stays invalid until reset().
    bool feed(const std::byte* p, std::size_t n) noexcept;
    bool feed(bytes b) noexcept { return feed(b.data(), b.size()); }
    // True when everything fed so far is valid and no code point is left unfinished: call at the
    // end of a message.
    bool complete() const noexcept { return need_ == 0 && !bad_; }
    bool failed() const noexcept { return bad_; }
    void reset() noexcept { *this = utf8_validator{}; }

private:
    bool fail() noexcept {
        bad_ = true;
        return false;
    }
    std::uint8_t need_ = 0;     // continuation bytes still expected (0..3)
    std::uint8_t lo_ = 0x80;    // allowed range of the next continuation byte
    std::uint8_t hi_ = 0xBF;
    bool bad_ = false;
};

// One-shot check of a complete string.
bool valid_utf8(bytes b) noexcept;

}  // namespace ferry::ws
