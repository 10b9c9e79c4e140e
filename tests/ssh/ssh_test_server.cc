// ssh_test_server: an SSH server on the reactor and ferry::ssh::session (server role), for the
// interoperability tests (OpenSSH's ssh, libssh2) on loopback. The relay copies its patterns:
// one reactor connection per SSH client, reverse forwards, and a relay loop with real
// back-pressure in both directions.
//
//   ssh_test_server [--listen 127.0.0.1:0] [--host-key-seed HEX64] [--authorized FILE]
//                   [--password PW] [--ciphers LIST] [--macs LIST] [--rekey-bytes N]
//                   [--kex-queue-bytes N] [--shards N] [--alias NAME=OTHER]
//
// --authorized: authorized_keys-style lines ("type base64 [comment]"), valid for any user;
// --password: accepted for any user. Without --host-key-seed a random ed25519 host key is made.
// --alias NAME=OTHER (repeatable): a tcpip-forward of NAME also binds a listener whose channels
// carry OTHER as their address (for testing that agents refuse names they did not ask for).
//
// stdout, one flushed line per event (tests parse these):
//   hostkey ssh-ed25519 BASE64            at start (for a known_hosts file)
//   listening 127.0.0.1:PORT              ready
//   auth USER METHOD strict=0|1 cipher=C mac=M   a session authenticated (C, M: the
//                                         algorithms in force, one direction)
//   forward ADDRESS PORT -> 127.0.0.1:LPORT   tcpip-forward accepted; PORT is the bound port
//                                         (the listener's port when 0 was asked for)
//   cancel ADDRESS PORT                   cancel-tcpip-forward
//   rekey N                               the N-th key re-exchange of a session finished
//   end rekeys=N kexwaits=K channels=C up=B down=B reason=TEXT   a session is over (K:
//                                         channels resumed by writable_after_kex(); up/down:
//                                         channel bytes to/from the SSH client)
//   stopped                               after SIGINT/SIGTERM, before exit
//
// Policy: `tcpip-forward` binds a new loopback listener on an ephemeral port for the
// session; every TCP client ("consumer") accepted there gets a `forwarded-tcpip` channel
// (bound address and port as requested, origin = the consumer's address) and its bytes are
// relayed both ways. Session channels, direct-tcpip and channel requests are refused (the
// library's default policy).
//
// Back-pressure (why each rule exists):
//  * consumer -> SSH: send_data() takes what the peer's window (or a rekey's queue) allows;
//    the rest stays queued in the consumer and its reading pauses until a `writable` event
//    (or writable_after_kex() after `rekey_done`).
//  * SSH -> consumer: received channel data is linked into the consumer socket's output
//    (zero copy when it was decrypted in the receive buffer) and consumed() -- which reopens
//    the peer's window -- only once the consumer's queued output is at or below its watermark;
//    above it the debt is repaid at on_output_low. A slow consumer thus slows the SSH peer.
//  * SSH socket output above its watermark pauses every consumer's reading until it drains.
//
// Threads: each SSH connection, its listeners and consumers live on the shard that accepted
// it; nothing is shared between shards except the read-only options and auth keys.
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "proto/ssh/hostkey.hh"
#include "proto/ssh/session.hh"
#include "reactor/engine.hh"
#include "test_keys.hh"

