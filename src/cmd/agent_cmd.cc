// `ferry agent` and `ferry connect`: flag parsing (control::parse_agent_args) and wiring only.
#include "cmd/agent_cmd.hh"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "agent/agent.hh"
#include "agent/resolver.hh"
#include "control/agent_setup.hh"
#include "control/config.hh"
#include "link/ws_client.hh"
#include "proto/base/log.hh"
#include "proto/ssh/crypto.hh"
#include "proto/tls/context.hh"
#include "proto/tls/session.hh"
#include "proto/ws/codec.hh"
#include "proto/ws/handshake.hh"
#include "reactor/engine.hh"

using namespace ferry;

namespace {

std::atomic<int> g_exit_code{-1};
volatile sig_atomic_t g_connect_stop = 0;  // ferry connect: SIGTERM/SIGINT/SIGHUP seen

}  // namespace

// ---- ferry agent ------------------------------------------------------------------------------

int agent_main(int argc, char** argv) {
    std::string message;
    auto parsed = control::parse_agent_args(argc, argv, control::process_env(), message);
    if (!parsed) return control::report_parse_failure(parsed.err(), message, "ferry agent");
    const control::agent_settings& s = *parsed;
    log::level lvl;
    if (log::parse_level(s.log_level, lvl)) log::set_level(lvl);

    auto built = control::agent_options_from(s, message);
    if (!built) {
        std::fprintf(stderr, "ferry agent: %s\n", message.c_str());
        return message.rfind("TLS: ", 0) == 0 ? 1 : 2;
    }
    agent::agent_options o = std::move(*built);

    // Stop signals are taken by sigtimedwait() below only: block them before any thread exists.
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
    signal(SIGPIPE, SIG_IGN);
    // A terminal hang-up (or a stray SIGHUP) must not end the agent without its drain; SIGHUP
    // gets a meaning (reload) with the control plane.
    signal(SIGHUP, SIG_IGN);

    reactor::config rc;
    rc.shards = 1;
    rc.pin_threads = false;
    rc.buf_count = 256;  // 4 MiB of receive buffers: an agent has few connections
    rc.populate_buffers = false;  // faulted in by use: start-up to first request matters more
    auto eng = reactor::engine::start(rc);
    if (!eng) {
        std::fprintf(stderr, "ferry agent: cannot start the reactor: %s\n", eng.err().detail);
        return 1;
    }
    reactor::engine& e = **eng;
    auto rng = ssh::system_rng::create();
    if (!rng) {
        std::fprintf(stderr, "ferry agent: no random generator\n");
        return 1;
    }
    std::shared_ptr<ssh::system_rng> random(std::move(*rng));  // used on the shard only
    // The agent lives on shard 0: created, used and destroyed there.
    auto holder = std::make_shared<std::unique_ptr<agent::agent>>();
    e.post(0, [holder, random, opts = std::move(o)](reactor::shard& sh) mutable {
        *holder = std::make_unique<agent::agent>(sh, std::move(opts), *random, [holder, &sh](int code) {
            // Not from inside the agent's own call stack: destroy it on the next loop pass.
            // The main thread stops the engine once it sees the code (a shard posting to itself
            // from inside a message would not be woken up for it).
            sh.post(sh.id(), [holder, code](reactor::shard&) {
                holder->reset();
                g_exit_code.store(code);
            });
        });
        (*holder)->start();
    });

    int signals = 0;
    while (g_exit_code.load() < 0 && !e.stop_requested()) {
        timespec ts{0, 200 * 1000 * 1000};
        int sig = sigtimedwait(&sigs, nullptr, &ts);
        if (sig <= 0) continue;
        ++signals;
        const bool now = signals > 1;
        FERRY_LOG(info, now ? "second signal: stopping now" : "signal: stopping", {"signal", sig});
        e.post(0, [holder, now](reactor::shard&) {
            if (*holder) (*holder)->stop(now);
        });
        if (signals > 2) {
            e.stop();
            break;
        }
    }
    e.stop();
    e.wait();
    // Stopped the hard way (third signal): the agent's timers belong to a shard that is gone;
    // do not run its destructor on this thread (the process is about to exit anyway).
    if (*holder) (void)holder->release();
    const int code = g_exit_code.load();
    return code < 0 ? 1 : code;
}

