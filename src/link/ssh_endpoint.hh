#pragma once
// One SSH session driven over a byte stream, written once for both ends: the relay's end of an
// agent (WebSocket or raw TCP), the agent's link (WebSocket) and the interop test server (TCP).
//
//   ssh_endpoint ep(shard, carrier, events);
//   ep.start(config, now);              // version line (and, client side, the first KEXINIT)
//   ... carrier bytes in ...  ep.feed(piece);   // events reach `events` and channel handlers
//   ep.send_data(id, bytes) / consumed / send_eof / close / confirm / refuse / open_forwarded
//   ep.end();                           // handlers get session_gone(); nothing more is sent
//
// The endpoint owns the ssh::session, its deadline timer (re-armed after every batch of work),
// and the session's output, which it hands to the carrier (WebSocket binary messages, or the
// TCP connection itself) after each batch. Channel events are routed through one channel
// table: a channel with a handler gets its data (linked, zero copy when it was decrypted in
// place), EOF, writable, close; a channel without one (a spare the relay opened ahead, or one
// whose handler went away) goes to `events.on_unowned()`. Session-level events (authenticated,
// banner, disconnect, the peer's open requests, replies to our global requests) go to
// `events`. A failed session (the session wrote a DISCONNECT) is reported once by
// `events.on_ssh_failed()`: the carrier then ends. Thread: the carrier's shard.
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>

#include "proto/base/buffer.hh"
#include "proto/base/result.hh"
#include "proto/ssh/session.hh"
#include "reactor/connection.hh"
#include "reactor/timer.hh"

namespace ferry::link {

// The byte stream an endpoint runs over.
class ssh_carrier {
public:
    // Queues the session's bytes on the stream; leaves `ssh_bytes` empty (bytes for a stream
    // that takes no more are dropped: the stream is ending).
    virtual void carry(buffer_chain& ssh_bytes) = 0;

protected:
    ~ssh_carrier() = default;
};

// What happens to a channel, for the connection that serves it (a consumer, a target).
class channel_handler {
public:
    virtual void channel_opened() {}                                   // our open was confirmed
    virtual void channel_failed(ssh::open_failure why) { (void)why; }  // our open was refused
    virtual void channel_data(slice piece) = 0;
    virtual void channel_eof() = 0;
    virtual void channel_writable() = 0;  // the window grew, or a key exchange finished
    virtual void channel_closed() = 0;    // the peer's CLOSE (or its answer to ours)
    virtual void session_gone() = 0;      // the session ended with the channel open
    // The session's output above (true) / back below (false) its watermark.
    virtual void session_backpressure(bool on) = 0;

protected:
    ~channel_handler() = default;
};

// Session-level events, for the endpoint's owner.
class endpoint_events {
public:
    virtual void on_authenticated(const ssh::session_event& ev) { (void)ev; }
    virtual void on_banner(std::string_view text) { (void)text; }
    virtual void on_disconnected(const ssh::session_event& ev) = 0;  // the peer said goodbye
    // The peer asks to open a channel: answer with confirm() (after attach()) or refuse().
    // Default: refused (administratively prohibited).
    virtual void on_open_request(const ssh::conn_event& ev);
    virtual void on_global_reply(const ssh::conn_event& ev) { (void)ev; }
    // A key re-exchange finished; `resumed` channels a full rekey queue had stopped were told
    // they are writable again.
    virtual void on_rekey_done(std::size_t resumed) { (void)resumed; }
    // A channel event for an id without a handler (opened, open_failed, data, eof, closed).
    // Data has been acknowledged already. Default: nothing.
    virtual void on_unowned(const ssh::conn_event& ev) { (void)ev; }
    // A handler's channel left the table because the peer closed it or refused our open
    // (after the handler was told).
    virtual void on_channel_done(std::uint32_t id) { (void)id; }
    // The session failed (what it wrote, a DISCONNECT, has gone to the carrier): end.
    virtual void on_ssh_failed(const error& e) = 0;

protected:
    ~endpoint_events() = default;
};

struct endpoint_stats {
    std::uint64_t channel_bytes_in = 0;   // channel data received (extended data included)
    std::uint64_t channel_bytes_out = 0;  // channel data the session took from send_data()
    std::uint64_t channels_attached = 0;  // handlers attached
};

class ssh_endpoint {
public:
    ssh_endpoint(reactor::shard& s, ssh_carrier& carrier, endpoint_events& events);
    ~ssh_endpoint();
    ssh_endpoint(const ssh_endpoint&) = delete;
    ssh_endpoint& operator=(const ssh_endpoint&) = delete;

