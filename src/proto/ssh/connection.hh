#pragma once
// The SSH connection protocol (RFC 4254), both roles, sans-IO, on top of a `transport`.
//
//   connection c(t, cfg);                    // after user authentication succeeded
//   auto ev = c.handle(payload, out);        // every transport `message` payload (>= 80)
//   c.send_data(id, bytes, out)              // -> how many bytes left (window, packet size)
//   c.consumed(id, n, out)                   // the caller delivered n received bytes: reopen
//                                            //   the window (WINDOW_ADJUST when worth it)
//
// Channels: open/confirm/failure, data and extended data, EOF, CLOSE. One event per message,
// like the transport. Channel numbers are ours (`id`, small integers reused after `closed`);
// the peer's numbers never leave this class.
//
// Flow control pushes back instead of buffering: send_data() sends at most what the peer's
// window allows and returns the count; the rest stays with the caller, who stops reading its
// source until a `writable` event (the peer adjusted its window) or until `writable_after_kex`
// is drained after a rekey. Our receive window only reopens when the caller says the bytes
// were delivered (consumed()), so a slow consumer slows the peer down.
//
// Requests the embedder must answer at once (global requests, channel requests) go through a
// `connection_policy`, called synchronously. Channel opens from the peer are an event: the
// embedder answers later with confirm_open()/refuse_open() (the agent connects to its target
// first). Unknown global/channel requests are refused; shell, exec, pty-req, subsystem, env,
// x11 and agent forwarding are refused unless the policy says otherwise.
//
// Errors: a peer violation (unknown channel number, window overrun, data after EOF, an
// oversized data packet, a malformed message) appends DISCONNECT(PROTOCOL_ERROR) to `out` and
// returns the error; the session is over. Calls the embedder makes with a bad id fail with
// errc::invalid_argument and change nothing.
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "proto/base/buffer.hh"
#include "proto/base/result.hh"
#include "proto/ssh/transport.hh"

namespace ferry::ssh {

namespace msg {
inline constexpr std::uint8_t global_request = 80;
inline constexpr std::uint8_t request_success = 81;
inline constexpr std::uint8_t request_failure = 82;
inline constexpr std::uint8_t channel_open = 90;
inline constexpr std::uint8_t channel_open_confirmation = 91;
inline constexpr std::uint8_t channel_open_failure = 92;
inline constexpr std::uint8_t channel_window_adjust = 93;
inline constexpr std::uint8_t channel_data = 94;
inline constexpr std::uint8_t channel_extended_data = 95;
inline constexpr std::uint8_t channel_eof = 96;
inline constexpr std::uint8_t channel_close = 97;
inline constexpr std::uint8_t channel_request = 98;
inline constexpr std::uint8_t channel_success = 99;
inline constexpr std::uint8_t channel_failure = 100;
}  // namespace msg

// SSH_MSG_CHANNEL_OPEN_FAILURE reason codes (RFC 4254 §5.1).
enum class open_failure : std::uint32_t {
    administratively_prohibited = 1,
    connect_failed = 2,
    unknown_channel_type = 3,
    resource_shortage = 4,
};

struct connection_limits {
    std::uint32_t max_channels = 1024;             // open or opening, per session
    std::uint32_t window = 2 * 1024 * 1024;        // our receive window per channel
    std::uint32_t max_packet = 32 * 1024;          // largest data payload we accept
    std::uint32_t max_outstanding_requests = 64;   // our global requests awaiting replies
    std::uint32_t max_forwards = 64;               // tcpip-forward bindings per session
    std::uint32_t min_peer_packet = 64;            // peers announcing less are refused
    // While our side of a rekey holds output back, channel data stops this far short of the
    // transport's queue limit so control messages still fit (at most a quarter of
    // transport_limits::max_kex_queue_bytes is reserved).
    std::uint32_t kex_control_reserve = 64 * 1024;
};

// What a channel open carries (RFC 4254 §6.1, §7.1, §7.2). Views into the message payload,
// valid during the event.
struct open_info {
    std::string_view type;          // "session", "direct-tcpip", "forwarded-tcpip", ...
    std::string_view host;          // direct-tcpip: target; forwarded-tcpip: the bound address
    std::uint32_t port = 0;
    std::string_view origin_host;   // who connected
    std::uint32_t origin_port = 0;
};

// The embedder's synchronous answers. Default: refuse everything.
class connection_policy {
public:
    virtual ~connection_policy() = default;
    // Server: "tcpip-forward" for `address` (ferry: a tunnel name) and `port`. Return false to
    // refuse; set `bound_port` when `port` was 0 (it is sent back to the client).
    virtual bool tcpip_forward(std::string_view address, std::uint32_t port,
                               std::uint32_t& bound_port) {
        return false;
    }
    virtual bool cancel_tcpip_forward(std::string_view address, std::uint32_t port) {
        return false;
    }
    // A channel request other than those handled here (exit-status, exit-signal,
    // eof@openssh.com are accepted silently). `data` is what follows want-reply.
    virtual bool channel_request(std::uint32_t id, std::string_view type, bytes data) {
        return false;
    }
};

struct connection_config {
    connection_policy* policy = nullptr;  // not owned; null: refuse everything
    connection_limits limits;
};

enum class conn_event_type : std::uint8_t {
    none,          // nothing for the embedder (a reply was sent, a window grew, ...)
    open_request,  // the peer asks to open channel `id` (`open`); answer with confirm_open()
                   // or refuse_open(), now or later
    opened,        // our open of `id` was confirmed: data may flow
    open_failed,   // our open of `id` was refused (`reason`, `text`); `id` is free again
    data,          // `data` arrived on `id` (`ext` = 0, or the extended data type code);
                   // call consumed() once delivered
    eof,           // the peer will send no more data on `id`
    closed,        // the channel is gone on both sides; `id` may be reused from now on
    writable,      // `id` was blocked on the peer's window and may send again
    global_reply,  // a reply to our global request `request` (`ok`, `port` for
                   // tcpip-forward with port 0)
};
const char* to_string(conn_event_type t) noexcept;

// What our global requests were, to match replies (they come in order, RFC 4254 §4).
enum class global_kind : std::uint8_t { tcpip_forward, cancel_tcpip_forward, keepalive };

struct conn_event {
    conn_event_type type = conn_event_type::none;
    std::uint32_t id = 0;
    open_info open;                 // open_request
    mut_bytes data{};               // data: decrypted in place, valid until the next call
    std::uint32_t ext = 0;          // data: 0 = normal, else SSH_MSG_CHANNEL_EXTENDED_DATA code
    open_failure reason{};          // open_failed
    std::string_view text{};        // open_failed: description
    global_kind request{};          // global_reply
    bool ok = false;                // global_reply
    std::uint32_t port = 0;         // global_reply: bound port for tcpip-forward with port 0
};

class connection {
public:
    connection(transport& t, connection_config cfg);
    connection(const connection&) = delete;
    connection& operator=(const connection&) = delete;

