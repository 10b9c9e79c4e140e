#pragma once
// WebSocket vocabulary (RFC 6455 §5): roles, opcodes, close codes, limits, the frame header and
// the event the decoder yields. See README.md in this folder for the whole codec.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "proto/base/buffer.hh"
#include "proto/base/result.hh"

namespace ferry::ws {

// Which end of the connection this codec is. A server receives masked frames and sends unmasked
// ones; a client the reverse (RFC 6455 §5.1).
enum class role : std::uint8_t { server, client };

enum class opcode : std::uint8_t {
    continuation = 0x0,
    text = 0x1,
    binary = 0x2,
    close = 0x8,
    ping = 0x9,
    pong = 0xA,
};

constexpr bool is_control(opcode op) noexcept { return (static_cast<unsigned>(op) & 0x8) != 0; }

// Close status codes (RFC 6455 §7.4.1; 1012..1014 from the IANA registry).
namespace close_code {
inline constexpr std::uint16_t normal = 1000;
inline constexpr std::uint16_t going_away = 1001;
inline constexpr std::uint16_t protocol_error = 1002;
inline constexpr std::uint16_t unsupported_data = 1003;
inline constexpr std::uint16_t no_status = 1005;    // never on the wire: "the close had no code"
inline constexpr std::uint16_t abnormal = 1006;     // never on the wire: "TCP closed without close"
inline constexpr std::uint16_t invalid_payload = 1007;  // e.g. bad UTF-8 in a text message
inline constexpr std::uint16_t policy = 1008;
inline constexpr std::uint16_t too_big = 1009;
inline constexpr std::uint16_t missing_extension = 1010;
inline constexpr std::uint16_t internal_error = 1011;
inline constexpr std::uint16_t service_restart = 1012;
inline constexpr std::uint16_t try_again_later = 1013;
inline constexpr std::uint16_t bad_gateway = 1014;
inline constexpr std::uint16_t tls_handshake = 1015;  // never on the wire
}  // namespace close_code

// May `code` appear in a close frame? 1000..1003, 1007..1011, the registered 1012..1014, and
// 3000..4999 (registered and private use). 1004 (reserved), 1005, 1006, 1015 (local-only
// pseudo-codes) and everything else are a protocol error (1002) when received.
//
// 1012..1014 are accepted although RFC 6455 predates them: they are in the IANA registry and
// both npm `ws` and Python `websockets` send them on restart; answering "service restart" with
// a protocol error would be wrong. (wslay and the Autobahn suite reject them.)
constexpr bool valid_close_code(std::uint16_t code) noexcept {
    if (code >= 1000 && code <= 1014) return code != 1004 && code != 1005 && code != 1006;
    return code >= 3000 && code <= 4999;
}

// The close code that reports a decoder error to the peer: ws_protocol (and malformed,
// bad_length) -> 1002, ws_bad_utf8 and ws_deflate -> 1007, ws_too_big and limit_exceeded ->
// 1009, ws_policy -> 1008, closed -> 1000, anything else (an internal failure) -> 1011.
std::uint16_t close_code_for(errc e) noexcept;

// Receive limits, all checked against the frame header before any payload byte is buffered or
// delivered (STYLE 3). Defaults follow SPEC R6.
struct limits {
    // Payload bytes of one data frame as declared on the wire (compressed size if RSV1).
    // Over -> ws_too_big (1009). Default 1 MiB.
    std::uint64_t max_frame_payload = std::uint64_t(1) << 20;
    // Bytes of one whole message after reassembly (and after inflation for permessage-deflate:
    // this is also the decompression bomb limit). Over -> ws_too_big (1009). Default 16 MiB, so
    // a large message must arrive fragmented into frames of at most max_frame_payload. The codec
    // never buffers a message, so this only bounds what the application may be asked to hold.
    std::uint64_t max_message = std::uint64_t(16) << 20;
    // Control frame payload (ping, pong, close). RFC 6455 caps it at 125 (more is a protocol
    // error, 1002); a lower value here makes longer control payloads ws_too_big (1009).
    std::uint32_t max_control_payload = 125;
    // Size of the inflate output buffer, allocated once per codec when permessage-deflate is
    // negotiated; a data event of a compressed message carries at most this many bytes.
    std::uint32_t inflate_chunk = 16 * 1024;
};

// A decoded frame header.
struct frame_header {
    bool fin = true;
    bool rsv1 = false;  // permessage-deflate: "this message is compressed" (first frame only)
    opcode op = opcode::binary;
    bool masked = false;
    std::uint32_t mask_key = 0;  // the 4 wire bytes in memory order (see mask.hh)
    std::uint64_t payload_len = 0;
};

inline constexpr std::size_t max_header_size = 14;  // 2 + 8 (64-bit length) + 4 (mask key)

// Size of the header that encodes `payload_len` (masked or not), 2..14.
constexpr std::size_t header_size(std::uint64_t payload_len, bool masked) noexcept {
    return 2 + (payload_len < 126 ? 0 : payload_len <= 0xFFFF ? 2 : 8) + (masked ? 4 : 0);
}

// Writes `h` with the minimal length form into out[0, 14) and returns its size.
// Precondition: h.payload_len < 2^63 and, for control opcodes, <= 125 (caller's data, not peer's).
std::size_t encode_header(std::byte* out, const frame_header& h) noexcept;

// What the decoder yields. Everything it points at is valid until the next call to next() and,
// for views into the caller's receive buffer, as long as that buffer.
enum class event_type : std::uint8_t {
    need_more,  // every input byte was consumed (partial header/control payload kept inside)
    data,       // a piece of a text/binary message
    ping,
    pong,
    close,      // the peer's close frame; the decoder ignores input after it
};

struct event {
    event_type type = event_type::need_more;
    // data: the message's opcode (text or binary), also for pieces from continuation frames.
    opcode op = opcode::binary;
    // data: `first` is set on the first piece of a message (message start), `last` on its final
    // piece (message end; UTF-8 of a text message has then been checked completely). An empty
    // message is one event with both set and an empty payload; a piece may be empty only when
    // it carries `last`.
    bool first = false;
    bool last = false;
    // data: message bytes, already unmasked, as a view into the caller's receive buffer, or, for
    // a compressed message, into the decoder's inflate buffer (valid until the next call).
    // ping/pong: the application data. close: the reason (after the 2-byte code).
    mut_bytes payload{};
    // close: the peer's code, or close_code::no_status (1005) when its close frame was empty.
    std::uint16_t code = 0;

    std::string_view text() const noexcept {
        return {reinterpret_cast<const char*>(payload.data()), payload.size()};
    }
};

}  // namespace ferry::ws
