#pragma once
// Vocabulary shared by the HTTP/1.1 head parsers, body decoders and head writer
// (RFC 9110 semantics, RFC 9112 message syntax). See README.md in this folder.
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <string_view>

#include "proto/base/buffer.hh"
#include "proto/base/result.hh"

namespace ferry::http1 {

enum class version : std::uint8_t { http_1_0 = 10, http_1_1 = 11 };

// Every size limit of the codec (STYLE 3: checked before anything is buffered). One `limits`
// value per parser; the relay keeps one for consumer requests and one for upstream responses.
struct limits {
    // Bytes of one head: leading empty lines (requests), start line, field lines and the empty
    // line, i.e. the `consumed` count of a finished head. Over -> http_header_too_large (431).
    // The caller never needs to buffer more than this many bytes of a head.
    std::size_t max_head_bytes = 16 * 1024;
    // Field lines in one head. Over -> http_too_many_headers (431). The effective limit is the
    // smaller of this and the size of caller-provided header storage.
    std::size_t max_headers = 100;
    // Start line without its CRLF. Over -> http_uri_too_long (414) for a request line,
    // http_header_too_large for a status line.
    std::size_t max_start_line = 8 * 1024;
    // Body bytes (Content-Length value, or sum of chunk sizes, or bytes read until close).
    // Over -> http_body_too_large (413). Checked against the declared size before any byte of
    // the body arrives. Set to the maximum to disable.
    std::uint64_t max_body = std::uint64_t(1) << 30;
    // One chunk-size line: hex digits, extensions, CRLF. Over -> http_bad_request. Extensions
    // are skipped, so this is all they may cost.
    std::size_t max_chunk_line = 1024;
    // Trailer section after the last chunk, including its final CRLF. Over ->
    // http_header_too_large.
    std::size_t max_trailer_bytes = 8 * 1024;
};

// A field line as views into the caller's input (OWS around the value trimmed).
struct header {
    std::string_view name;
    std::string_view value;
};

enum class body_kind : std::uint8_t {
    none,            // no body: 1xx/204/304, a response to HEAD, a request without CL/TE
    content_length,  // exactly `length` bytes (may be 0)
    chunked,         // chunked transfer coding is the final coding
    until_close,     // a response without a length: the body ends when the connection closes
};

struct framing {
    body_kind kind = body_kind::none;
    std::uint64_t length = 0;  // body_kind::content_length only
};

// Where a parser was when it stopped (STYLE 3: error = code, offset, state).
enum class stage : std::uint8_t {
    start_line,      // request line / status line (incl. leading empty lines)
    header_line,     // field lines of the head, and the head-level checks at its end
    body,            // Content-Length / until-close body
    chunk_size,      // hex digits of a chunk-size line
    chunk_ext,       // chunk extensions and the line's CRLF
    chunk_data,      // chunk payload
    chunk_data_end,  // the CRLF after chunk payload
    trailer,         // trailer section after the last chunk
    done,            // the message part ended
};

enum class outcome : std::uint8_t {
    need_more,  // every byte given was consumed (or, for heads, remembered); call again with more
    payload,    // body decoders: `data` holds payload; call again with in.subspan(consumed)
    done,       // this head / body ended after `consumed` bytes; later bytes are the next message's
    failed,     // `err` says why: code, offset (from the start of the head / body), detail
};

// The one result shape of every parser here (STYLE 3).
struct progress {
    outcome kind = outcome::need_more;
    // Heads: when done, the head's length from the start of the input (the input passed to the
    // parser starts at the head, so this is where the body starts). Bodies: bytes of this call's
    // input used by this step.
    std::size_t consumed = 0;
    // Body decoders: payload delivered by this step, a view into this call's input. Valid
    // whenever non-empty, whatever `kind` is (a Content-Length body's last piece comes with done).
    bytes data{};
    // Chunked bodies in pass_through: the trailer field lines within this call's input (a view
    // into it, possibly empty). A forwarder sends the consumed bytes minus these: trailers are
    // dropped, never forwarded (a trailer could carry Authorization, framing or hop-by-hop
    // fields the head rules would have removed; issue 11).
    bytes dropped{};
    error err{};
    stage at = stage::start_line;

    bool need_more() const noexcept { return kind == outcome::need_more; }
    bool done() const noexcept { return kind == outcome::done; }
    bool failed() const noexcept { return kind == outcome::failed; }
};

// ---- helpers -----------------------------------------------------------------------------------

// ASCII case-insensitive equality (field names, tokens). Inline: it mostly fails on the length.
inline bool iequals(std::string_view a, std::string_view b) noexcept {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i) {
        unsigned char x = static_cast<unsigned char>(a[i]), y = static_cast<unsigned char>(b[i]);
        if (x == y) continue;
        // Equal ignoring case only if they differ in bit 0x20 and are letters.
        if ((x ^ y) != 0x20 || static_cast<unsigned char>((x | 0x20) - 'a') > 25) return false;
    }
    return true;
}

// True when the comma-separated list `value` (RFC 9110 §5.6.1: elements separated by commas
// with OWS, empty elements ignored) has an element equal to `token`, case-insensitively.
// has_token("keep-alive, Upgrade", "upgrade") == true.
bool has_token(std::string_view value, std::string_view token) noexcept;

// Host = uri-host [ ":" port ] (RFC 9110 7.2, RFC 3986 3.2.2): an IP-literal in brackets, or a
// reg-name / IPv4address of unreserved, pct-encoded and sub-delims characters; port = *DIGIT.
// An empty value is valid (a request whose target has no authority). The request parser
// refuses a Host field that is not (400).
bool valid_host(std::string_view v) noexcept;

// First header named `name` (case-insensitive), or nullptr.
const header* find_header(std::span<const header> headers, std::string_view name) noexcept;

// Status code a server answers a request that failed to parse with `code`: 400, 413, 414, 431,
// 501 or 505 (400 for any code not specific to HTTP). A response from upstream that fails to
// parse is the relay's 502, whatever the code.
int status_for(errc code) noexcept;

// Standard reason phrase of a status code ("Not Found"), "" when unknown.
std::string_view reason_phrase(int status_code) noexcept;

}  // namespace ferry::http1
