#include "bridge.hh"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "support/interop.hh"

namespace ferry::test {

namespace {

constexpr std::size_t kReadChunk = 256 * 1024;   // from the SSH socket
constexpr std::size_t kLocalChunk = 128 * 1024;  // from a local socket
// Local sockets stop being read while this much SSH output waits for the kernel: the output
// buffer stays bounded even when sshd reads slowly.
constexpr std::size_t kMaxPendingOut = 4 * 1024 * 1024;

void set_nonblocking(int fd) { fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); }

}  // namespace

bridge::bridge(int ssh_fd, ssh::session_config cfg)
    : fd_(ssh_fd), s_(std::move(cfg)), rbuf_(kReadChunk) {
    set_nonblocking(fd_);
}

bridge::~bridge() {
    for (auto& [id, l] : links_) close_link(l);
    for (auto& l : draining_) close_link(l);
    if (listen_fd_ >= 0) ::close(listen_fd_);
    if (fd_ >= 0) ::close(fd_);
}

void bridge::fail(std::string why) {
    if (failure_.empty()) failure_ = std::move(why);
}

bool bridge::start() {
    auto st = s_.start(out_, now_ms());
    if (!st) {
        fail(std::string("start: ") + st.err().detail);
        return false;
    }
    flush_ssh();
    return failure_.empty();
}

void bridge::serve_direct_tcpip(int listen_fd, std::string host, std::uint32_t port) {
    if (listen_fd_ >= 0) ::close(listen_fd_);
    listen_fd_ = listen_fd;
    set_nonblocking(listen_fd_);
    direct_host_ = std::move(host);
    direct_port_ = port;
}

void bridge::disconnect(const char* why) {
    s_.disconnect(ssh::disconnect_reason::by_application, why, out_);
    // Best effort: the socket is non-blocking; a short flush loses only the DISCONNECT.
    for (int i = 0; i < 100 && !out_.empty(); ++i) {
        flush_ssh();
        if (!out_.empty()) {
            pollfd p{fd_, POLLOUT, 0};
            ::poll(&p, 1, 20);
        }
    }
}

bool bridge::run(const std::function<bool()>& done, int timeout_ms) {
    auto deadline = now_ms() + std::uint64_t(timeout_ms);
    while (!done()) {
        if (!failure_.empty()) return false;
        if (now_ms() > deadline) {
            fail("timeout");
            return false;
        }
        step(100);
    }
    return true;
}

void bridge::flush_ssh() {
    while (!out_.empty()) {
        iovec iov[64];
        std::size_t n = out_.to_iovec(iov, 64);
        ssize_t w = ::writev(fd_, iov, int(n));
        if (w < 0) {
            if (errno == EINTR) continue;
            if (errno != EAGAIN) fail(std::string("write to sshd: ") + std::strerror(errno));
            return;
        }
        out_.consume(std::size_t(w));
    }
}

bool bridge::want_read(const link& l) const {
    return l.opened && !l.blocked && l.to_chan_off == l.to_chan_len && !l.sock_eof &&
           !l.close_sent && out_.size() < kMaxPendingOut;
}

