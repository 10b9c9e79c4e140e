// TCP echo load generator for bench/e2e/echo-compare. Independent of ferry (plain epoll).
//
// N connections each keep `depth` messages of `size` bytes in flight: every time a whole
// message has come back, one more is sent (refills are batched into one write per readiness
// event). After `warmup` seconds it counts echoed bytes for `seconds` and prints one line:
//
//   msgs_per_s=... MB_per_s=... loadgen_cpu_s=... loadgen_cpu_share=... conns=... depth=...
//   size=... seconds=... errors=...
//
// loadgen_cpu_share is this process's CPU time (user+system) over wall time, in cores: near
// its thread count means the generator, not the server, may be the limit. --verify checks every
// echoed byte against the pattern sent (costs CPU; for sanity runs).
//
//   echo_load HOST PORT [--conns N] [--depth D] [--size S] [--seconds T] [--warmup W]
//                       [--threads K] [--verify]
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace {

struct params {
    std::string host = "127.0.0.1";
    int port = 0;
    int conns = 64;
    int depth = 16;
    std::size_t size = 512;
    double seconds = 5;
    double warmup = 1;
    int threads = 1;
    bool verify = false;
};

struct conn {
    int fd = -1;
    std::uint64_t rx = 0;          // bytes received in total
    std::uint64_t tx_owed = 0;     // bytes we still have to write (messages granted)
    std::uint64_t tx_pos = 0;      // stream position of the next byte to write
    bool want_out = false;
};

double now_s() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

double cpu_s() {
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    return double(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) + double(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

std::atomic<bool> g_counting{false};
std::atomic<bool> g_done{false};

struct result_counts {
    std::uint64_t bytes = 0;
    std::uint64_t errors = 0;
};

// The byte at stream position p: a period of `size`, so every message is the same.
inline unsigned char pattern_at(std::uint64_t p, std::size_t size) {
    return static_cast<unsigned char>('A' + (p % size) % 26);
}

void worker(const params& P, int first, int count, result_counts* out) {
    int ep = ::epoll_create1(EPOLL_CLOEXEC);
    std::vector<conn> cs(static_cast<std::size_t>(count));
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(static_cast<uint16_t>(P.port));
    inet_pton(AF_INET, P.host.c_str(), &sa.sin_addr);

    // The pattern covers one window plus one message so any write is one contiguous slice.
    const std::size_t window = P.size * static_cast<std::size_t>(P.depth);
    std::vector<unsigned char> pat(window + P.size);
    for (std::size_t i = 0; i < pat.size(); ++i) pat[i] = pattern_at(i, P.size);
    std::vector<unsigned char> rbuf(256 * 1024);

    for (auto& c : cs) {
        c.fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (::connect(c.fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != 0) {
            std::perror("echo_load: connect");
            std::exit(1);
        }
        int one = 1;
        ::setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        int fl = 1;
        ::ioctl(c.fd, FIONBIO, &fl);
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.ptr = &c;
        ::epoll_ctl(ep, EPOLL_CTL_ADD, c.fd, &ev);
        c.tx_owed = window;
    }
    (void)first;

    auto write_some = [&](conn& c) {
        while (c.tx_owed > 0) {
            std::size_t off = static_cast<std::size_t>(c.tx_pos % P.size);
            std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(c.tx_owed, window));
            ssize_t w = ::write(c.fd, pat.data() + off, n);
            if (w < 0) {
                if (errno == EAGAIN) break;
                ++out->errors;
                c.tx_owed = 0;
                return;
            }
            c.tx_owed -= static_cast<std::uint64_t>(w);
            c.tx_pos += static_cast<std::uint64_t>(w);
        }
        bool need_out = c.tx_owed > 0;
        if (need_out != c.want_out) {
            c.want_out = need_out;
            epoll_event ev{};
            ev.events = EPOLLIN | (need_out ? EPOLLOUT : 0u);
            ev.data.ptr = &c;
            ::epoll_ctl(ep, EPOLL_CTL_MOD, c.fd, &ev);
        }
    };
    for (auto& c : cs) write_some(c);

    std::vector<epoll_event> evs(512);
    while (!g_done.load(std::memory_order_relaxed)) {
        int n = ::epoll_wait(ep, evs.data(), static_cast<int>(evs.size()), 100);
        for (int i = 0; i < n; ++i) {
            conn& c = *static_cast<conn*>(evs[i].data.ptr);
            if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
                ssize_t r = ::read(c.fd, rbuf.data(), rbuf.size());
                if (r == 0 || (r < 0 && errno != EAGAIN)) {
                    ++out->errors;
                    ::epoll_ctl(ep, EPOLL_CTL_DEL, c.fd, nullptr);
                    continue;
                }
                if (r > 0) {
                    if (P.verify) {
                        for (ssize_t k = 0; k < r; ++k)
                            if (rbuf[static_cast<std::size_t>(k)] != pattern_at(c.rx + static_cast<std::uint64_t>(k), P.size)) {
                                ++out->errors;
                                break;
                            }
                    }
                    std::uint64_t before = c.rx / P.size;
                    c.rx += static_cast<std::uint64_t>(r);
                    if (g_counting.load(std::memory_order_relaxed)) out->bytes += static_cast<std::uint64_t>(r);
                    // One new message per message that came back, written in one go.
                    c.tx_owed += (c.rx / P.size - before) * P.size;
                }
            }
            if (c.tx_owed > 0) write_some(c);
        }
    }
    for (auto& c : cs) ::close(c.fd);
    ::close(ep);
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 3) {
        std::fprintf(stderr,
                     "usage: echo_load HOST PORT [--conns N] [--depth D] [--size S] [--seconds T] "
                     "[--warmup W] [--threads K] [--verify]\n");
        return 2;
    }
    params P;
    P.host = argv[1];
    P.port = std::atoi(argv[2]);
    for (int i = 3; i < argc; ++i) {
        std::string k = argv[i];
        if (k == "--verify") {
            P.verify = true;
            continue;
        }
        if (i + 1 >= argc) {
            std::fprintf(stderr, "echo_load: missing value for %s\n", k.c_str());
            return 2;
        }
        const char* v = argv[++i];
        if (k == "--conns") P.conns = std::atoi(v);
        else if (k == "--depth") P.depth = std::atoi(v);
        else if (k == "--size") P.size = static_cast<std::size_t>(std::atol(v));
        else if (k == "--seconds") P.seconds = std::atof(v);
        else if (k == "--warmup") P.warmup = std::atof(v);
        else if (k == "--threads") P.threads = std::atoi(v);
        else {
            std::fprintf(stderr, "echo_load: unknown flag %s\n", k.c_str());
            return 2;
        }
    }
    if (P.conns < 1 || P.depth < 1 || P.size < 1 || P.threads < 1 || P.threads > P.conns) {
        std::fprintf(stderr, "echo_load: bad parameters\n");
        return 2;
    }
    std::vector<result_counts> res(static_cast<std::size_t>(P.threads));
    std::vector<std::thread> ts;
    int per = P.conns / P.threads, extra = P.conns % P.threads, first = 0;
    for (int t = 0; t < P.threads; ++t) {
        int n = per + (t < extra ? 1 : 0);
        ts.emplace_back(worker, std::cref(P), first, n, &res[static_cast<std::size_t>(t)]);
        first += n;
    }
    std::this_thread::sleep_for(std::chrono::duration<double>(P.warmup));
    double c0 = cpu_s(), t0 = now_s();
    g_counting = true;
    std::this_thread::sleep_for(std::chrono::duration<double>(P.seconds));
    g_counting = false;
    double c1 = cpu_s(), t1 = now_s();
    g_done = true;
    for (auto& t : ts) t.join();

    std::uint64_t bytes = 0, errors = 0;
    for (auto& r : res) {
        bytes += r.bytes;
        errors += r.errors;
    }
    double wall = t1 - t0;
    std::printf("msgs_per_s=%.0f MB_per_s=%.1f loadgen_cpu_s=%.3f loadgen_cpu_share=%.2f conns=%d depth=%d "
                "size=%zu seconds=%.1f errors=%llu\n",
                double(bytes) / double(P.size) / wall, double(bytes) / wall / 1e6, c1 - c0, (c1 - c0) / wall,
                P.conns, P.depth, P.size, wall, static_cast<unsigned long long>(errors));
    return errors ? 1 : 0;
}
