// ssh_test_server: an SSH server on the reactor, for the interoperability tests (OpenSSH's ssh,
// libssh2) on loopback. It runs the relay's own pieces: link::ssh_endpoint (the session over the
// TCP connection, one channel table) and link::channel_pipe (the socket<->channel pump), so the
// interop tests exercise the code the relay and the agent use, with reverse forwards and real
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
// Back-pressure (link::channel_pipe; why each rule exists):
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

#include "link/channel_pipe.hh"
#include "link/ssh_endpoint.hh"
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

// Queued output per consumer above which SSH data is no longer acknowledged (consumed()).
constexpr std::size_t kConsumerWatermark = 1 << 20;
// How long a closing connection may take to flush what is queued (SSH: its DISCONNECT;
// consumers: what the channel delivered before its CLOSE).
constexpr auto kCloseTimeout = std::chrono::seconds(5);

class consumer;

// ---- the SSH side: link::ssh_endpoint over the TCP connection ---------------------------------

class ssh_conn final : public reactor::connection,
                       private link::ssh_carrier,
                       private link::endpoint_events,
                       private ssh::connection_policy {
public:
    explicit ssh_conn(shard& s);
    link::ssh_endpoint& endpoint() noexcept { return ep_; }

private:
    struct forward {
        std::string address;
        std::uint32_t port;      // as the client knows it (the bound port for port 0)
        std::uint64_t listener;  // shard::close_listener handle
    };

    // reactor::connection
    void on_open() override;
    void on_data(slice s) override { ep_.feed(std::move(s)); }
    void on_read_eof() override { end("peer closed the connection"); }
    void on_output_high() override { ep_.backpressure(true); }
    void on_output_low() override { ep_.backpressure(false); }
    void on_close(const error& why) override;

    // link::ssh_carrier
    void carry(buffer_chain& b) override {
        if (buffer_chain* o = output()) {
            o->append(std::move(b));
            commit_output();
        }
        b.clear();
    }
    // link::endpoint_events
    void on_authenticated(const ssh::session_event& ev) override;
    void on_disconnected(const ssh::session_event&) override { end("peer sent DISCONNECT"); }
    void on_open_request(const ssh::conn_event& ev) override {
        // session, direct-tcpip: not offered by this server.
        ep_.refuse(ev.id, ssh::open_failure::administratively_prohibited, "not allowed here");
    }
    void on_rekey_done(std::size_t resumed) override {
        say("rekey %u", ++rekeys_);
        kex_waits_ += resumed;
    }
    void on_ssh_failed(const error& e) override { end("protocol error", &e); }

    // ssh::connection_policy (called from inside the session's feed)
    bool tcpip_forward(std::string_view address, std::uint32_t port, std::uint32_t& bound) override;
    bool cancel_tcpip_forward(std::string_view address, std::uint32_t port) override;

    std::unique_ptr<reactor::connection> make_consumer(shard& s, const std::string& address,
                                                       std::uint32_t port);
    void on_timer() { close(close_mode::abort); }  // the flush of our last words took too long
    // Ends the session: forwards and consumers go, then the socket (after flushing what the
    // session queued, e.g. a DISCONNECT, bounded by kCloseTimeout).
    void end(const char* why, const error* e = nullptr);
    void release_all();
    static ssh::session_config make_config(ssh_conn* self, shard& s);

    shard& owner_;
    link::ssh_endpoint ep_;
    reactor::timer timer_;  // the close timeout once ended
    std::vector<forward> forwards_;
    bool done_ = false;
    std::uint32_t rekeys_ = 0;
    std::uint64_t kex_waits_ = 0;  // channels that waited for a rekey to finish
    std::string end_reason_;
    bool reported_ = false;
};

// ---- the consumer side: a link::channel_pipe between the socket and its channel --------------