void bridge::step(int wait_ms) {
    flush_ssh();
    if (!failure_.empty()) return;

    // pollfd order: ssh, listener, then links (by id), then draining sockets.
    std::vector<pollfd> p;
    std::vector<std::uint32_t> ids;
    p.push_back({fd_, short(POLLIN | (out_.empty() ? 0 : POLLOUT)), 0});
    p.push_back({listen_fd_, POLLIN, 0});  // a negative fd is ignored by poll
    for (auto& [id, l] : links_) {
        short ev = 0;
        if (want_read(l)) ev |= POLLIN;
        if (l.to_sock_off < l.to_sock.size()) ev |= POLLOUT;
        p.push_back({l.fd, ev, 0});
        ids.push_back(id);
    }
    const std::size_t first_draining = p.size();
    for (auto& l : draining_) p.push_back({l.fd, POLLOUT, 0});

    int timeout = wait_ms;
    if (ssh::millis d = s_.next_deadline()) {
        std::uint64_t now = now_ms();
        timeout = d <= now ? 0 : int(std::min<std::uint64_t>(d - now, std::uint64_t(wait_ms)));
    }
    int r = ::poll(p.data(), p.size(), timeout);
    if (r < 0) {
        if (errno != EINTR) fail(std::string("poll: ") + std::strerror(errno));
        return;
    }

    if (ssh::millis d = s_.next_deadline(); d && d <= now_ms()) {
        auto ev = s_.tick(out_, now_ms());
        if (!ev) {
            fail(std::string("tick: ") + to_string(ev.code()) + ": " + ev.err().detail);
            return;
        }
        if (ev->type != ssh::session_event_type::need_more) on_event(*ev);
    }
    if (p[0].revents & (POLLIN | POLLHUP | POLLERR)) read_ssh();
    if (!failure_.empty()) return;
    if (p[1].revents & POLLIN) accept_local();
    for (std::size_t i = 0; i < ids.size() && failure_.empty(); ++i) {
        short re = p[2 + i].revents;
        if (!re) continue;
        auto it = links_.find(ids[i]);
        // Gone (closed by read_ssh) or replaced by a new channel with the same id.
        if (it == links_.end() || it->second.fd != p[2 + i].fd) continue;
        if (re & (POLLOUT | POLLERR | POLLHUP)) flush_sock(long(ids[i]), it->second);
        if (re & (POLLIN | POLLHUP | POLLERR)) read_sock(ids[i], it->second);
    }
    for (std::size_t i = 0; i < draining_.size(); ++i) {
        std::size_t k = first_draining + i;
        if (k < p.size() && p[k].revents) flush_sock(-1, draining_[i]);
    }
    // Sockets whose channel is gone: closed once everything was written.
    draining_.erase(std::remove_if(draining_.begin(), draining_.end(),
                                   [&](link& l) {
                                       if (l.to_sock_off < l.to_sock.size()) return false;
                                       close_link(l);
                                       return true;
                                   }),
                    draining_.end());
    for (auto& [id, l] : links_) maybe_close(id, l);
    flush_ssh();
}

void bridge::read_ssh() {
    ssize_t n = ::read(fd_, rbuf_.data(), rbuf_.size());
    if (n < 0) {
        if (errno != EAGAIN && errno != EINTR) fail(std::string("read from sshd: ") + std::strerror(errno));
        return;
    }
    if (n == 0) {
        fail(peer_disconnected_ ? "sshd disconnected" : "sshd closed the connection");
        return;
    }
    mut_bytes in(rbuf_.data(), std::size_t(n));
    for (;;) {
        auto ev = s_.feed(in, out_, now_ms());
        if (!ev) {
            fail(std::string("session: ") + to_string(ev.code()) + ": " + ev.err().detail);
            flush_ssh();  // the DISCONNECT
            return;
        }
        if (ev->type == ssh::session_event_type::need_more) break;
        on_event(*ev);
        if (!failure_.empty()) return;
    }
}

void bridge::on_event(const ssh::session_event& ev) {
    switch (ev.type) {
    case ssh::session_event_type::need_more:
    case ssh::session_event_type::banner: break;
    case ssh::session_event_type::authenticated:
        authenticated_ = true;
        method_ = std::string(ev.method);
        break;
    case ssh::session_event_type::rekey_done:
        ++rekeys_;
        // Channels a full rekey queue stopped may send again.
        while (auto id = s_.conn().writable_after_kex()) {
            auto it = links_.find(*id);
            if (it == links_.end()) continue;
            it->second.blocked = false;
            pump_to_chan(*id, it->second);
        }
        break;
    case ssh::session_event_type::disconnected:
        peer_disconnected_ = true;
        fail(std::string("sshd sent DISCONNECT: ") + std::string(ev.text));
        break;
    case ssh::session_event_type::channel: on_channel(ev.conn); break;
    }
}

