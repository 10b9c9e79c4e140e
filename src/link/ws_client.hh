#pragma once
// The client side of a WebSocket connection on the reactor, the mirror of ws_server.hh: sends the
// HTTP/1.1 upgrade request (with extra header lines such as `Authorization: Bearer ...`), checks
// the 101 answer with src/proto/ws/handshake.hh, then runs the WebSocket codec in client role.
// The agent's link to the relay is built on it; tests use it as an independent-from-Python
// client of ferry's WebSocket servers.
//
//   auto c = std::make_unique<my_client>(shard, opts, rng);   // derives ws_client_connection
//   c->set_transform(*tls_transform::client(ctx, host));       // wss:// (optional)
//   shard.connect(addr, std::move(c));
//
// A refused upgrade (any status but 101) is reported once through on_ws_refused() with the
// status, the `{"error":{"code","message"}}` of the JSON body when there is one (the relay's
// 401/403/429/503 answers) and Retry-After; so are failures before the upgrade (TCP connect,
// TLS, timeout, a 101 that does not pass the RFC 6455 checks). After a successful upgrade the
// subclass gets on_ws_open(), data pieces, pongs and exactly one on_ws_closed().
//
// Timeouts: `handshake_timeout` runs from construction (TCP connect + TLS + upgrade); a close
// handshake must finish within `close_timeout`, and once it did, the server is given that long to
// close TCP first (RFC 6455 §7.1.1) before we close it ourselves.
// Masking: every frame we send is masked with a key drawn from `rng` (RFC 6455 §5.3: keys must
// be unpredictable), taken from a pool refilled from the CSPRNG.
// Backpressure: the default on_output_high()/on_output_low() pause/resume reading this socket;
// subclasses that feed other sockets override them (the agent pauses its targets instead).
//
// Thread: the owning shard only.
#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "proto/ssh/crypto.hh"
#include "proto/ws/codec.hh"
#include "proto/ws/handshake.hh"
#include "reactor/connection.hh"
#include "reactor/timer.hh"

namespace ferry::link {

struct ws_client_options {
    std::string host;                      // Host field ("relay.example.com:8443")
    std::string target = "/";              // request target ("/tunnel")
    std::string extra_headers;             // preformatted "Name: value\r\n" lines
    ws::limits limits{};                   // receive limits (frame 1 MiB, message 16 MiB)
    std::chrono::milliseconds handshake_timeout{10'000};
    std::chrono::milliseconds close_timeout{5'000};
    std::size_t max_head_bytes = 16 * 1024;    // the server's response head
    std::size_t max_refusal_body = 4 * 1024;   // bytes of a refusal body kept for its message
    // Outgoing messages are at most this large (bigger sends are split into several messages;
    // servers bound one frame, 1 MiB by default for ferryd).
    std::size_t max_send_message = 256 * 1024;
};

// Why an upgrade did not happen.
struct ws_refusal {
    int status = 0;                // the HTTP status of a non-101 answer; 0: none arrived
    std::string code;              // body {"error":{"code":..,"message":..}} (may be empty)
    std::string message;
    std::uint32_t retry_after = 0; // seconds from a numeric Retry-After (0: none), <= 86400
    error err{};                   // errc::closed/io (TCP), tls_*, timeout, ws_handshake, ...
};

// Reads the relay's error answer: Retry-After from `headers` and the JSON error object from
// `body` (both are peer input: bounded, never trusted). Unknown shapes leave code/message empty.
ws_refusal parse_refusal(int status, std::span<const ws::header> headers, std::string_view body);

class ws_client_connection : public reactor::connection {
public:
    // `random` (not owned) supplies the Sec-WebSocket-Key and the mask keys; shard-local.
    ws_client_connection(reactor::shard& s, ws_client_options o, ssh::rng& random);
    ~ws_client_connection() override;

    bool ws_is_open() const noexcept { return codec_ && codec_->state() == ws::close_state::open && !closed_reported_; }

protected:
    // ---- hooks for subclasses ----------------------------------------------------------------
    virtual void on_ws_open() {}
    // A piece of a message (ev.first/last/op); `payload` is ours to keep, link or modify.
    virtual void on_ws_data(const ws::event& ev, slice payload) = 0;
    virtual void on_ws_pong(bytes payload) {}
    // Once, after on_ws_open: the close handshake finished (the peer's code, or ours), failed,
    // or TCP ended first (1006).
    virtual void on_ws_closed(std::uint16_t code) {}
    // Once, instead of on_ws_open: the upgrade did not happen.
    virtual void on_ws_refused(const ws_refusal& why) {}

    // ---- for subclasses (after on_ws_open) ----------------------------------------------------
    ws::codec& codec() noexcept { return *codec_; }
    // Sends `data` as binary messages (split at max_send_message), consuming the chain. The
    // chain's memory is masked in place: it must not be shared with anyone else.
    status send_binary(buffer_chain& data) noexcept;
    status send_ping(bytes payload) noexcept;
    // Starts the close handshake (our close frame now; TCP after the peer's answer).
    void ws_close(std::uint16_t code, std::string_view reason = {}) noexcept;

    // reactor::connection
    void on_open() override;
    void on_data(slice data) override;
    void on_read_eof() override;
    void on_output_high() override { pause_reading(); }
    void on_output_low() override { resume_reading(); }
    void on_close(const error& why) override;

private:
    static std::uint32_t next_mask(void* self) noexcept;
    void refill_pool() noexcept;
    void on_head_bytes(slice data) noexcept;
    void on_body_bytes(bytes data) noexcept;
    void refuse(const error& e) noexcept;        // failure before the upgrade: report, close
    void finish_refusal() noexcept;             // a non-101 answer (and its body) is complete
    void feed(slice data) noexcept;
    void after_codec() noexcept;
    void report_closed(std::uint16_t code) noexcept;

    ws_client_options opt_;
    ssh::rng& rng_;
    reactor::timer timer_;
    std::string key_;                      // our Sec-WebSocket-Key
    std::string head_;                     // response head (then refusal body) as it accumulates
    std::unique_ptr<ws::codec> codec_;
    buffer_chain scratch_;                 // sink for codec replies once the socket takes none
    // A refusal being read: status and headers copied out of head_, body bytes still expected.
    struct pending_refusal;
    std::unique_ptr<pending_refusal> refusal_;
    bool refused_reported_ = false;
    bool closed_reported_ = false;
    std::array<std::byte, 256> pool_{};   // mask key material
    std::size_t pool_used_ = sizeof(pool_);
};

}  // namespace ferry::link