// ---- ferry connect ----------------------------------------------------------------------------

namespace {

// A blocking-ish byte pipe to the relay: TCP plus optional TLS, driven by poll().
class relay_pipe {
public:
    relay_pipe(int fd, std::unique_ptr<tls::session> tls) : fd_(fd), tls_(std::move(tls)) {}
    ~relay_pipe() {
        if (fd_ >= 0) ::close(fd_);
    }
    int fd() const { return fd_; }
    bool want_write() const { return !wire_out_.empty(); }
    std::size_t pending() const { return wire_out_.size(); }
    bool tls_ready() const { return !tls_ || tls_->handshake_done(); }

    status start() {
        if (tls_) return tls_->start(wire_out_);
        return {};
    }
    // Plaintext to the relay.
    status write(bytes plain) {
        if (!tls_) {
            wire_out_.append_copy(plain);
            return {};
        }
        return tls_->write(plain, wire_out_);
    }
    status write(buffer_chain& plain) {
        if (!tls_) {
            wire_out_.append(std::move(plain));
            plain.clear();
            return {};
        }
        return tls_->write(plain, wire_out_);
    }
    // Sends what it can without blocking.
    status flush() {
        while (!wire_out_.empty()) {
            iovec iov[32];
            std::size_t n = wire_out_.to_iovec(iov, 32);
            ssize_t k = ::writev(fd_, iov, int(n));
            if (k < 0) {
                if (errno == EINTR) continue;
                if (errno == EAGAIN || errno == EWOULDBLOCK) return {};
                return fail(error::from_errno(errno, "send to the relay"));
            }
            wire_out_.consume(std::size_t(k));
        }
        return {};
    }
    // Reads what is available; plaintext is appended to `plain`. eof: the relay closed (TCP
    // or TLS close_notify).
    status read(buffer_chain& plain, bool& eof) {
        std::byte buf[16384];
        for (;;) {
            ssize_t k = ::read(fd_, buf, sizeof buf);
            if (k < 0) {
                if (errno == EINTR) continue;
                if (errno == EAGAIN || errno == EWOULDBLOCK) return {};
                return fail(error::from_errno(errno, "read from the relay"));
            }
            if (k == 0) {
                eof = true;
                return {};
            }
            if (!tls_) {
                plain.append_copy(bytes(buf, std::size_t(k)));
            } else {
                bytes in(buf, std::size_t(k));
                for (;;) {
                    auto ev = tls_->next(in, wire_out_);
                    if (!ev) return fail(ev.err());
                    if (ev->type == tls::event_type::need_more) break;
                    if (ev->type == tls::event_type::data) plain.append(std::move(ev->data));
                    if (ev->type == tls::event_type::peer_closed) eof = true;
                }
            }
            if (std::size_t(k) < sizeof buf) return {};
        }
    }
    void close_notify() {
        if (tls_ && tls_->handshake_done()) (void)tls_->close_notify(wire_out_);
    }

private:
    int fd_;
    std::unique_ptr<tls::session> tls_;
    buffer_chain wire_out_;
};

std::int64_t mono_ms() {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return std::int64_t(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

int connect_tcp(const reactor::address& a, int timeout_ms, std::string& why) {
    int fd = ::socket(a.family(), SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        why = std::strerror(errno);
        return -1;
    }
    int one = 1;
    (void)::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (::connect(fd, a.sa(), a.len()) != 0 && errno != EINPROGRESS) {
        why = std::strerror(errno);
        ::close(fd);
        return -1;
    }
    pollfd p{fd, POLLOUT, 0};
    int r = ::poll(&p, 1, timeout_ms);
    int err = 0;
    socklen_t el = sizeof err;
    if (r <= 0) {
        why = r == 0 ? "connect timeout" : std::strerror(errno);
        ::close(fd);
        return -1;
    }
    (void)::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el);
    if (err != 0) {
        why = std::strerror(err);
        ::close(fd);
        return -1;
    }
    return fd;
}

// Writes all of `b` to a (possibly non-blocking) fd.
bool write_all(int fd, bytes b) {
    while (!b.empty()) {
        ssize_t k = ::write(fd, b.data(), b.size());
        if (k < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                pollfd p{fd, POLLOUT, 0};
                (void)::poll(&p, 1, 1000);
                continue;
            }
            return false;
        }
        b = b.subspan(std::size_t(k));
    }
    return true;
}

struct mask_pool {
    ssh::rng* rng = nullptr;
    std::array<std::byte, 256> pool{};
    std::size_t used = sizeof(pool);
    static std::uint32_t next(void* p) noexcept {
        auto* m = static_cast<mask_pool*>(p);
        if (m->used + 4 > m->pool.size()) {
            if (!m->rng->fill(mut_bytes(m->pool))) {
                for (std::size_t i = 0; i < m->pool.size(); ++i) m->pool[i] = std::byte(unsigned(m->pool[i]) * 33u + i);
            }
            m->used = 0;
        }
        std::uint32_t k;
        std::memcpy(&k, m->pool.data() + m->used, 4);
        m->used += 4;
        return k;
    }
};

int connect_fail(const char* fmt, const std::string& a, const std::string& b = {}) {
    std::fprintf(stderr, "ferry connect: ");
    std::fprintf(stderr, fmt, a.c_str(), b.c_str());
    std::fprintf(stderr, "\n");
    return 1;
}

}  // namespace

