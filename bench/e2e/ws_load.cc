// WebSocket echo load generator for bench/e2e (independent of ferry's codec on purpose: it writes
// and reads frames by hand). N connections each keep `depth` messages of `size` bytes in flight
// (binary, masked, one frame each) for `seconds`; it counts echoed messages and reports
// messages/s, MB/s and its own CPU time so a reader can tell whether it was the bottleneck.
//
//   ws_load HOST PORT [--conns N] [--depth D] [--size S] [--seconds T]
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

struct conn {
    int fd = -1;
    std::uint64_t to_send = 0;  // bytes of the prebuilt frame stream still to write for the window
    std::size_t send_off = 0;   // offset in the prebuilt frame buffer
    std::uint64_t in_flight = 0;
    std::vector<unsigned char> rx;  // partial frame bytes
    std::size_t need = 0;           // bytes left in the current frame's payload
    bool handshake_done = false;
    std::string head;
    bool want_out = false;  // EPOLLOUT registered
};

double now_s() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

double cpu_s() {
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 3) {
        std::fprintf(stderr, "usage: ws_load HOST PORT [--conns N] [--depth D] [--size S] [--seconds T]\n");
        return 2;
    }
    const char* host = argv[1];
    int port = std::atoi(argv[2]);
    int conns = 64, depth = 16;
    std::size_t size = 512;
    double seconds = 5;
    for (int i = 3; i + 1 < argc; i += 2) {
        std::string k = argv[i];
        if (k == "--conns") conns = std::atoi(argv[i + 1]);
        else if (k == "--depth") depth = std::atoi(argv[i + 1]);
        else if (k == "--size") size = std::strtoul(argv[i + 1], nullptr, 10);
        else if (k == "--seconds") seconds = std::atof(argv[i + 1]);
    }

    // One masked binary frame, repeated: the server unmasks each, so a fixed key is fine.
    std::vector<unsigned char> frame;
    frame.push_back(0x82);
    if (size < 126) {
        frame.push_back(0x80 | size);
    } else if (size < 65536) {
        frame.push_back(0x80 | 126);
        frame.push_back(size >> 8);
        frame.push_back(size & 0xff);
    } else {
        frame.push_back(0x80 | 127);
        for (int s = 56; s >= 0; s -= 8) frame.push_back((std::uint64_t(size) >> s) & 0xff);
    }
    const unsigned char key[4] = {0x12, 0x34, 0x56, 0x78};
    frame.insert(frame.end(), key, key + 4);
    for (std::size_t i = 0; i < size; ++i) frame.push_back(static_cast<unsigned char>('a' + i % 26) ^ key[i % 4]);
    std::vector<unsigned char> burst;
    for (int i = 0; i < depth; ++i) burst.insert(burst.end(), frame.begin(), frame.end());

    int ep = epoll_create1(0);
    std::vector<conn> cs(conns);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    inet_pton(AF_INET, host, &sa.sin_addr);
    const char* req =
        "GET / HTTP/1.1\r\nHost: bench\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    for (int i = 0; i < conns; ++i) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        if (connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
            std::perror("connect");
            return 1;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (write(fd, req, std::strlen(req)) < 0) return 1;
        cs[i].fd = fd;
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.u32 = i;
        epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    }

    std::uint64_t msgs = 0, msgs_at_start = 0;
    double t_start = 0, cpu_start = 0, t_end = 0;
    bool measuring = false;
    double warmup_until = now_s() + 0.5;
    std::vector<unsigned char> buf(1 << 18);
    std::vector<epoll_event> evs(256);
    int ready = 0;

    auto pump_send = [&](conn& c) {
        while (c.to_send > 0) {
            std::size_t n = std::min<std::uint64_t>(c.to_send, burst.size() - c.send_off);
            ssize_t w = send(c.fd, burst.data() + c.send_off, n, MSG_DONTWAIT);
            if (w <= 0) break;
            c.to_send -= w;
            c.send_off = (c.send_off + w) % burst.size();
        }
        // Only touch epoll when the interest changes: one syscall per message would make the
        // load generator, not the server, the thing being measured.
        bool want = c.to_send != 0;
        if (want != c.want_out) {
            c.want_out = want;
            epoll_event ev{};
            ev.events = EPOLLIN | (want ? EPOLLOUT : 0);
            ev.data.u32 = static_cast<std::uint32_t>(&c - cs.data());
            epoll_ctl(ep, EPOLL_CTL_MOD, c.fd, &ev);
        }
    };

    for (;;) {
        double t = now_s();
        if (!measuring && ready == conns && t >= warmup_until) {
            measuring = true;
            t_start = t;
            cpu_start = cpu_s();
            msgs_at_start = msgs;
        }
        if (measuring && t - t_start >= seconds) {
            t_end = t;
            break;
        }
        int n = epoll_wait(ep, evs.data(), static_cast<int>(evs.size()), 100);
        for (int k = 0; k < n; ++k) {
            conn& c = cs[evs[k].data.u32];
            if (evs[k].events & EPOLLOUT) pump_send(c);
            if (!(evs[k].events & (EPOLLIN | EPOLLERR | EPOLLHUP))) continue;
            ssize_t r = recv(c.fd, buf.data(), buf.size(), MSG_DONTWAIT);
            if (r == 0) {
                std::fprintf(stderr, "ws_load: server closed a connection\n");
                return 1;
            }
            if (r < 0) continue;
            std::size_t off = 0;
            if (!c.handshake_done) {
                c.head.append(reinterpret_cast<char*>(buf.data()), r);
                auto e = c.head.find("\r\n\r\n");
                if (e == std::string::npos) continue;
                if (c.head.compare(0, 12, "HTTP/1.1 101") != 0) {
                    std::fprintf(stderr, "ws_load: handshake refused: %s\n", c.head.c_str());
                    return 1;
                }
                c.handshake_done = true;
                ++ready;
                off = r - (c.head.size() - (e + 4));
                c.to_send = burst.size();  // fill the window: `depth` messages in flight
                c.in_flight = depth;
                pump_send(c);
            }
            // Count frames: header parse with partial headers kept in c.rx.
            while (off < static_cast<std::size_t>(r)) {
                if (c.need > 0) {
                    std::size_t k2 = std::min<std::size_t>(c.need, r - off);
                    c.need -= k2;
                    off += k2;
                    if (c.need == 0) {
                        ++msgs;
                        c.to_send += frame.size();  // one back, one more out (sent below)
                    }
                    continue;
                }
                c.rx.push_back(buf[off++]);
                if (c.rx.size() < 2) continue;
                std::size_t hl = 2, len = c.rx[1] & 0x7f;
                if (len == 126) hl = 4;
                if (len == 127) hl = 10;
                if (c.rx.size() < hl) continue;
                if (len == 126) len = (c.rx[2] << 8) | c.rx[3];
                if (len == 127) {
                    len = 0;
                    for (int b = 2; b < 10; ++b) len = (len << 8) | c.rx[b];
                }
                c.rx.clear();
                c.need = len;
                if (len == 0) {
                    ++msgs;
                    c.to_send += frame.size();
                }
            }
            // Replace every message echoed in this read with a new one, in one send.
            pump_send(c);
        }
    }
    double el = t_end - t_start;
    double cpu = cpu_s() - cpu_start;
    std::uint64_t m = msgs - msgs_at_start;
    std::printf("msgs_per_s=%.0f mb_per_s=%.1f loadgen_cpu_share=%.2f conns=%d depth=%d size=%zu seconds=%.1f\n",
                m / el, m * double(size) / el / 1e6, cpu / el, conns, depth, size, el);
    return 0;
}
