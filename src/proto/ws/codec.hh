#pragma once
// One WebSocket connection after the upgrade: a decoder, an encoder and the close handshake
// (RFC 6455 §7) in one sans-IO object. This is what the relay and the agent hold per
// connection; decoder and encoder stay usable on their own (benchmarks, fuzzers).
//
// What it does for the caller, writing into the `out` chain passed to next():
//   - answers a ping with a pong (unless options::auto_pong is off, or our close was sent);
//   - answers the peer's close with a close echoing its code (RFC 6455 §5.5.1);
//   - on a decoder error, sends a close with the mapped code (1002/1007/1009, close_code_for)
//     unless a close was already sent, and goes to `closed` ("fail the connection", §7.1.7).
//
// State (`state()`), and what to do with TCP:
//   open     both directions open.
//   closing  we sent a close; keep reading (data still arrives) until the peer's close, with a
//            timeout chosen by the caller (the codec reads no clock).
//   closed   the close handshake is complete, or the connection failed. Flush `out`, then:
//            a server closes TCP at once; a client waits briefly for the server to close first
//            (RFC 6455 §7.1.1), then closes it itself.
// When TCP ends without a close frame, the caller reports close_code::abnormal (1006) itself.
#include <cstdint>
#include <optional>

#include "proto/ws/decoder.hh"
#include "proto/ws/encoder.hh"

namespace ferry::ws {

enum class close_state : std::uint8_t { open, closing, closed };

struct codec_options {
    limits lim{};
    // Negotiated permessage-deflate parameters (from the handshake), nullopt for none.
    std::optional<deflate_params> pmd{};
    // Level, memLevel, min_size of our compressor (only used when pmd is set).
    deflate_config deflate{};
    // Client role: where mask keys come from (required).
    mask_source mask{};
    bool auto_pong = true;
};

class codec {
public:
    explicit codec(role r, const codec_options& o = {});

    // Decodes the next event (see decoder::next) and writes automatic replies into `out`.
    // On error the reply close is already in `out` and state() is closed.
    result<event> next(mut_bytes& in, buffer_chain& out) noexcept;

    // Senders: see encoder. Data and pings fail with errc::closed once our close was sent.
    status send(buffer_chain& out, opcode op, slice payload, const send_options& o = {}) {
        return enc_.send(out, op, std::move(payload), o);
    }
    status send_copy(buffer_chain& out, opcode op, bytes payload, const send_options& o = {}) {
        return enc_.send_copy(out, op, payload, o);
    }
    status send_part(buffer_chain& out, opcode op, slice payload, fin f, compress c = compress::no) {
        return enc_.send_part(out, op, std::move(payload), f, c);
    }
    status send_part_copy(buffer_chain& out, opcode op, bytes payload, fin f,
                          compress c = compress::no) {
        return enc_.send_part_copy(out, op, payload, f, c);
    }
    status ping(buffer_chain& out, bytes payload) { return enc_.ping(out, payload); }
    status pong(buffer_chain& out, bytes payload) { return enc_.pong(out, payload); }
    // Starts the close handshake (open -> closing), or completes it if the peer's close was
    // already received (-> closed; normally next() has answered it already).
    status close(buffer_chain& out, std::uint16_t code = close_code::normal,
                 std::string_view reason = {});

    close_state state() const noexcept { return state_; }
    // The peer's close code (1005 if its close had none), 0 while none was received.
    std::uint16_t peer_close_code() const noexcept { return peer_code_; }
    // The code of the close we sent (1005 for an empty one), 0 while none was sent.
    std::uint16_t sent_close_code() const noexcept { return sent_code_; }
    // The connection ended because of a decoder error (then decoder().failure() says which).
    bool failed() const noexcept { return dec_.failed(); }

    decoder& rx() noexcept { return dec_; }
    encoder& tx() noexcept { return enc_; }

private:
    decoder dec_;
    encoder enc_;
    close_state state_ = close_state::open;
    std::uint16_t peer_code_ = 0;
    std::uint16_t sent_code_ = 0;
    bool auto_pong_;
};

}  // namespace ferry::ws
