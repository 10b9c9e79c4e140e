#pragma once
// A reproducible byte stream whose SHA-256 both ends of a transfer compute (the sender over
// what it wrote, the receiver over what it read), so gigabytes are checked without keeping them
// in memory, and a two-way transfer helper for blocking sockets. Test-only.
#include <openssl/evp.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "proto/base/buffer.hh"
#include "support/interop.hh"

namespace ferry::test {

// xorshift64* bytes: cheap enough not to be the bottleneck of a GB/s transfer, and different
// per seed so swapped or mixed-up channels are noticed.
class pattern {
public:
    explicit pattern(std::uint64_t seed) : s_(seed * 0x9E3779B97F4A7C15ull | 1) {}
    void fill(mut_bytes out) noexcept {
        std::size_t i = 0;
        for (; i + 8 <= out.size(); i += 8) {
            std::uint64_t v = step();
            std::memcpy(out.data() + i, &v, 8);
        }
        if (i < out.size()) {
            std::uint64_t v = step();
            std::memcpy(out.data() + i, &v, out.size() - i);
        }
    }

private:
    std::uint64_t step() noexcept {
        s_ ^= s_ >> 12;
        s_ ^= s_ << 25;
        s_ ^= s_ >> 27;
        return s_ * 0x2545F4914F6CDD1Dull;
    }
    std::uint64_t s_;
};

// SHA-256 over a stream, with its length. OpenSSL's (libcrypto comes with libssh2-1-dev):
// independent of the wolfCrypt code under test, and with SHA-NI it is about 5x faster than
// our wolfSSL build's SHA-256 (1.6 vs 0.28 GB/s here), so checking does not cap throughput.
class digest {
public:
    digest() : ctx_(EVP_MD_CTX_new()) { EVP_DigestInit_ex(ctx_, EVP_sha256(), nullptr); }
    ~digest() { EVP_MD_CTX_free(ctx_); }
    digest(const digest&) = delete;
    digest& operator=(const digest&) = delete;
    void update(bytes b) noexcept {
        EVP_DigestUpdate(ctx_, b.data(), b.size());
        n_ += b.size();
    }
    std::uint64_t size() const noexcept { return n_; }
    // Hex digest; resets the hash.
    std::string finish() {
        std::array<std::byte, 32> d{};
        unsigned len = 0;
        EVP_DigestFinal_ex(ctx_, reinterpret_cast<unsigned char*>(d.data()), &len);
        EVP_DigestInit_ex(ctx_, EVP_sha256(), nullptr);
        return hex(d);
    }

private:
    EVP_MD_CTX* ctx_;
    std::uint64_t n_ = 0;
};

// The digest of `size` bytes of pattern(seed), computed independently of any transfer.
inline std::string pattern_digest(std::uint64_t seed, std::uint64_t size) {
    pattern p(seed);
    digest d;
    std::vector<std::byte> b(256 * 1024);
    while (size > 0) {
        std::size_t n = std::size_t(std::min<std::uint64_t>(size, b.size()));
        p.fill(mut_bytes(b.data(), n));
        d.update(bytes(b.data(), n));
        size -= n;
    }
    return d.finish();
}

// One end of a bidirectional transfer on a blocking socket: a thread writes `size` bytes of
// pattern(seed) then shuts down its direction; this thread reads until EOF. Both halves run
// at once so neither side's flow control can deadlock on the other.
struct exchange_result {
    std::string sent_digest, recv_digest;
    std::uint64_t sent = 0, received = 0;
    double recv_seconds = 0;  // from the start to the peer's EOF
    double send_seconds = 0;  // until our last byte was written
    int error = 0;            // errno of the first failure, 0 if none
};

// `read_delay_ms`: the reading half starts that late (a slow consumer, to make the peer's
// flow control hold data back).
inline exchange_result exchange(int fd, std::uint64_t seed, std::uint64_t size,
                                int read_delay_ms = 0, int stall_seconds = 60) {
    exchange_result r;
    // A stalled transfer (a flow-control bug) becomes an error instead of a hang.
    timeval tv{stall_seconds, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    auto t0 = std::chrono::steady_clock::now();
    int write_error = 0;
    std::thread writer([&] {
        pattern p(seed);
        digest d;
        std::vector<std::byte> b(128 * 1024);
        std::uint64_t left = size;
        while (left > 0) {
            std::size_t n = std::size_t(std::min<std::uint64_t>(left, b.size()));
            p.fill(mut_bytes(b.data(), n));
            d.update(bytes(b.data(), n));
            std::size_t off = 0;
            while (off < n) {
                ssize_t w = ::send(fd, b.data() + off, n - off, MSG_NOSIGNAL);
                if (w < 0 && errno == EINTR) continue;
                if (w <= 0) {
                    write_error = errno ? errno : EPIPE;
                    left = 0;
                    break;
                }
                off += std::size_t(w);
                r.sent += std::uint64_t(w);
            }
            if (left >= n) left -= n;
        }
        r.sent_digest = d.finish();
        r.send_seconds = seconds_since(t0);
        ::shutdown(fd, SHUT_WR);
    });
    if (read_delay_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(read_delay_ms));
    digest d;
    std::vector<std::byte> b(128 * 1024);
    for (;;) {
        ssize_t n = ::recv(fd, b.data(), b.size(), 0);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            r.error = errno;
            break;
        }
        if (n == 0) break;
        d.update(bytes(b.data(), std::size_t(n)));
    }
    r.recv_seconds = seconds_since(t0);
    r.received = d.size();
    r.recv_digest = d.finish();
    writer.join();
    if (!r.error) r.error = write_error;
    return r;
}

// MB/s (10^6 bytes per second) for reports.
inline double mbps(std::uint64_t n, double seconds) {
    return seconds > 0 ? double(n) / seconds / 1e6 : 0;
}

}  // namespace ferry::test