int connect_main(int argc, char** argv) {
    std::string message;
    auto parsed = control::parse_connect_args(argc, argv, control::process_env(), message);
    if (!parsed) return control::report_parse_failure(parsed.err(), message, "ferry connect");
    const control::agent_settings& s = *parsed;
    log::level lvl;
    if (log::parse_level(s.log_level, lvl)) log::set_level(lvl);
    for (const std::string& w : s.warnings) FERRY_LOG(warn, "setting ignored", {"detail", w});
    signal(SIGPIPE, SIG_IGN);
    // A stop signal ends the bridge like EOF on stdin: close 1000, then exit (no SA_RESTART, so
    // poll() returns EINTR).
    struct sigaction sa {};
    sa.sa_handler = [](int) { g_connect_stop = 1; };
    sigemptyset(&sa.sa_mask);
    for (int sig : {SIGTERM, SIGINT, SIGHUP}) sigaction(sig, &sa, nullptr);

    auto tls_ctx = control::relay_tls(s);
    if (!tls_ctx) return connect_fail("TLS: %s%s", tls_ctx.err().detail);
    auto token = control::token_source_for(s)();
    if (!token) return connect_fail("token: %s%s", token.err().detail);
    auto addr = agent::resolve(s.relay_target.host, s.relay_target.port);
    if (!addr) return connect_fail("cannot resolve %s: %s", s.relay_target.host, addr.err().detail);
    const int connect_ms = int(s.connect_timeout_ms);
    const int handshake_ms = int(s.handshake_timeout_ms);

    std::string why;
    int fd = connect_tcp(*addr, connect_ms, why);
    if (fd < 0) return connect_fail("connect to %s: %s", addr->to_string(), why);
    std::unique_ptr<tls::session> ts;
    if (*tls_ctx) {
        auto t = tls::session::client(*tls_ctx, s.relay_target.host);
        if (!t) return connect_fail("TLS: %s%s", t.err().detail);
        ts = std::make_unique<tls::session>(std::move(*t));
    }
    relay_pipe pipe(fd, std::move(ts));
    auto rng = ssh::system_rng::create();
    if (!rng) return connect_fail("no random generator%s%s", "");

    // ---- upgrade ----
    std::array<std::byte, 16> nonce{};
    if (!(*rng)->fill(mut_bytes(nonce))) return connect_fail("no randomness%s%s", "");
    const std::string key = ws::make_key(nonce);
    const bool tls_on = *tls_ctx != nullptr;
    std::string host;
    const bool v6 = s.relay_target.host.find(':') != std::string::npos;
    if (v6) host.push_back('[');
    host.append(s.relay_target.host);
    if (v6) host.push_back(']');
    if ((tls_on && s.relay_target.port != 443) || (!tls_on && s.relay_target.port != 80)) {
        host.push_back(':');
        host.append(std::to_string(s.relay_target.port));
    }
    std::string auth = "Authorization: Bearer " + *token + "\r\n";
    ws::client_request req;
    req.host = host;
    req.target = s.relay_target.path;
    req.extra_headers = auth;
    if (auto st = pipe.start(); !st) return connect_fail("TLS: %s%s", st.err().detail);
    bool request_sent = false;
    std::string head;
    buffer_chain plain;
    bool eof = false;
    const std::int64_t deadline = mono_ms() + connect_ms + handshake_ms;
    std::size_t head_len = 0;
    std::array<ws::header, 64> storage;
    ws::response_head resp;
    for (;;) {
        if (!request_sent && pipe.tls_ready()) {
            buffer_chain r;
            ws::write_upgrade_request(r, req, key);
            if (auto st = pipe.write(r); !st) return connect_fail("TLS: %s%s", st.err().detail);
            request_sent = true;
        }
        if (auto st = pipe.flush(); !st) return connect_fail("%s%s", st.err().detail);
        const std::int64_t left = deadline - mono_ms();
        if (left <= 0) return connect_fail("no WebSocket upgrade from %s within the handshake timeout%s", host);
        pollfd p{pipe.fd(), short(POLLIN | (pipe.want_write() ? POLLOUT : 0)), 0};
        if (::poll(&p, 1, int(left)) < 0 && errno != EINTR) return connect_fail("poll: %s%s", std::strerror(errno));
        if (auto st = pipe.read(plain, eof); !st) return connect_fail("%s%s", st.err().detail);
        head += plain.to_string();
        plain.clear();
        if (request_sent && !head.empty()) {
            auto used = ws::parse_response_head(as_bytes(head), resp, storage);
            if (!used) return connect_fail("bad answer from the relay: %s%s", used.err().detail);
            if (*used > 0) {
                head_len = *used;
                break;
            }
        }
        if (eof) return connect_fail("the relay closed the connection during the upgrade%s%s", "");
    }
    if (resp.status != 101) {
        // Collect a bounded body for the error message (Content-Length or what came with it).
        std::string body = head.substr(head_len);
        std::size_t want = 4096;
        for (const ws::header& h : resp.headers) {
            if (ws::iequals(h.name, "Content-Length")) want = std::min<std::size_t>(4096, std::strtoul(std::string(h.value).c_str(), nullptr, 10));
        }
        const std::int64_t until = mono_ms() + 2000;
        while (body.size() < want && !eof && mono_ms() < until) {
            pollfd p{pipe.fd(), POLLIN, 0};
            (void)::poll(&p, 1, 200);
            if (!pipe.read(plain, eof)) break;
            body += plain.to_string();
            plain.clear();
        }
        link::ws_refusal r = link::parse_refusal(resp.status, resp.headers, body.substr(0, want));
        std::fprintf(stderr, "ferry connect: the relay refused the upgrade: HTTP %d %s%s%s\n", resp.status,
                     r.code.c_str(), r.message.empty() ? "" : ": ", r.message.c_str());
        return 1;
    }
    {
        ws::client_request check = req;
        auto up = ws::check_upgrade_response(resp, key, check);
        if (!up) return connect_fail("bad WebSocket upgrade answer: %s%s", up.err().detail);
    }
    std::string rest = head.substr(head_len);
    head.clear();

    // ---- bridge ----
    mask_pool masks;
    masks.rng = rng->get();
    ws::codec_options co;
    co.lim.max_message = std::uint64_t(1) << 40;  // SSH bytes: messages are never buffered whole
    co.mask = ws::mask_source{&mask_pool::next, &masks};
    ws::codec codec(ws::role::client, co);
    const int in_fd = STDIN_FILENO, out_fd = STDOUT_FILENO;
    bool stdin_open = true;
    std::int64_t close_deadline = 0;
    int exit_code = 0;
    std::vector<std::byte> inbuf(64 * 1024);

    auto feed = [&](buffer_chain& data) -> bool {  // false: finished
        while (!data.empty()) {
            slice sl = data.pop_front();
            mut_bytes in = sl.mut_view();
            for (;;) {
                buffer_chain replies;
                auto ev = codec.next(in, replies);
                if (!replies.empty()) (void)pipe.write(replies);
                if (!ev) {
                    std::fprintf(stderr, "ferry connect: WebSocket error: %s\n", ev.err().detail);
                    exit_code = 1;
                    return false;
                }
                if (ev->type == ws::event_type::need_more) break;
                if (ev->type == ws::event_type::data && ev->op != ws::opcode::binary) {
                    std::fprintf(stderr, "ferry connect: the relay sent a text message; SSH needs binary\n");
                    buffer_chain c;
                    (void)codec.close(c, ws::close_code::unsupported_data, "binary messages only");
                    (void)pipe.write(c);
                    stdin_open = false;
                    exit_code = 1;
                    if (!close_deadline) close_deadline = mono_ms() + 3000;
                    continue;
                }
                if (ev->type == ws::event_type::data) {
                    if (!write_all(out_fd, ev->payload)) {
                        // Our reader went away: tell the relay we are done.
                        buffer_chain c;
                        (void)codec.close(c, ws::close_code::going_away);
                        (void)pipe.write(c);
                        stdin_open = false;
                        if (!close_deadline) close_deadline = mono_ms() + 3000;
                    }
                }
                if (codec.state() == ws::close_state::closed) {
                    std::uint16_t code = codec.peer_close_code();
                    if (code != ws::close_code::normal && code != 0 && code != ws::close_code::no_status &&
                        code != ws::close_code::going_away) {
                        std::fprintf(stderr, "ferry connect: the relay closed the WebSocket (code %u)\n", code);
                        exit_code = 1;
                    }
                    return false;
                }
            }
        }
        return true;
    };

    if (!rest.empty()) {
        buffer_chain r;
        r.append_copy(as_bytes(rest));
        if (!feed(r)) {
            pipe.close_notify();
            (void)pipe.flush();
            return exit_code;
        }
    }
    for (;;) {
        if (auto st = pipe.flush(); !st) {
            std::fprintf(stderr, "ferry connect: %s\n", st.err().detail);
            return 1;
        }
        if (close_deadline && mono_ms() > close_deadline) return exit_code;
        pollfd p[2];
        int n = 0;
        p[n++] = pollfd{pipe.fd(), short(POLLIN | (pipe.want_write() ? POLLOUT : 0)), 0};
        // Stop reading stdin while the relay is slow to take our output (back-pressure).
        const bool read_stdin = stdin_open && pipe.pending() < (4u << 20);
        if (read_stdin) p[n++] = pollfd{in_fd, POLLIN, 0};
        int r = ::poll(p, nfds_t(n), close_deadline ? 200 : -1);
        if (r < 0 && errno != EINTR) return 1;
        if (r < 0) {
            for (pollfd& x : p) x.revents = 0;
        }
        const bool stop_now = g_connect_stop && stdin_open;
        if (stop_now || (n > 1 && (p[1].revents & (POLLIN | POLLHUP | POLLERR)))) {
            ssize_t k = stop_now ? 0 : ::read(in_fd, inbuf.data(), inbuf.size());
            if (k < 0 && errno != EINTR && errno != EAGAIN) k = 0;
            if (k == 0) {
                // EOF on stdin: close the WebSocket normally and wait for the relay's answer.
                stdin_open = false;
                buffer_chain c;
                (void)codec.close(c, ws::close_code::normal);
                (void)pipe.write(c);
                close_deadline = mono_ms() + 3000;
            } else if (k > 0) {
                buffer_chain m;
                ws::send_options so;
                so.comp = ws::compress::no;
                (void)codec.send_copy(m, ws::opcode::binary, bytes(inbuf.data(), std::size_t(k)), so);
                if (auto st = pipe.write(m); !st) {
                    std::fprintf(stderr, "ferry connect: TLS: %s\n", st.err().detail);
                    return 1;
                }
            }
        }
        if (p[0].revents & (POLLIN | POLLHUP | POLLERR)) {
            if (auto st = pipe.read(plain, eof); !st) {
                std::fprintf(stderr, "ferry connect: %s\n", st.err().detail);
                return 1;
            }
            if (!feed(plain)) {
                plain.clear();
                pipe.close_notify();
                (void)pipe.flush();
                return exit_code;
            }
            if (eof) {
                if (codec.state() != ws::close_state::closed) {
                    std::fprintf(stderr, "ferry connect: the relay closed the connection without a WebSocket close\n");
                    return 1;
                }
                return exit_code;
            }
        }
    }
}