namespace {

using namespace ferry;
using reactor::close_mode;
using reactor::ref_ptr;
using reactor::shard;

// ---- options, shared read-only state -------------------------------------------------------

struct options {
    std::string listen = "127.0.0.1:0";
    std::string seed_hex;
    std::string authorized;
    std::string password;
    std::string ciphers, macs;
    std::uint64_t rekey_bytes = 0;  // 0: the library default
    std::uint64_t kex_queue = 0;    // 0: the library default (transport_limits)
    unsigned shards = 1;
    std::vector<std::pair<std::string, std::string>> aliases;  // --alias NAME=OTHER
};

options g_opt;

// Auth decisions (read-only after start, so shards may share it).
struct key_policy final : ssh::auth_policy {
    std::vector<std::vector<std::byte>> keys;
    std::string password;
    bool check_password(std::string_view, std::string_view pw) override {
        return !password.empty() && pw == password;
    }
    bool check_publickey(std::string_view, ssh::user_key_alg, bytes blob) override {
        for (auto& k : keys) {
            if (std::equal(k.begin(), k.end(), blob.begin(), blob.end())) return true;
        }
        return false;
    }
};
key_policy g_auth;

// Per-shard objects the transport borrows (neither the RNG nor the key's signer is
// thread-safe). Built before the listener exists, then touched only by their shard.
struct shard_res {
    std::unique_ptr<ssh::system_rng> rng;
    std::optional<ssh::ed25519_private> key;
};
std::vector<shard_res> g_res;

std::mutex g_say_mu;
void say(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
void say(const char* fmt, ...) {
    std::lock_guard lk(g_say_mu);
    va_list ap;
    va_start(ap, fmt);
    std::vfprintf(stdout, fmt, ap);
    va_end(ap);
    std::fputc('\n', stdout);
    std::fflush(stdout);
}

// Peer-chosen names go to stdout one per line, space separated: keep them printable.
std::string printable(std::string_view s) {
    std::string o(s.substr(0, 200));
    for (char& c : o) {
        if (c <= ' ' || c > '~') c = '?';
    }
    return o.empty() ? "\"\"" : o;
}

ssh::millis to_ms(shard::clock::time_point t) {
    return ssh::millis(std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count());
}
shard::clock::time_point from_ms(ssh::millis m) {
    return shard::clock::time_point(std::chrono::milliseconds(m));
}

// Queued output per consumer above which SSH data is no longer acknowledged (consumed()).
constexpr std::size_t kConsumerWatermark = 1 << 20;
// How long a closing connection may take to flush what is queued (SSH: its DISCONNECT;
// consumers: what the channel delivered before its CLOSE).
constexpr auto kCloseTimeout = std::chrono::seconds(5);

class consumer;

// ---- the SSH side ----------------------------------------------------------------------------

class ssh_conn final : public reactor::connection, private ssh::connection_policy {
public:
    explicit ssh_conn(shard& s);

    // ---- for consumers (their shard, outside our event handling or inside it) ----
    result<std::uint32_t> open_channel(consumer* c, std::string_view host, std::uint32_t port,
                                       std::string_view origin_host, std::uint32_t origin_port);
    // How much of `data` channel `id` took; an error means the channel cannot take data.
    result<std::size_t> send_data(std::uint32_t id, bytes data);
    void consumed(std::uint32_t id, std::size_t n);
    void send_eof(std::uint32_t id);
    // The consumer's socket is gone: close the channel (its id stays reserved until the
    // peer's CLOSE, which then finds no consumer).
    void consumer_closed(std::uint32_t id, consumer* c);
    bool output_high() const noexcept { return out_high_; }

private:
    struct forward {
        std::string address;
        std::uint32_t port;      // as the client knows it (the bound port for port 0)
        std::uint64_t listener;  // shard::close_listener handle
    };

    // reactor::connection
    void on_open() override;
    void on_data(slice s) override;
    void on_read_eof() override { end("peer closed the connection"); }
    void on_output_high() override;
    void on_output_low() override;
    void on_close(const error& why) override;

    // ssh::connection_policy (called from inside sess_.feed)
    bool tcpip_forward(std::string_view address, std::uint32_t port, std::uint32_t& bound) override;
    bool cancel_tcpip_forward(std::string_view address, std::uint32_t port) override;

    std::unique_ptr<reactor::connection> make_consumer(shard& s, const std::string& address,
                                                       std::uint32_t port);
    void on_event(const ssh::session_event& ev, const slice* in);
    void on_channel_event(const ssh::conn_event& ev, const slice* in);
    consumer* find(std::uint32_t id);
    void on_timer();
    // Queue what the session wrote and re-arm tick() for the session's next deadline.
    void after_io();
    // Ends the session: forwards and consumers go, then the socket (after flushing what the
    // session queued, e.g. a DISCONNECT, bounded by kCloseTimeout).
    void end(const char* why, const error* e = nullptr);
    void release_all();
    // Where the session writes: the socket's queued output, or a sink once it takes no more.
    buffer_chain& out() {
        if (buffer_chain* o = output()) return *o;
        sink_.clear();
        return sink_;
    }
    ssh::millis now() const { return to_ms(owner_.now()); }
    static ssh::session_config make_config(ssh_conn* self, shard& s);

    shard& owner_;
    ssh::session sess_;
    reactor::timer timer_;  // tick() deadlines; the close timeout once ended
    buffer_chain sink_;
    std::vector<forward> forwards_;
    std::unordered_map<std::uint32_t, ref_ptr<consumer>> chans_;
    bool done_ = false;
    bool out_high_ = false;
    std::uint32_t rekeys_ = 0;
    std::uint64_t kex_waits_ = 0;  // channels that waited for a rekey to finish
    std::uint64_t channels_ = 0, bytes_up_ = 0, bytes_down_ = 0;
    std::string end_reason_;
    bool reported_ = false;
};

// ---- the consumer side -----------------------------------------------------------------------

class consumer final : public reactor::connection {
public:
    consumer(shard& s, ref_ptr<ssh_conn> ssh, std::string address, std::uint32_t port)
        : ssh_(std::move(ssh)), address_(std::move(address)), port_(port), recheck_(s, [this] { on_timer(); }) {
        set_output_watermark(kConsumerWatermark);
    }

    // ---- events from the SSH session ----
    void channel_opened() {
        opened_ = true;
        resume_reading();  // the pause taken in on_open
        pump();
    }
    void channel_failed() {
        detach();
        close(close_mode::abort);
    }
    // Channel data for this consumer, already linked or copied out of the session's buffers.
    void ssh_data(slice piece) {
        const std::size_t n = piece.size();
        (void)send(std::move(piece));  // errc::closed once we are closing: nowhere to go
        owed_ += n;
        settle();
    }
    void ssh_eof() { shutdown_write(); }
    void ssh_writable() { pump(); }
    void channel_closed() {
        detach();
        // What the peer sent before its CLOSE still goes out, but a consumer that stopped
        // reading must not hold the socket for ever.
        closing_ = true;
        recheck_.arm_after(kCloseTimeout);
        close(close_mode::flush);
    }
    void ssh_gone() {
        detach();
        close(close_mode::abort);  // the tunnel broke: the consumer must not see a clean end
    }
    // The SSH socket's output went above (true) or back below (false) its watermark.
    void ssh_backpressure(bool on) {
        if (on == ssh_pause_) return;
        ssh_pause_ = on;
        if (on) {
            pause_reading();
        } else {
            resume_reading();
        }
    }

private:
    void on_open() override {
        // No reading until the channel is confirmed (there is nowhere to put the bytes).
        pause_reading();
        auto peer = this->peer();
        std::string host = "127.0.0.1";
        std::uint32_t port = 0;
        if (peer) {
            host = peer->to_string();
            host.resize(host.rfind(':'));
            if (host.size() > 2 && host.front() == '[') host = host.substr(1, host.size() - 2);
            port = peer->port();
        }
        auto id = ssh_ ? ssh_->open_channel(this, address_, port_, host, port)
                       : result<std::uint32_t>(fail(errc::closed, "session gone"));
        if (!id) {
            detach();
            close(close_mode::abort);
            return;
        }
        id_ = *id;
        if (ssh_->output_high()) ssh_backpressure(true);
    }
    void on_data(slice s) override {
        to_ssh_.append(std::move(s));
        pump();
    }
    void on_read_eof() override {
        // Half-close: EOF goes to the channel once everything read before it went in.
        eof_in_ = true;
        pump();
    }
    void on_output_high() override { above_high_ = true; }
    void on_output_low() override {
        above_high_ = false;
        repay();
    }
    void on_close(const error&) override {
        recheck_.cancel();
        if (ssh_) {
            ssh_->consumer_closed(id_, this);
            detach();
        }
    }

    // Hands queued consumer bytes to the channel; pauses reading while some are left.
    void pump() {
        if (!ssh_ || !opened_) return;
        while (!to_ssh_.empty()) {
            const std::size_t len = to_ssh_.front().size();
            auto n = ssh_->send_data(id_, to_ssh_.front().view());
            // Failing, the channel takes no more data (its close is on the way), or the whole
            // session failed (and detached us).
            if (!n || !ssh_) {
                to_ssh_.clear();
                break;
            }
            to_ssh_.consume(*n);
            if (*n < len) break;
        }
        const bool waiting = !to_ssh_.empty();
        if (waiting != window_pause_) {
            window_pause_ = waiting;
            if (waiting) {
                pause_reading();
            } else {
                resume_reading();
            }
        }
        if (!waiting && eof_in_ && !eof_sent_ && ssh_) {
            eof_sent_ = true;
            ssh_->send_eof(id_);
        }
    }
    // Acknowledge received SSH data once our queued output is at or below the watermark.
    // The reactor raises on_output_high only at the end of a loop iteration, and a send
    // completing in the same batch may bring the output down without a high/low pair: so
    // when we are over the watermark without the flag, look again shortly.
    void settle() {
        if (above_high_) return;  // on_output_low repays
        if (output_pending() <= kConsumerWatermark) {
            repay();
        } else {
            recheck_.arm_after(std::chrono::milliseconds(0));
        }
    }
    void on_timer() {
        if (closing_) {
            close(close_mode::abort);
        } else if (owed_ > 0) {
            settle();
        }
    }
    void repay() {
        if (owed_ == 0 || !ssh_) return;
        ssh_->consumed(id_, owed_);
        owed_ = 0;
    }
    void detach() { ssh_.reset(); }

    ref_ptr<ssh_conn> ssh_;  // null once the channel or the session is gone
    std::string address_;
    std::uint32_t port_;
    std::uint32_t id_ = 0;
    bool opened_ = false;
    buffer_chain to_ssh_;       // read from the consumer, not yet taken by the channel
    bool window_pause_ = false;  // reading paused while to_ssh_ waits for window
    bool ssh_pause_ = false;     // reading paused while the SSH socket's output is high
    bool eof_in_ = false, eof_sent_ = false;
    bool above_high_ = false;
    std::size_t owed_ = 0;  // SSH bytes delivered to our output but not yet consumed()
    bool closing_ = false;  // flushing after the channel closed (recheck_ is the deadline)
    reactor::timer recheck_;  // settle() again, or the close deadline
};

// ---- ssh_conn implementation -----------------------------------------------------------------

ssh::session_config ssh_conn::make_config(ssh_conn* self, shard& s) {
    ssh::session_config c;
    c.transport.self = ssh::role::server;
    c.transport.random = g_res[s.id()].rng.get();
    c.transport.host_key = &*g_res[s.id()].key;
    if (!g_opt.ciphers.empty()) c.transport.ciphers = g_opt.ciphers;
    if (!g_opt.macs.empty()) c.transport.macs = g_opt.macs;
    if (g_opt.rekey_bytes) c.transport.limits.rekey_bytes = g_opt.rekey_bytes;
    if (g_opt.kex_queue) c.transport.limits.max_kex_queue_bytes = g_opt.kex_queue;
    c.auth_server.policy = &g_auth;
    c.auth_server.methods = g_auth.password.empty() ? "publickey" : "publickey,password";
    c.connection.policy = self;
    return c;
}

ssh_conn::ssh_conn(shard& s)
    : owner_(s), sess_(make_config(this, s)), timer_(s, [this] { on_timer(); }) {}

void ssh_conn::on_open() {
    if (auto st = sess_.start(out(), now()); !st) return end("start failed", &st.err());
    after_io();
}

void ssh_conn::on_data(slice s) {
    if (done_) return;
    // The transport decrypts in place and keeps a partial packet itself, so every receive is
    // fed as it is: the slice is ours (a ring buffer or a private heap copy) and writable.
    mut_bytes in = s.mut_view();
    const ssh::millis t = now();
    while (!done_) {
        auto ev = sess_.feed(in, out(), t);
        if (!ev) return end("protocol error", &ev.err());
        if (ev->type == ssh::session_event_type::need_more) break;
        on_event(*ev, &s);
    }
    after_io();
}

void ssh_conn::on_timer() {
    if (done_) {
        close(close_mode::abort);  // the flush of our last words took too long
        return;
    }
    auto ev = sess_.tick(out(), now());
    if (!ev) return end("tick failed", &ev.err());
    on_event(*ev, nullptr);
    after_io();
}

void ssh_conn::after_io() {
    commit_output();
    if (done_) return;
    ssh::millis d = sess_.next_deadline();
    if (d == 0) {
        timer_.cancel();
        return;
    }
    // A deadline already past (tick() found nothing to do yet) must not make the timer spin:
    // look again a little later.
    const ssh::millis t = now();
    if (d <= t) d = t + 20;
    timer_.arm_at(from_ms(d));
}

void ssh_conn::on_event(const ssh::session_event& ev, const slice* in) {
    switch (ev.type) {
    case ssh::session_event_type::need_more:
    case ssh::session_event_type::banner: break;
    case ssh::session_event_type::authenticated: {
        const ssh::algorithms& a = sess_.transport().negotiated();
        const std::string_view c = ssh::info(a.enc[0]).name, m = ssh::info(a.mac[0]).name;
        say("auth %s %s strict=%d cipher=%.*s mac=%.*s", printable(ev.user).c_str(),
            printable(ev.method).c_str(), sess_.transport().strict_kex() ? 1 : 0, int(c.size()),
            c.data(), int(m.size()), m.data());
        break;
    }
    case ssh::session_event_type::channel: on_channel_event(ev.conn, in); break;
    case ssh::session_event_type::rekey_done:
        say("rekey %u", ++rekeys_);
        // Channels that a full rekey queue stopped may send again.
        while (auto id = sess_.conn().writable_after_kex()) {
            ++kex_waits_;
            if (consumer* c = find(*id)) c->ssh_writable();
        }
        break;
    case ssh::session_event_type::disconnected: end("peer sent DISCONNECT"); break;
    }
}

consumer* ssh_conn::find(std::uint32_t id) {
    auto it = chans_.find(id);
    return it == chans_.end() ? nullptr : it->second.get();
}

void ssh_conn::on_channel_event(const ssh::conn_event& ev, const slice* in) {
    using ssh::conn_event_type;
    switch (ev.type) {
    case conn_event_type::none:
    case conn_event_type::global_reply: break;
    case conn_event_type::open_request: {
        // session, direct-tcpip: not offered by this server.
        auto st = sess_.conn().refuse_open(ev.id, ssh::open_failure::administratively_prohibited,
                                           "not allowed here", out());
        if (!st) end("refuse_open failed", &st.err());
        break;
    }
    case conn_event_type::opened:
        if (consumer* c = find(ev.id)) c->channel_opened();
        break;
    case conn_event_type::open_failed:
        if (auto it = chans_.find(ev.id); it != chans_.end()) {
            auto c = std::move(it->second);
            chans_.erase(it);
            c->channel_failed();
        }
        break;
    case conn_event_type::data: {
        const std::size_t n = ev.data.size();
        bytes_down_ += n;
        consumer* c = ev.ext == 0 ? find(ev.id) : nullptr;
        if (!c) {  // extended data means nothing on a TCP channel: acknowledge and drop
            consumed(ev.id, n);
            break;
        }
        // Zero copy when the payload lies in the receive buffer (decrypted in place); a packet
        // that straddled receives lives in the transport's own buffer and must be copied.
        c->ssh_data(slice::part_or_copy(in, ev.data));
        break;
    }
    case conn_event_type::eof:
        if (consumer* c = find(ev.id)) c->ssh_eof();
        break;
    case conn_event_type::closed:
        if (auto it = chans_.find(ev.id); it != chans_.end()) {
            auto c = std::move(it->second);
            chans_.erase(it);
            c->channel_closed();
        }
        break;
    case conn_event_type::writable:
        if (consumer* c = find(ev.id)) c->ssh_writable();
        break;
    }
}

result<std::uint32_t> ssh_conn::open_channel(consumer* c, std::string_view host, std::uint32_t port,
                                             std::string_view origin_host, std::uint32_t origin_port) {
    if (done_) return fail(errc::closed, "session over");
    auto id = sess_.conn().open_forwarded_tcpip(host, port, origin_host, origin_port, out());
    commit_output();
    if (!id) return id;
    chans_[*id] = ref_ptr<consumer>(c);
    ++channels_;
    return id;
}

result<std::size_t> ssh_conn::send_data(std::uint32_t id, bytes data) {
    if (done_) return fail(errc::closed, "session over");
    bytes offer = data;
    if (offer.empty()) return std::size_t(0);
    auto n = sess_.conn().send_data(id, offer, out());
    commit_output();
    if (n) bytes_up_ += *n;
    // A transport failure (the session is closed) ends everything; a channel-level refusal
    // (closed for sending) only concerns this consumer.
    if (!n && sess_.closed()) end("send failed", &n.err());
    return n;
}

void ssh_conn::consumed(std::uint32_t id, std::size_t n) {
    if (done_) return;
    // invalid_argument: the channel is already closing; nothing to reopen then.
    if (auto st = sess_.conn().consumed(id, n, out()); !st && sess_.closed()) end("consumed failed", &st.err());
    commit_output();
}

void ssh_conn::send_eof(std::uint32_t id) {
    if (done_) return;
    if (auto st = sess_.conn().send_eof(id, out()); !st && sess_.closed()) end("send_eof failed", &st.err());
    commit_output();
}

void ssh_conn::consumer_closed(std::uint32_t id, consumer* c) {
    auto it = chans_.find(id);
    if (it == chans_.end() || it->second.get() != c) return;
    chans_.erase(it);
    if (done_) return;
    if (auto st = sess_.conn().close(id, out()); !st && sess_.closed()) end("close failed", &st.err());
    commit_output();
}

void ssh_conn::on_output_high() {
    out_high_ = true;
    for (auto& [id, c] : chans_) c->ssh_backpressure(true);
}

void ssh_conn::on_output_low() {
    out_high_ = false;
    for (auto& [id, c] : chans_) c->ssh_backpressure(false);
}

bool ssh_conn::tcpip_forward(std::string_view address, std::uint32_t port, std::uint32_t& bound) {
    if (done_ || port > 65535) return false;
    for (auto& f : forwards_) {
        if (port != 0 && f.port == port && f.address == address) return false;  // taken
    }
    auto any = reactor::address::parse("127.0.0.1:0");
    if (!any) return false;
    auto fd = reactor::make_listen_socket(*any, reactor::listen_options{});
    if (!fd) return false;
    auto local = reactor::local_address(*fd);
    if (!local) {
        ::close(*fd);
        return false;
    }
    const std::uint32_t key_port = port != 0 ? port : local->port();
    bound = key_port;
    std::string name(address);
    ref_ptr<ssh_conn> self(this);
    // The factory holds a reference to this session until the listener is gone.
    std::uint64_t h = owner_.add_listener(
        *fd, [self, name, key_port](shard& s) { return self->make_consumer(s, name, key_port); },
        reactor::listen_options{});
    if (h == 0) return false;  // the shard is stopping (the fd is closed)
    forwards_.push_back({name, key_port, h});
    say("forward %s %u -> %s", printable(name).c_str(), key_port, local->to_string().c_str());
    // --alias NAME=OTHER: a second listener whose channels name OTHER (a name the client never
    // asked for), so tests can check that an agent refuses it.
    for (auto& [from, to] : g_opt.aliases) {
        if (from != name) continue;
        auto afd = reactor::make_listen_socket(*any, reactor::listen_options{});
        if (!afd) continue;
        auto alocal = reactor::local_address(*afd);
        std::string other = to;
        std::uint64_t ah = owner_.add_listener(
            *afd, [self, other, key_port](shard& s) { return self->make_consumer(s, other, key_port); },
            reactor::listen_options{});
        if (ah == 0) continue;
        forwards_.push_back({other, key_port, ah});
        say("forward %s %u -> %s", printable(other).c_str(), key_port,
            alocal ? alocal->to_string().c_str() : "?");
    }
    return true;
}

bool ssh_conn::cancel_tcpip_forward(std::string_view address, std::uint32_t port) {
    for (auto it = forwards_.begin(); it != forwards_.end(); ++it) {
        if (it->port == port && it->address == address) {
            owner_.close_listener(it->listener);  // consumers already connected stay
            forwards_.erase(it);
            say("cancel %s %u", printable(address).c_str(), port);
            return true;
        }
    }
    return false;
}

std::unique_ptr<reactor::connection> ssh_conn::make_consumer(shard& s, const std::string& address,
                                                             std::uint32_t port) {
    if (done_) return nullptr;
    return std::make_unique<consumer>(s, ref_ptr<ssh_conn>(this), address, port);
}

void ssh_conn::end(const char* why, const error* e) {
    if (done_) return;
    done_ = true;
    end_reason_ = why;
    if (e) {
        end_reason_ += ": ";
        end_reason_ += e->detail;
    }
    release_all();
    commit_output();
    timer_.arm_after(kCloseTimeout);
    close(close_mode::flush);
}

void ssh_conn::release_all() {
    for (auto& f : forwards_) owner_.close_listener(f.listener);
    forwards_.clear();
    auto chans = std::move(chans_);
    chans_.clear();
    for (auto& [id, c] : chans) c->ssh_gone();
}

void ssh_conn::on_close(const error& why) {
    if (!done_) {
        done_ = true;
        end_reason_ = why.code == errc::ok ? "closed" : why.detail;
    }
    release_all();
    timer_.cancel();
    if (!reported_) {
        reported_ = true;
        std::string r = printable(end_reason_);
        say("end rekeys=%u kexwaits=%llu channels=%llu up=%llu down=%llu reason=%s", rekeys_,
            (unsigned long long)kex_waits_, (unsigned long long)channels_,
            (unsigned long long)bytes_up_, (unsigned long long)bytes_down_, r.c_str());
    }
}

// ---- main ------------------------------------------------------------------------------------

[[noreturn]] void usage(const char* msg) {
    std::fprintf(stderr,
                 "ssh_test_server: %s\n"
                 "usage: ssh_test_server [--listen ADDR:PORT] [--host-key-seed HEX64] [--authorized FILE]\n"
                 "                       [--password PW] [--ciphers LIST] [--macs LIST] [--rekey-bytes N]\n"
                 "                       [--kex-queue-bytes N] [--shards N]\n",
                 msg);
    std::exit(2);
}

std::uint64_t parse_u64(const char* s, const char* flag) {
    char* end = nullptr;
    unsigned long long v = std::strtoull(s, &end, 10);
    if (!*s || *end) usage((std::string("bad value for ") + flag).c_str());
    return v;
}

void parse(int argc, char** argv) {
    for (int i = 1; i < argc; ++i) {
        std::string_view a = argv[i];
        auto value = [&]() -> const char* {
            if (i + 1 >= argc) usage((std::string("missing value for ") + argv[i]).c_str());
            return argv[++i];
        };
        if (a == "--listen") g_opt.listen = value();
        else if (a == "--host-key-seed") g_opt.seed_hex = value();
        else if (a == "--authorized") g_opt.authorized = value();
        else if (a == "--password") g_opt.password = value();
        else if (a == "--ciphers") g_opt.ciphers = value();
        else if (a == "--macs") g_opt.macs = value();
        else if (a == "--rekey-bytes") g_opt.rekey_bytes = parse_u64(value(), "--rekey-bytes");
        else if (a == "--kex-queue-bytes") g_opt.kex_queue = parse_u64(value(), "--kex-queue-bytes");
        else if (a == "--shards") g_opt.shards = unsigned(parse_u64(value(), "--shards"));
        else if (a == "--alias") {
            std::string v = value();
            auto eq = v.find('=');
            if (eq == std::string::npos) usage("--alias takes NAME=OTHER");
            g_opt.aliases.emplace_back(v.substr(0, eq), v.substr(eq + 1));
        }
        else if (a == "-h" || a == "--help") usage("help");
        else usage((std::string("unknown flag ") + argv[i]).c_str());
    }
    if (g_opt.shards == 0 || g_opt.shards > 64) usage("--shards must be 1..64");
}

}  // namespace

int main(int argc, char** argv) {
    parse(argc, argv);
    auto addr = reactor::address::parse(g_opt.listen);
    if (!addr) usage("bad --listen address");
    if (!g_opt.authorized.empty()) {
        auto keys = ssh::test::read_authorized_keys(g_opt.authorized);
        if (!keys) usage("cannot read --authorized file");
        g_auth.keys = std::move(*keys);
    }
    g_auth.password = g_opt.password;

    std::vector<std::byte> seed(32);
    if (!g_opt.seed_hex.empty()) {
        auto s = ssh::test::parse_hex(g_opt.seed_hex, 32);
        if (!s) usage("--host-key-seed takes 64 hex digits");
        seed = std::move(*s);
    } else {
        auto r = ssh::system_rng::create();
        if (!r || !(*r)->fill(seed)) {
            std::fprintf(stderr, "ssh_test_server: no randomness for the host key\n");
            return 1;
        }
    }

    // Stop signals go to sigwait() below only: block them before any thread exists.
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
    signal(SIGPIPE, SIG_IGN);

    reactor::config cfg;
    cfg.shards = g_opt.shards;
    auto eng = reactor::engine::start(cfg);
    if (!eng) {
        std::fprintf(stderr, "ssh_test_server: cannot start the reactor: %s\n", eng.err().detail);
        return 1;
    }
    g_res.resize((*eng)->size());
    for (auto& r : g_res) {
        auto rng = ssh::system_rng::create();
        auto key = ssh::ed25519_private::from_seed(seed);
        if (!rng || !key) {
            std::fprintf(stderr, "ssh_test_server: cannot set up the host key\n");
            return 1;
        }
        r.rng = std::move(*rng);
        r.key.emplace(std::move(*key));
    }
    say("hostkey ssh-ed25519 %s",
        ssh::test::base64(ssh::ed25519_key_blob(g_res[0].key->public_key())).c_str());
    auto bound = (*eng)->listen(*addr, [](shard& s) { return std::make_unique<ssh_conn>(s); });
    if (!bound) {
        std::fprintf(stderr, "ssh_test_server: listen %s: %s\n", g_opt.listen.c_str(), bound.err().detail);
        return 1;
    }
    say("listening %s", bound->to_string().c_str());

    int sig = 0;
    sigwait(&stop_signals, &sig);
    (*eng)->stop();
    (*eng)->wait();
    say("stopped");
    return 0;
}
