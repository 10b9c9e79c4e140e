// Bulk transfer endpoints for tunnel benchmarks (plain sockets, independent of ferry's code).
//
//   bulk sink [--listen 127.0.0.1:0]
//       prints "listening PORT"; for each connection (one at a time): reads until EOF, then
//       writes back "<bytes>\n" and closes.
//   bulk source --connect 127.0.0.1:PORT --bytes N [--chunk K]
//       connects, writes N bytes, shuts down its write side, waits for the sink's count, and
//       prints "bytes=N seconds=S MBps=R" (R = N / S / 1e6, S from connect to the count
//       arriving, so the tunnel's buffering cannot hide bytes still in flight). Exit status 1
//       when the sink's count differs from N.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

sockaddr_in parse(const std::string& hp) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    auto colon = hp.rfind(':');
    std::string host = hp.substr(0, colon);
    a.sin_port = htons(static_cast<uint16_t>(std::atoi(hp.c_str() + colon + 1)));
    if (inet_pton(AF_INET, host.c_str(), &a.sin_addr) != 1) {
        std::fprintf(stderr, "bulk: bad address %s\n", hp.c_str());
        std::exit(2);
    }
    return a;
}

int sink(const std::string& listen_at) {
    int ls = ::socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    ::setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a = parse(listen_at);
    if (::bind(ls, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(ls, 16) != 0) {
        std::perror("bulk sink: bind/listen");
        return 1;
    }
    socklen_t len = sizeof a;
    ::getsockname(ls, reinterpret_cast<sockaddr*>(&a), &len);
    std::printf("listening %u\n", ntohs(a.sin_port));
    std::fflush(stdout);
    std::vector<char> buf(1 << 20);
    for (;;) {
        int c = ::accept(ls, nullptr, nullptr);
        if (c < 0) continue;
        unsigned long long total = 0;
        for (;;) {
            ssize_t n = ::read(c, buf.data(), buf.size());
            if (n <= 0) break;
            total += static_cast<unsigned long long>(n);
        }
        std::string reply = std::to_string(total) + "\n";
        (void)!::write(c, reply.data(), reply.size());
        ::close(c);
    }
}

int source(const std::string& to, unsigned long long bytes, std::size_t chunk) {
    std::vector<char> buf(chunk);
    for (std::size_t i = 0; i < buf.size(); ++i) buf[i] = static_cast<char>(i * 131 + 7);
    auto t0 = std::chrono::steady_clock::now();
    int s = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a = parse(to);
    if (::connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
        std::perror("bulk source: connect");
        return 1;
    }
    unsigned long long left = bytes;
    while (left > 0) {
        std::size_t k = left < buf.size() ? static_cast<std::size_t>(left) : buf.size();
        ssize_t n = ::write(s, buf.data(), k);
        if (n <= 0) {
            std::perror("bulk source: write");
            return 1;
        }
        left -= static_cast<unsigned long long>(n);
    }
    ::shutdown(s, SHUT_WR);
    char reply[64];
    std::size_t got = 0;
    for (;;) {
        ssize_t n = ::read(s, reply + got, sizeof reply - 1 - got);
        if (n <= 0) break;
        got += static_cast<std::size_t>(n);
    }
    reply[got] = 0;
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    unsigned long long counted = std::strtoull(reply, nullptr, 10);
    std::printf("bytes=%llu seconds=%.3f MBps=%.1f\n", counted, secs, double(counted) / secs / 1e6);
    if (counted != bytes) {
        std::fprintf(stderr, "bulk source: sink counted %llu of %llu bytes\n", counted, bytes);
        return 1;
    }
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: bulk sink [--listen A] | bulk source --connect A --bytes N\n");
        return 2;
    }
    std::string mode = argv[1], listen_at = "127.0.0.1:0", to;
    unsigned long long bytes = 0;
    std::size_t chunk = 256 * 1024;
    for (int i = 2; i + 1 < argc; i += 2) {
        std::string k = argv[i];
        if (k == "--listen") listen_at = argv[i + 1];
        else if (k == "--connect") to = argv[i + 1];
        else if (k == "--bytes") bytes = std::strtoull(argv[i + 1], nullptr, 10);
        else if (k == "--chunk") chunk = std::strtoull(argv[i + 1], nullptr, 10);
        else {
            std::fprintf(stderr, "bulk: unknown flag %s\n", k.c_str());
            return 2;
        }
    }
    if (mode == "sink") return sink(listen_at);
    if (mode == "source" && !to.empty() && bytes > 0 && chunk > 0) return source(to, bytes, chunk);
    std::fprintf(stderr, "bulk: bad arguments\n");
    return 2;
}