    // One upper-layer payload from the transport (message number first). Messages 50..79
    // (late authentication traffic) are ignored; others below 80 are the caller's mistake.
    result<conn_event> handle(mut_bytes payload, buffer_chain& out);

    // ---- opening channels ------------------------------------------------------------------
    // Client: "direct-tcpip" to host:port (origin as reported to the server).
    result<std::uint32_t> open_direct_tcpip(std::string_view host, std::uint32_t port,
                                            std::string_view origin_host,
                                            std::uint32_t origin_port, buffer_chain& out);
    // Server: "forwarded-tcpip" for a binding made by tcpip-forward.
    result<std::uint32_t> open_forwarded_tcpip(std::string_view bound_address,
                                               std::uint32_t bound_port,
                                               std::string_view origin_host,
                                               std::uint32_t origin_port, buffer_chain& out);
    // Any channel type; `extra` is the type-specific data.
    result<std::uint32_t> open(std::string_view type, bytes extra, buffer_chain& out);
    // Answers an open_request.
    status confirm_open(std::uint32_t id, buffer_chain& out);
    status refuse_open(std::uint32_t id, open_failure reason, std::string_view text,
                       buffer_chain& out);

    // ---- data --------------------------------------------------------------------------------
    // Sends up to data.size() bytes (split at the peer's packet size, bounded by its window and,
    // during a rekey, by the transport's queue). Returns how many were sent; when fewer, a
    // `writable` event (or writable_after_kex) follows once more can go.
    result<std::size_t> send_data(std::uint32_t id, bytes data, buffer_chain& out);
    result<std::size_t> send_extended(std::uint32_t id, std::uint32_t code, bytes data,
                                      buffer_chain& out);
    // The caller delivered `n` bytes received on `id`: the window reopens (WINDOW_ADJUST is
    // sent once half the window is owed).
    status consumed(std::uint32_t id, std::size_t n, buffer_chain& out);
    status send_eof(std::uint32_t id, buffer_chain& out);
    // Sends CLOSE (once). The id stays reserved until the peer's CLOSE: `closed` then.
    status close(std::uint32_t id, buffer_chain& out);
    // A channel request from us ("exit-status", ...), never wanting a reply.
    status send_request(std::uint32_t id, std::string_view type, bytes data, buffer_chain& out);

