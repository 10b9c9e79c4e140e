// A plain epoll TCP echo server: the baseline the reactor's echo is compared with in
// bench/e2e/echo-compare. Written to be a fair, ordinary good server, not a straw man:
//
//   - thread per core, each with its own SO_REUSEPORT listener and epoll instance (the same
//     sharding as the reactor), no locks, no shared state;
//   - level-triggered; one read() of up to 64 KiB per readiness event, then write() it back at
//     once (an extra read to see EAGAIN would only add a system call per event);
//   - a short write keeps the rest in a per-connection buffer, switches the interest to EPOLLOUT
//     and stops reading until it is drained (backpressure, nothing unbounded);
//   - TCP_NODELAY on accepted sockets and up to 512 events per epoll_wait, like the reactor.
//
//   epoll_echo [--listen ADDR:PORT] [--threads N]
// Prints "listening on ADDR:PORT" when ready; runs until SIGINT/SIGTERM.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace {

struct conn {
    int fd = -1;
    std::vector<char> pending;  // bytes read but not yet written back
    std::size_t pending_off = 0;
};

bool parse_addr(const std::string& s, sockaddr_storage& ss, socklen_t& len) {
    std::memset(&ss, 0, sizeof(ss));
    auto colon = s.rfind(':');
    if (colon == std::string::npos) return false;
    std::string host = s.substr(0, colon);
    int port = std::atoi(s.c_str() + colon + 1);
    if (!host.empty() && host.front() == '[') {
        host = host.substr(1, host.size() - 2);
        auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
        a->sin6_family = AF_INET6;
        a->sin6_port = htons(static_cast<uint16_t>(port));
        len = sizeof(*a);
        return inet_pton(AF_INET6, host.c_str(), &a->sin6_addr) == 1;
    }
    auto* a = reinterpret_cast<sockaddr_in*>(&ss);
    a->sin_family = AF_INET;
    a->sin_port = htons(static_cast<uint16_t>(port));
    len = sizeof(*a);
    if (host.empty()) host = "0.0.0.0";
    return inet_pton(AF_INET, host.c_str(), &a->sin_addr) == 1;
}

int make_listener(const sockaddr_storage& ss, socklen_t len) {
    int fd = ::socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    if (::bind(fd, reinterpret_cast<const sockaddr*>(&ss), len) != 0 || ::listen(fd, 4096) != 0) {
        std::perror("epoll_echo: bind/listen");
        std::exit(1);
    }
    return fd;
}

class worker {
public:
    worker(int listen_fd, int stop_fd) : lfd_(listen_fd), stop_fd_(stop_fd) {}

    void run() {
        ep_ = ::epoll_create1(EPOLL_CLOEXEC);
        add(lfd_, EPOLLIN, nullptr);
        add(stop_fd_, EPOLLIN, &stop_tag_);
        std::vector<epoll_event> evs(512);
        std::vector<char> buf(64 * 1024);
        for (;;) {
            int n = ::epoll_wait(ep_, evs.data(), static_cast<int>(evs.size()), -1);
            if (n < 0) {
                if (errno == EINTR) continue;
                std::perror("epoll_wait");
                return;
            }
            for (int i = 0; i < n; ++i) {
                void* tag = evs[i].data.ptr;
                if (tag == &stop_tag_) return cleanup();
                if (tag == nullptr) {
                    accept_all();
                    continue;
                }
                auto* c = static_cast<conn*>(tag);
                std::uint32_t e = evs[i].events;
                if (e & EPOLLOUT) {
                    if (!flush(c)) continue;
                } else if (e & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
                    on_readable(c, buf);
                }
            }
        }
    }

private:
    void add(int fd, std::uint32_t events, void* tag) {
        epoll_event ev{};
        ev.events = events;
        ev.data.ptr = tag;
        ::epoll_ctl(ep_, EPOLL_CTL_ADD, fd, &ev);
    }
    void modify(conn* c, std::uint32_t events) {
        epoll_event ev{};
        ev.events = events;
        ev.data.ptr = c;
        ::epoll_ctl(ep_, EPOLL_CTL_MOD, c->fd, &ev);
    }

    void accept_all() {
        for (;;) {
            int fd = ::accept4(lfd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
            if (fd < 0) return;  // EAGAIN (or EMFILE: try again on the next event)
            int one = 1;
            ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
            auto* c = new conn;
            c->fd = fd;
            conns_.push_back(c);
            add(fd, EPOLLIN, c);
        }
    }

    void on_readable(conn* c, std::vector<char>& buf) {
        ssize_t r = ::read(c->fd, buf.data(), buf.size());
        if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) return drop(c);
        if (r < 0) return;
        ssize_t w = ::write(c->fd, buf.data(), static_cast<std::size_t>(r));
        if (w < 0) {
            if (errno != EAGAIN) return drop(c);
            w = 0;
        }
        if (w < r) {
            // The socket is full: keep the rest, wait for EPOLLOUT, stop reading meanwhile.
            c->pending.assign(buf.data() + w, buf.data() + r);
            c->pending_off = 0;
            modify(c, EPOLLOUT);
        }
    }

