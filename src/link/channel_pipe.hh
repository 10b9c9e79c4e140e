#pragma once
// The socket<->channel pump, both directions, with back-pressure (written once for the relay's
// consumers, the agent's targets and the interop test server's consumers).
//
// A pipe belongs to the connection on the socket side (its `sock`) and moves bytes between
// that socket and one SSH channel of an ssh_endpoint:
//
//   socket -> channel: bytes read are offered to the channel (send_data takes what the peer's
//     window, or a key exchange in progress, allows); while some wait, the socket's reading
//     is paused, and it resumes when the channel is writable again (pump()). The socket's EOF
//     becomes the channel's EOF once everything read before it went out.
//   channel -> socket: channel data is linked into the socket's output (no copy) and
//     acknowledged to the peer (consumed(), which reopens its window) only once that output
//     is at or below the socket's own watermark; above it the debt is paid at on_output_low.
//     A slow reader thus slows the SSH peer, and no byte is buffered without bound.
//   the session's output above its watermark: every pipe of the session pauses its socket's
//     reading until it drains (link_backpressure).
//
// Pauses are counted (reactor::connection::pause_reading), so the owner may pause for its own
// reasons too. The owner forwards its socket's on_output_high/low here and tells the pipe when
// the channel is bound, open and gone. Thread: the owner's shard.
#include <cstddef>
#include <cstdint>

#include "proto/base/buffer.hh"
#include "reactor/connection.hh"

namespace ferry::link {

class ssh_endpoint;

class channel_pipe {
public:
    explicit channel_pipe(reactor::connection& sock) noexcept : sock_(sock) {}
    channel_pipe(const channel_pipe&) = delete;
    channel_pipe& operator=(const channel_pipe&) = delete;
    ~channel_pipe();

    // The channel `id` of `ep`. `open`: the channel is confirmed (else bytes wait until open()).
    // The endpoint stays alive while the pipe is bound: the owner keeps a reference to the
    // endpoint's connection, and the endpoint unbinds its handlers when it ends.
    void bind(ssh_endpoint& ep, std::uint32_t id, bool open) noexcept;
    // Our open was confirmed: what waits goes out.
    void open() noexcept;
    // The channel or its session is gone: no more calls to the endpoint. Bytes still queued
    // toward the channel are dropped and pauses taken for it are released; the debt of
    // unacknowledged bytes is forgotten (window credit belongs to the channel that is gone).
    void unbind() noexcept;
    bool bound() const noexcept { return ep_ != nullptr; }
    // Changes at every bind() and unbind(): a caller whose callback may finish the channel and
    // bind the next one (a pipelined request) compares it before and after, so bytes of one
    // channel are never acknowledged on another.
    std::uint64_t generation() const noexcept { return gen_; }
    bool is_open() const noexcept { return ep_ != nullptr && open_; }
    std::uint32_t id() const noexcept { return id_; }
    ssh_endpoint* endpoint() const noexcept { return ep_; }

    // ---- socket -> channel ----
    void to_channel(slice s);
    // The socket's EOF: the channel's EOF follows the bytes queued before it.
    void socket_eof() noexcept;
    // Offers what waits to the channel (after a `writable` event or a key exchange).
    void pump() noexcept;
    bool waiting() const noexcept { return !to_channel_.empty(); }
    bool eof_sent() const noexcept { return eof_sent_; }

    // ---- channel -> socket ----
    // Channel bytes for the socket, as they are.
    void to_socket(slice piece);
    // `n` channel bytes were delivered in some other form (the owner transformed and queued
    // them itself, or dropped them): acknowledged like to_socket()'s, once the output is low.
    void delivered(std::size_t n) noexcept;
    // Acknowledges every delivered byte now, whatever the output holds (the bytes are handed
    // to someone else, e.g. a new connection that sends them again).
    void acknowledge_all() noexcept { repay(); }
    // Forwarded from the socket's reactor events.
    void on_output_high() noexcept { above_high_ = true; }
    void on_output_low() noexcept;

    // The session's output went above (true) or back below (false) its watermark.
    void link_backpressure(bool on) noexcept;

private:
    void settle() noexcept;
    void repay() noexcept;
    void set_pause(bool& flag, bool on) noexcept;

    reactor::connection& sock_;
    ssh_endpoint* ep_ = nullptr;
    std::uint32_t id_ = 0;
    std::uint64_t gen_ = 0;
    bool open_ = false;
    buffer_chain to_channel_;    // read from the socket, not yet taken by the channel
    bool window_pause_ = false;  // reading paused while to_channel_ waits for window
    bool link_pause_ = false;    // reading paused while the session's output is high
    bool eof_in_ = false, eof_sent_ = false;
    bool above_high_ = false;    // the socket's output is above its watermark
    std::size_t owed_ = 0;       // channel bytes delivered, not yet consumed() on the channel
};

}  // namespace ferry::link