class consumer final : public reactor::connection, private link::channel_handler {
public:
    consumer(shard& s, ref_ptr<ssh_conn> ssh, std::string address, std::uint32_t port)
        : ssh_(std::move(ssh)), address_(std::move(address)), port_(port), pipe_(*this),
          close_timer_(s, [this] { close(close_mode::abort); }) {
        set_output_watermark(kConsumerWatermark);
    }

private:
    // link::channel_handler
    void channel_opened() override { pipe_.open(); }
    void channel_failed(ssh::open_failure) override { gone(); }
    void channel_data(slice piece) override { pipe_.to_socket(std::move(piece)); }
    void channel_eof() override { shutdown_write(); }
    void channel_writable() override { pipe_.pump(); }
    void channel_closed() override {
        pipe_.unbind();
        ssh_.reset();
        // What the peer sent before its CLOSE still goes out, but a consumer that stopped
        // reading must not hold the socket for ever.
        close_timer_.arm_after(kCloseTimeout);
        close(close_mode::flush);
    }
    void session_gone() override { gone(); }  // the tunnel broke: no clean end for the consumer
    void session_backpressure(bool on) override { pipe_.link_backpressure(on); }

    void gone() {
        pipe_.unbind();
        ssh_.reset();
        close(close_mode::abort);
    }

    // reactor::connection
    void on_open() override {
        auto peer = this->peer();
        std::string host = "127.0.0.1";
        std::uint32_t port = 0;
        if (peer) {
            host = peer->to_string();
            host.resize(host.rfind(':'));
            if (host.size() > 2 && host.front() == '[') host = host.substr(1, host.size() - 2);
            port = peer->port();
        }
        link::ssh_endpoint& ep = ssh_->endpoint();
        auto id = ep.open_forwarded(address_, port_, host, port);
        if (!id) return gone();
        ep.attach(*id, *this, *this);
        pipe_.bind(ep, *id, false);  // bytes read before the confirmation wait for it
    }
    void on_data(slice s) override { pipe_.to_channel(std::move(s)); }
    void on_read_eof() override { pipe_.socket_eof(); }  // half-close, after what was read
    void on_output_high() override { pipe_.on_output_high(); }
    void on_output_low() override { pipe_.on_output_low(); }
    void on_close(const error&) override {
        close_timer_.cancel();
        if (pipe_.bound()) {
            // The id stays reserved until the peer's CLOSE, which then finds no handler.
            ssh_->endpoint().close(pipe_.id());
            pipe_.unbind();
        }
        ssh_.reset();
    }

    ref_ptr<ssh_conn> ssh_;  // null once the channel or the session is gone
    std::string address_;
    std::uint32_t port_;
    link::channel_pipe pipe_;
    reactor::timer close_timer_;  // flushing after the channel closed
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

ssh_conn::ssh_conn(shard& s) : owner_(s), ep_(s, *this, *this), timer_(s, [this] { on_timer(); }) {}

void ssh_conn::on_open() {
    if (auto st = ep_.start(make_config(this, owner_)); !st) return end("start failed", &st.err());
}

void ssh_conn::on_authenticated(const ssh::session_event& ev) {
    ssh::session& sess = ep_.session();
    const ssh::algorithms& a = sess.transport().negotiated();
    const std::string_view c = ssh::info(a.enc[0]).name, m = ssh::info(a.mac[0]).name;
    say("auth %s %s strict=%d cipher=%.*s mac=%.*s", printable(ev.user).c_str(), printable(ev.method).c_str(),
        sess.transport().strict_kex() ? 1 : 0, int(c.size()), c.data(), int(m.size()), m.data());
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
    timer_.arm_after(kCloseTimeout);
    close(close_mode::flush);
}

void ssh_conn::release_all() {
    for (auto& f : forwards_) owner_.close_listener(f.listener);
    forwards_.clear();
    ep_.end();
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
        const link::endpoint_stats& st = ep_.stats();
        say("end rekeys=%u kexwaits=%llu channels=%llu up=%llu down=%llu reason=%s", rekeys_,
            (unsigned long long)kex_waits_, (unsigned long long)st.channels_attached,
            (unsigned long long)st.channel_bytes_out, (unsigned long long)st.channel_bytes_in, r.c_str());
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