void bridge::on_channel(const ssh::conn_event& ev) {
    auto& conn = s_.conn();
    switch (ev.type) {
    case ssh::conn_event_type::none: break;
    case ssh::conn_event_type::open_request: {
        if (ev.open.type != "forwarded-tcpip" || forward_target_ == 0) {
            auto st = conn.refuse_open(ev.id, ssh::open_failure::administratively_prohibited,
                                       "not expected", out_);
            if (!st) fail(std::string("refuse_open: ") + st.err().detail);
            break;
        }
        forwarded_opens_.push_back({std::string(ev.open.host), ev.open.port,
                                    std::string(ev.open.origin_host), ev.open.origin_port});
        // Like `ssh -R`: connect to the local target first, then answer.
        int fd = connect_loopback(forward_target_);
        if (fd < 0) {
            auto st = conn.refuse_open(ev.id, ssh::open_failure::connect_failed,
                                       "local target refused", out_);
            if (!st) fail(std::string("refuse_open: ") + st.err().detail);
            break;
        }
        set_nonblocking(fd);
        if (auto st = conn.confirm_open(ev.id, out_); !st) {
            ::close(fd);
            fail(std::string("confirm_open: ") + st.err().detail);
            break;
        }
        link& l = links_[ev.id];
        l = link{};
        l.fd = fd;
        l.opened = true;
        ++channels_opened_;
        break;
    }
    case ssh::conn_event_type::opened: {
        auto it = links_.find(ev.id);
        if (it == links_.end()) {
            fail("opened: unknown channel");
            break;
        }
        it->second.opened = true;
        ++channels_opened_;
        break;
    }
    case ssh::conn_event_type::open_failed:
        fail("channel open refused by sshd: " + std::string(ev.text));
        break;
    case ssh::conn_event_type::data: {
        auto it = links_.find(ev.id);
        if (it == links_.end()) {
            fail("data on an unknown channel");
            break;
        }
        deliver(ev.id, it->second, ev.data);
        break;
    }
    case ssh::conn_event_type::eof: {
        auto it = links_.find(ev.id);
        if (it == links_.end()) break;
        link& l = it->second;
        l.chan_eof = true;
        if (l.to_sock_off == l.to_sock.size() && !l.shut_wr) {
            ::shutdown(l.fd, SHUT_WR);
            l.shut_wr = true;
        }
        break;
    }
    case ssh::conn_event_type::closed: {
        auto it = links_.find(ev.id);
        if (it == links_.end()) break;
        link l = std::move(it->second);
        links_.erase(it);
        // The id may be reused at once: the socket keeps only what must still be written.
        if (l.to_sock_off < l.to_sock.size()) {
            draining_.push_back(std::move(l));
        } else {
            close_link(l);
        }
        break;
    }
    case ssh::conn_event_type::writable: {
        auto it = links_.find(ev.id);
        if (it == links_.end()) break;
        it->second.blocked = false;
        pump_to_chan(ev.id, it->second);
        break;
    }
    case ssh::conn_event_type::global_reply:
        replies_.push_back({ev.request, ev.ok, ev.port});
        break;
    }
}

