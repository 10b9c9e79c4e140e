#pragma once
// The receiving half of a WebSocket connection: frames in, events out, zero copy.
//
// The caller owns the receive buffer and passes it as `mut_bytes`; payload is unmasked in place
// and handed back as views into that same buffer. Only these are kept inside, all bounded:
// a header split across receives (<= 14 bytes), a control payload split across receives
// (<= 125 bytes), the UTF-8 state of a text message (4 bytes), and with permessage-deflate the
// inflate context (its 32 KiB window) and one output chunk (limits::inflate_chunk).
// Nothing is allocated per frame or per message.
//
// Usage (one decoder per connection, any thread, not shared):
//
//     mut_bytes in = received;                 // e.g. a provided-buffer-ring entry
//     for (;;) {
//         auto ev = dec.next(in);              // advances `in` past what it consumed
//         if (!ev) { /* close with close_code_for(ev.code()), then close TCP */ break; }
//         if (ev->type == event_type::need_more) break;   // `in` is now empty
//         // (loop on need_more, not on in.empty(): inflated output can outlast the input)
//         ...                                   // ev->payload points into `received`
//     }
//
// The caller may stop after any event and call again later with the same remaining `in`
// (the decoder keeps no pointer into it between calls). After need_more every byte has been
// consumed and the buffer may be reused, except what the caller still holds views into.
#include <cstdint>
#include <memory>
#include <optional>

#include "proto/base/buffer.hh"
#include "proto/base/result.hh"
#include "proto/ws/deflate.hh"
#include "proto/ws/frame.hh"
#include "proto/ws/utf8.hh"

namespace ferry::ws {

class decoder {
public:
    // `pmd`: the negotiated permessage-deflate parameters, or nullopt (RSV1 is then a protocol
    // error). The inflater is created here, never per message.
    explicit decoder(role r, const limits& lim = {},
                     const std::optional<deflate_params>& pmd = std::nullopt);
    ~decoder();
    decoder(decoder&&) noexcept;
    decoder& operator=(decoder&&) noexcept;
    decoder(const decoder&) = delete;
    decoder& operator=(const decoder&) = delete;

    // Decodes the next event from `in` and advances `in` past the bytes used. Returns
    // need_more when `in` is exhausted and nothing is pending. Call it until need_more, not
    // until `in` is empty: a compressed message whose inflated end exceeds one
    // limits::inflate_chunk delivers its last pieces from calls with an empty `in`. On a protocol violation returns an error whose code
    // maps to the close code to send (close_code_for); the decoder is then failed and returns
    // the same error on every later call. After a close event, further input is discarded.
    //
    // Errors: ws_protocol (1002): reserved opcode or RSV bit, wrong masking for the role,
    // non-minimal or 2^63+ length, fragmented or >125-byte control frame, continuation without
    // a message or a new message inside one, bad close code or 1-byte close payload.
    // ws_bad_utf8 (1007): invalid UTF-8 in a text message or close reason. ws_deflate (1007):
    // corrupt compressed data. ws_too_big (1009): a limit (checked on the header, before the
    // payload; for compressed messages also on the inflated size as it grows).
    result<event> next(mut_bytes& in) noexcept;

    role get_role() const noexcept { return role_; }
    bool in_message() const noexcept { return in_msg_; }
    bool close_received() const noexcept { return st_ == state::closed; }
    bool failed() const noexcept { return st_ == state::failed; }
    const error& failure() const noexcept { return err_; }
    const limits& get_limits() const noexcept { return lim_; }

private:
    enum class state : std::uint8_t {
        header,        // reading a frame header
        data,          // payload of a data frame
        inflate_tail,  // compressed message: all payload read, flushing the inflater
        control,       // payload of a control frame being collected
        closed,        // a close frame was received
        failed,
    };
    struct inflate_state;

    result<event> fail_with(errc c, const char* detail) noexcept;
    status check_start(unsigned b0, unsigned b1) const noexcept;
    static result<std::uint64_t> check_length(const std::byte* h) noexcept;
    status on_header(const std::byte* h) noexcept;
    result<event> data_piece(mut_bytes& in) noexcept;
    result<event> inflate_piece(mut_bytes& in) noexcept;
    result<event> inflate_finish(std::size_t already) noexcept;
    result<event> control_done(std::byte* p) noexcept;
    result<event> message_piece(std::byte* p, std::size_t n, bool end) noexcept;

    role role_;
    state st_ = state::header;
    limits lim_;

    // Current frame.
    bool fin_ = false;
    opcode op_ = opcode::binary;
    std::uint32_t key_ = 0;         // 0 for unmasked frames: XOR with 0 is a no-op we skip
    bool masked_ = false;
    std::uint8_t phase_ = 0;        // payload offset of the next byte, mod 4
    std::uint64_t remaining_ = 0;   // payload bytes of the frame not yet consumed
    std::size_t premasked_ = 0;     // inflate: bytes at the front of `in` already unmasked

    // Current message.
    bool in_msg_ = false;
    bool msg_started_ = false;      // its first piece has been delivered
    bool msg_compressed_ = false;
    opcode msg_op_ = opcode::binary;
    std::uint64_t msg_size_ = 0;    // wire bytes so far
    std::uint64_t inflated_ = 0;    // inflated bytes so far
    utf8_validator utf8_;

    // Partial header.
    std::uint8_t hlen_ = 0;
    std::uint8_t hneed_ = 2;
    std::byte hbuf_[max_header_size];

    // Partial control payload.
    std::uint8_t clen_ = 0;
    std::byte cbuf_[125];

    std::optional<deflate_params> pmd_;
    std::unique_ptr<inflate_state> inf_;
    error err_{};
};

}  // namespace ferry::ws