    // ---- global requests -------------------------------------------------------------------
    status request_tcpip_forward(std::string_view address, std::uint32_t port,
                                 buffer_chain& out);
    status cancel_tcpip_forward(std::string_view address, std::uint32_t port,
                                buffer_chain& out);
    // keepalive@openssh.com with want-reply: any reply proves the peer alive.
    status send_keepalive(buffer_chain& out);
    // Our global requests not answered yet (a dead peer lets them pile up).
    std::size_t outstanding_requests() const noexcept { return requests_.size(); }

    // ---- state -------------------------------------------------------------------------------
    // After the transport reported rekey_done: the channels a full rekey queue blocked. Each
    // is returned once; call until it returns nullopt.
    std::optional<std::uint32_t> writable_after_kex() noexcept;
    std::size_t open_channels() const noexcept { return live_; }
    bool is_open(std::uint32_t id) const noexcept;
    // How much the peer lets us send on `id` now (0 for unknown ids).
    std::uint32_t send_window(std::uint32_t id) const noexcept;
    // The peer sent no-more-sessions@openssh.com.
    bool no_more_sessions() const noexcept { return no_more_sessions_; }
    // keepalive@openssh.com requests the peer sent (each answered with SUCCESS if wanted).
    std::uint64_t peer_keepalives() const noexcept { return keepalives_; }

private:
    enum class chan_state : std::uint8_t {
        free,
        opening_out,  // we sent OPEN
        opening_in,   // the peer sent OPEN; the embedder has not answered
        open,
    };
    struct channel {
        chan_state state = chan_state::free;
        bool sent_eof = false, got_eof = false;
        bool sent_close = false, got_close = false;
        bool blocked = false;      // send_data stopped on the peer's window
        bool kex_blocked = false;  // send_data stopped on the transport's rekey queue
        std::uint32_t peer_id = 0;
        std::uint32_t peer_window = 0;
        std::uint32_t peer_max_packet = 0;
        std::uint32_t local_window = 0;  // what the peer may still send
        std::uint32_t owed = 0;          // consumed but not yet returned by WINDOW_ADJUST
    };

    result<conn_event> dispatch(mut_bytes payload, buffer_chain& out);
    result<conn_event> on_global_request(bytes payload, buffer_chain& out);
    result<conn_event> on_request_reply(bool ok, bytes payload, buffer_chain& out);
    result<conn_event> on_open(bytes payload, buffer_chain& out);
    result<conn_event> on_open_confirmation(bytes payload, buffer_chain& out);
    result<conn_event> on_open_failure(bytes payload, buffer_chain& out);
    result<conn_event> on_window_adjust(bytes payload, buffer_chain& out);
    result<conn_event> on_data(mut_bytes payload, bool extended, buffer_chain& out);
    result<conn_event> on_eof(bytes payload, buffer_chain& out);
    result<conn_event> on_close(bytes payload, buffer_chain& out);
    result<conn_event> on_channel_request(bytes payload, buffer_chain& out);
    result<conn_event> on_channel_reply(bytes payload, buffer_chain& out);

    // The channel a peer message addresses, or a fatal error (unknown number).
    result<channel*> peer_channel(std::uint32_t id, buffer_chain& out);
    channel* ours(std::uint32_t id) noexcept;
    result<std::uint32_t> allocate();
    void release(std::uint32_t id) noexcept;
    status send_global(std::string_view name, bool want_reply, bytes data, global_kind kind,
                       buffer_chain& out);
    result<std::size_t> send_chunks(std::uint32_t id, std::optional<std::uint32_t> code,
                                    bytes data, buffer_chain& out);
    status send_small(bytes payload, buffer_chain& out);
    failure protocol_error(const char* why, buffer_chain& out);

    transport& t_;
    connection_config cfg_;
    std::vector<channel> channels_;
    std::vector<std::uint32_t> free_;  // free ids, reused last-in first-out
    std::size_t live_ = 0;
    std::deque<global_kind> requests_;
    std::vector<std::uint32_t> kex_blocked_;
    std::vector<std::uint32_t> drain_;  // the writable_after_kex() drain in progress
    bool draining_ = false;
    std::vector<std::pair<std::string, std::uint32_t>> forwards_;  // tcpip-forward bindings
    bool no_more_sessions_ = false;
    std::uint64_t keepalives_ = 0;
    std::vector<std::byte> scratch_;
};

}  // namespace ferry::ssh