void bridge::accept_local() {
    sockaddr_in a{};
    socklen_t len = sizeof a;
    int fd = ::accept4(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len,
                       SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return;
    auto id = s_.conn().open_direct_tcpip(direct_host_, direct_port_, "127.0.0.1",
                                          ntohs(a.sin_port), out_);
    if (!id) {
        ::close(fd);
        fail(std::string("open_direct_tcpip: ") + id.err().detail);
        return;
    }
    link& l = links_[*id];
    l = link{};
    l.fd = fd;
}

void bridge::deliver(std::uint32_t id, link& l, bytes data) {
    if (l.to_sock_off == l.to_sock.size()) {
        l.to_sock.clear();
        l.to_sock_off = 0;
        ssize_t w = ::send(l.fd, data.data(), data.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
        if (w < 0) {
            if (errno != EAGAIN && errno != EINTR) {
                fail(std::string("write to local socket: ") + std::strerror(errno));
                return;
            }
            w = 0;
        }
        if (w > 0) {
            if (auto st = s_.conn().consumed(id, std::size_t(w), out_); !st) {
                fail(std::string("consumed: ") + st.err().detail);
                return;
            }
            data = data.subspan(std::size_t(w));
        }
    }
    // The rest waits for POLLOUT; it is bounded by our receive window since consumed() has
    // not been called for it.
    l.to_sock.insert(l.to_sock.end(), data.begin(), data.end());
    max_to_sock_ = std::max(max_to_sock_, l.to_sock.size() - l.to_sock_off);
}

void bridge::flush_sock(long id, link& l) {
    while (l.to_sock_off < l.to_sock.size()) {
        ssize_t w = ::send(l.fd, l.to_sock.data() + l.to_sock_off, l.to_sock.size() - l.to_sock_off,
                           MSG_DONTWAIT | MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR) continue;
            if (errno != EAGAIN) fail(std::string("write to local socket: ") + std::strerror(errno));
            return;
        }
        l.to_sock_off += std::size_t(w);
        if (id >= 0) {
            if (auto st = s_.conn().consumed(std::uint32_t(id), std::size_t(w), out_); !st) {
                fail(std::string("consumed: ") + st.err().detail);
                return;
            }
        }
    }
    l.to_sock.clear();
    l.to_sock_off = 0;
    if (l.chan_eof && !l.shut_wr) {
        ::shutdown(l.fd, SHUT_WR);
        l.shut_wr = true;
    }
}

void bridge::read_sock(std::uint32_t id, link& l) {
    if (!want_read(l)) return;
    if (l.to_chan.size() < kLocalChunk) l.to_chan.resize(kLocalChunk);  // once per link
    l.to_chan_off = l.to_chan_len = 0;
    ssize_t n = ::recv(l.fd, l.to_chan.data(), kLocalChunk, MSG_DONTWAIT);
    if (n < 0) {
        if (errno == EAGAIN || errno == EINTR) return;
        // A reset local peer: end our direction like EOF would.
        n = 0;
    }
    l.to_chan_len = std::size_t(n);
    if (n == 0) l.sock_eof = true;
    pump_to_chan(id, l);
}

void bridge::pump_to_chan(std::uint32_t id, link& l) {
    if (!l.opened || l.close_sent) return;
    if (l.to_chan_off < l.to_chan_len) {
        auto n = s_.conn().send_data(
            id, bytes(l.to_chan.data() + l.to_chan_off, l.to_chan_len - l.to_chan_off), out_);
        if (!n) {
            fail(std::string("send_data: ") + n.err().detail);
            return;
        }
        l.to_chan_off += *n;
        if (l.to_chan_off < l.to_chan_len) {
            // The peer's window (or a rekey queue) is full: wait for `writable`.
            l.blocked = true;
            ++send_blocks_;
            return;
        }
    }
    l.to_chan_off = l.to_chan_len = 0;
    if (l.sock_eof && !l.eof_sent) {
        if (auto st = s_.conn().send_eof(id, out_); !st) {
            fail(std::string("send_eof: ") + st.err().detail);
            return;
        }
        l.eof_sent = true;
    }
}

void bridge::maybe_close(std::uint32_t id, link& l) {
    // Both directions finished and everything delivered: CLOSE (the peer answers with its own,
    // which reports `closed`).
    if (l.close_sent || !l.eof_sent || !l.chan_eof || !l.shut_wr) return;
    if (auto st = s_.conn().close(id, out_); !st) {
        fail(std::string("close: ") + st.err().detail);
        return;
    }
    l.close_sent = true;
}

void bridge::close_link(link& l) {
    if (l.fd >= 0) ::close(l.fd);
    l.fd = -1;
}

}  // namespace ferry::test
