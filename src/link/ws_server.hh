#pragma once
// The server side of a WebSocket connection on the reactor: reads and validates the HTTP/1.1
// upgrade request (src/proto/http1 + src/proto/ws handshake), answers 101 (or 400/426/431 with a
// JSON body), then runs the WebSocket codec over the socket. Subclasses receive message pieces
// and send with the codec; the relay's `/tunnel` endpoint and `ferry-echo --ws` are built on it.
//
// Zero copy: received bytes arrive as slices of the shard's provided-buffer ring; the codec
// unmasks them in place and on_ws_data() gets the payload *as a slice of that same buffer*, so a
// subclass can link it into an outgoing chain (the echo server does) without copying.
//
// TLS (wss://): wrap the listener's factory with link::with_tls (tls_transform.hh); this class
// then receives plaintext slices and its output is encrypted by the reactor before each send.
// The head timeout starts at accept, so it also bounds the TLS handshake.
//
// Timeouts: the upgrade request must arrive completely within `head_timeout` (slowloris), and a
// close we started must be answered within `close_timeout`, after which TCP is closed.
// Backpressure: while our queued output is above the reactor's high watermark, reading pauses.
//
// Thread: the owning shard only.
#include <chrono>
#include <memory>
#include <string>

#include "proto/http1/parser.hh"
#include "proto/ws/codec.hh"
#include "proto/ws/handshake.hh"
#include "reactor/connection.hh"
#include "reactor/timer.hh"

namespace ferry::link {

struct ws_server_options {
    ws::limits limits{};                  // frame 1 MiB, message ... (see proto/ws/frame.hh)
    ws::server_config handshake{};        // permessage-deflate off unless enabled here
    http1::limits head_limits{};          // the upgrade request head (16 KiB, 100 headers)
    std::chrono::milliseconds head_timeout{10'000};
    std::chrono::milliseconds close_timeout{5'000};
};

class ws_server_connection : public reactor::connection {
public:
    explicit ws_server_connection(reactor::shard& s, const ws_server_options& o = {});
    ~ws_server_connection() override;

protected:
    // ---- hooks for subclasses ----------------------------------------------------------------
    // The upgrade request passed the RFC 6455 checks; return false to refuse it (a 403 is
    // sent). Default: accept.
    virtual bool accept_upgrade(const http1::request_head& head) { return true; }
    // Upgraded; the codec may be used.
    virtual void on_ws_open() {}
    // A piece of a message (see ws::event: first/last/op). `payload` is the unmasked bytes as a
    // slice that may be kept or linked into output without copying.
    virtual void on_ws_data(const ws::event& ev, slice payload) = 0;
    // The peer's pong (pings are answered by the codec).
    virtual void on_ws_pong(bytes payload) {}
    // The WebSocket is finished (close handshake done, failed, or TCP ended: code 1006).
    virtual void on_ws_closed(std::uint16_t code) {}

    // ---- for subclasses ---------------------------------------------------------------------
    ws::codec& codec() noexcept { return *codec_; }
    bool upgraded() const noexcept { return codec_ != nullptr; }
    // Queue `out` (built with codec()) on the socket. Cheaper: write with codec() straight
    // into reactor::connection::output() and call commit_output().
    void flush(buffer_chain& out) noexcept;
    // Start the close handshake.
    void ws_close(std::uint16_t code, std::string_view reason = {}) noexcept;

    // reactor::connection
    void on_open() override;
    void on_data(slice data) override;
    void on_read_eof() override;
    void on_output_high() override { pause_reading(); }
    void on_output_low() override { resume_reading(); }
    void on_close(const error& why) override;

private:
    void on_head_bytes(slice data) noexcept;
    void reject(int status, std::string_view code, std::string_view message) noexcept;
    void feed(slice data) noexcept;
    void after_codec() noexcept;

    ws_server_options opt_;
    reactor::timer timer_;
    std::string head_;                     // the upgrade request as it accumulates
    std::unique_ptr<http1::request_parser> parser_;
    std::unique_ptr<ws::codec> codec_;
    buffer_chain scratch_;  // sink for codec replies once the socket no longer takes output
    bool closed_reported_ = false;
};

}  // namespace ferry::link