    // Creates the session and starts it. Errors: the session's (reported, not via events).
    status start(ssh::session_config cfg);
    bool started() const noexcept { return sess_ != nullptr; }
    // Authenticated and not ended.
    bool up() const noexcept { return sess_ && sess_->authenticated() && !ended_; }
    bool ended() const noexcept { return ended_; }
    ssh::session& session() noexcept { return *sess_; }

    // Bytes from the carrier (decrypted in place: `piece` must be writable and may be linked
    // into handlers' output). Events are dispatched before it returns.
    void feed(slice piece);

    // ---- the session's output, for requests the owner makes itself ----
    buffer_chain& out() noexcept { return out_; }
    // Hands what the session wrote to the carrier and re-arms the deadline timer. Every
    // operation below does it; call it after writing to out() directly.
    void flush();
    // Checks the result of an operation the owner made on session().conn() with out():
    // a failure that closed the session ends it (on_ssh_failed). Returns `st`.
    status check(status st);

    // ---- channels ----
    // `h` (a connection, kept alive by the table) serves channel `id`.
    void attach(std::uint32_t id, channel_handler& h, reactor::connection& keep);
    // Forgets `h` for `id` (if it is the one there) without closing anything.
    void detach(std::uint32_t id, const channel_handler& h) noexcept;
    channel_handler* handler(std::uint32_t id) const noexcept;
    std::size_t handlers() const noexcept { return chans_.size(); }

    result<std::size_t> send_data(std::uint32_t id, bytes data);
    void consumed(std::uint32_t id, std::size_t n);
    void send_eof(std::uint32_t id);
    // CLOSE (the table entry, if any, is removed).
    void close(std::uint32_t id);
    void confirm(std::uint32_t id);
    void refuse(std::uint32_t id, ssh::open_failure why, std::string_view text);
    result<std::uint32_t> open_forwarded(std::string_view bound, std::uint32_t port,
                                         std::string_view origin_host, std::uint32_t origin_port);

    // The carrier's output went above/below its watermark: every handler is told.
    void backpressure(bool on);
    bool output_high() const noexcept { return out_high_; }
    const endpoint_stats& stats() const noexcept { return stats_; }

    // DISCONNECT (reason, text) goes out; the endpoint ends.
    void disconnect(ssh::disconnect_reason why, std::string_view text);
    // Ends the endpoint: the timer stops, every handler gets session_gone(). Idempotent.
    void end();

private:
    struct entry {
        channel_handler* h;
        reactor::ref_ptr<reactor::connection> keep;
    };
    void dispatch(const ssh::session_event& ev, const slice* in);
    void dispatch_channel(const ssh::conn_event& ev, const slice* in);
    void on_timer();
    void failed(const error& e);
    ssh::millis now() const;

    reactor::shard& shard_;
    ssh_carrier& carrier_;
    endpoint_events& events_;
    std::unique_ptr<ssh::session> sess_;
    buffer_chain out_;
    reactor::timer timer_;
    std::unordered_map<std::uint32_t, entry> chans_;
    endpoint_stats stats_;
    bool ended_ = false;
    bool out_high_ = false;
};

}  // namespace ferry::link