    // Returns false if the connection was dropped.
    bool flush(conn* c) {
        while (c->pending_off < c->pending.size()) {
            ssize_t w = ::write(c->fd, c->pending.data() + c->pending_off, c->pending.size() - c->pending_off);
            if (w < 0) {
                if (errno == EAGAIN) return true;
                drop(c);
                return false;
            }
            c->pending_off += static_cast<std::size_t>(w);
        }
        c->pending.clear();
        c->pending_off = 0;
        modify(c, EPOLLIN);
        return true;
    }

    void drop(conn* c) {
        ::epoll_ctl(ep_, EPOLL_CTL_DEL, c->fd, nullptr);
        ::close(c->fd);
        c->fd = -1;  // freed at exit (keeps this baseline free of container bookkeeping)
    }

    void cleanup() {
        for (conn* c : conns_) {
            if (c->fd >= 0) ::close(c->fd);
            delete c;
        }
        ::close(ep_);
        ::close(lfd_);
    }

    int lfd_;
    int stop_fd_;
    int ep_ = -1;
    int stop_tag_ = 0;
    std::vector<conn*> conns_;
};

}  // namespace

int main(int argc, char** argv) {
    std::string listen = "127.0.0.1:0";
    unsigned threads = std::thread::hardware_concurrency();
    for (int i = 1; i + 1 < argc; i += 2) {
        std::string k = argv[i];
        if (k == "--listen") listen = argv[i + 1];
        else if (k == "--threads") threads = static_cast<unsigned>(std::atoi(argv[i + 1]));
        else {
            std::fprintf(stderr, "usage: epoll_echo [--listen ADDR:PORT] [--threads N]\n");
            return 2;
        }
    }
    if (threads == 0) threads = 1;
    sockaddr_storage ss;
    socklen_t len;
    if (!parse_addr(listen, ss, len)) {
        std::fprintf(stderr, "epoll_echo: bad address %s\n", listen.c_str());
        return 2;
    }
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
    signal(SIGPIPE, SIG_IGN);

    // The first listener picks the port (for :0); the others join it.
    std::vector<int> lfds;
    lfds.push_back(make_listener(ss, len));
    sockaddr_storage bound{};
    socklen_t blen = sizeof(bound);
    ::getsockname(lfds[0], reinterpret_cast<sockaddr*>(&bound), &blen);
    for (unsigned i = 1; i < threads; ++i) lfds.push_back(make_listener(bound, blen));

    cpu_set_t allowed;
    sched_getaffinity(0, sizeof(allowed), &allowed);
    std::vector<int> cpus;
    for (int c = 0; c < CPU_SETSIZE; ++c)
        if (CPU_ISSET(c, &allowed)) cpus.push_back(c);

    int stop_fd = ::eventfd(0, EFD_CLOEXEC);
    std::vector<std::thread> ts;
    std::vector<std::unique_ptr<worker>> ws;
    for (unsigned i = 0; i < threads; ++i) {
        ws.push_back(std::make_unique<worker>(lfds[i], stop_fd));
        ts.emplace_back([w = ws.back().get(), cpu = cpus[i % cpus.size()]] {
            cpu_set_t set;
            CPU_ZERO(&set);
            CPU_SET(cpu, &set);
            pthread_setaffinity_np(pthread_self(), sizeof(set), &set);  // like the reactor's shards
            w->run();
        });
    }
    char host[INET6_ADDRSTRLEN] = {};
    int port = 0;
    if (bound.ss_family == AF_INET6) {
        auto* a = reinterpret_cast<sockaddr_in6*>(&bound);
        inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
        port = ntohs(a->sin6_port);
        std::printf("listening on [%s]:%d\n", host, port);
    } else {
        auto* a = reinterpret_cast<sockaddr_in*>(&bound);
        inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
        port = ntohs(a->sin_port);
        std::printf("listening on %s:%d\n", host, port);
    }
    std::fflush(stdout);
    int sig = 0;
    sigwait(&stop_signals, &sig);
    std::uint64_t one = 1;
    (void)!::write(stop_fd, &one, sizeof(one));  // level-triggered: every worker sees it
    for (auto& t : ts) t.join();
    ::close(stop_fd);
    return 0;
}
