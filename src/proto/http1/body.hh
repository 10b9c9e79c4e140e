#pragma once
// Message body framing (RFC 9112 §6-§7): a Content-Length tracker, a streaming chunked decoder
// and a reader that picks one from a head's `framing`.
//
// All of them are streaming and copy nothing: any split of the input is fine, nothing needs to
// stay alive between calls, payload comes back as views into the call's input.
//
// Two ways to use each:
//   decode(in)        one step: framing bytes are consumed, payload is returned in `data`.
//                     Loop while kind == outcome::payload, each time on in.subspan(consumed).
//   pass_through(in)  validates the framing of everything it is given, up to the end of the
//                     message, and says how many bytes belong to this body (`consumed`): the
//                     relay forwards exactly those bytes unchanged, except a chunked body's
//                     trailer field lines (`dropped`, which it leaves out); later bytes are the
//                     next message's. Payload is not touched (chunk data is skipped over).
// After failed every call returns the same failure; after done they return done with consumed 0.
// Error offsets count from the first byte of the body.
#include <cstddef>
#include <cstdint>

#include "proto/http1/types.hh"

namespace ferry::http1 {

// Exactly `length` bytes (RFC 9112 §6.2). The length was checked against limits::max_body by
// the head parser.
class length_body {
public:
    explicit length_body(std::uint64_t length = 0) noexcept : remaining_(length) {}
    void reset(std::uint64_t length) noexcept { remaining_ = length; }

    progress decode(bytes in) noexcept;
    progress pass_through(bytes in) noexcept;
    std::uint64_t remaining() const noexcept { return remaining_; }
    bool done() const noexcept { return remaining_ == 0; }

private:
    std::uint64_t remaining_;
};

// chunked-body = *chunk last-chunk trailer-section CRLF (RFC 9112 §7.1), read as strictly as
// llhttp does, so that no server behind the relay reads a chunk boundary elsewhere:
//   * chunk-size: HEXDIG+, overflow and limits::max_body checked before any data is accepted;
//     nothing between the size and ";" or CRLF (RFC 9112's BWS before ";" is refused);
//   * chunk-ext: ";" ... skipped: visible ASCII, SP and HTAB only (no CTLs, no obs-text), the
//     whole size line bounded by limits::max_chunk_line;
//   * CRLF everywhere: bare LF and bare CR rejected, CRLF after chunk data checked;
//   * trailer section: field lines validated like the head's (token name, no space before the
//     colon, no obs-fold, no CTLs), Content-Length and Transfer-Encoding refused (RFC 9110
//     §6.5.1: framing never comes from a trailer), bounded by limits::max_trailer_bytes; the
//     field lines are reported as `dropped` by pass_through and never delivered by decode.
class chunked_decoder {
public:
    explicit chunked_decoder(const limits& l = {}) noexcept : lim_(l) {}
    void reset() noexcept;

    progress decode(bytes in) noexcept;
    progress pass_through(bytes in) noexcept;

    bool done() const noexcept { return s_ == state::done; }
    // Sum of the chunk sizes announced so far.
    std::uint64_t payload_bytes() const noexcept { return total_; }
    // Bytes consumed since reset (framing + payload).
    std::uint64_t consumed_bytes() const noexcept { return offset_; }

private:
    enum class state : std::uint8_t {
        size_first, size, ext, size_lf,
        data, data_cr, data_lf,
        trailer_line, trailer_name, trailer_value, trailer_lf, trailer_end_lf,
        done, failed,
    };
    progress fail(errc c, const char* detail, std::size_t i) noexcept;
    stage where() const noexcept;

    limits lim_;
    state s_ = state::size_first;
    std::uint64_t chunk_ = 0;   // chunk size being read, then data left of this chunk
    std::uint64_t total_ = 0;   // payload announced so far
    std::uint64_t offset_ = 0;  // bytes consumed since reset
    std::size_t line_ = 0;      // bytes of the current chunk-size line
    std::size_t trailer_ = 0;   // bytes of the trailer section
    char tname_[18] = {};       // the trailer field name being read, lower case (first 18 bytes)
    std::uint8_t tname_len_ = 0;
    progress last_{};           // the sticky failure
};

// A body delimited as a head said: none, Content-Length, chunked, or until the connection
// closes (responses). One per connection direction; start() it after each head.
class body_reader {
public:
    explicit body_reader(const limits& l = {}) noexcept : lim_(l), chunked_(l) {}

    void start(framing f) noexcept;
    progress decode(bytes in) noexcept;
    progress pass_through(bytes in) noexcept;
    // The peer closed the connection: done for until_close (or a body already complete),
    // failed with errc::closed ("truncated body") otherwise.
    progress finish() noexcept;
    bool done() const noexcept;
    body_kind kind() const noexcept { return f_.kind; }

private:
    progress until_close(bytes in, bool deliver) noexcept;

    limits lim_;
    framing f_{};
    length_body length_{};
    chunked_decoder chunked_;
    std::uint64_t read_ = 0;  // until_close: bytes so far
    bool closed_ = false;     // until_close: finish() was called
    bool failed_ = false;
};

}  // namespace ferry::http1
