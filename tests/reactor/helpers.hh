#pragma once
// Test helpers for the reactor: a blocking loopback client, a deterministic byte stream, and
// handler counters. Reactor tests use real loopback sockets.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <future>
#include <memory>
#include <string>
#include <thread>

#include "reactor/engine.hh"

namespace ferry::reactor::testing {

using namespace std::chrono_literals;

// xorshift64* bytes: the sender and the checker regenerate the same stream.
class byte_stream {
public:
    explicit byte_stream(std::uint64_t seed) : s_(seed ? seed : 1) {}
    void fill(unsigned char* p, std::size_t n) {
        for (std::size_t i = 0; i < n; ++i) {
            if (left_ == 0) {
                s_ ^= s_ >> 12;
                s_ ^= s_ << 25;
                s_ ^= s_ >> 27;
                word_ = s_ * 2685821657736338717ull;
                left_ = 8;
            }
            p[i] = static_cast<unsigned char>(word_);
            word_ >>= 8;
            --left_;
        }
    }

private:
    std::uint64_t s_;
    std::uint64_t word_ = 0;
    int left_ = 0;
};

inline std::uint64_t fnv1a(std::uint64_t h, const unsigned char* p, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) {
        h ^= p[i];
        h *= 1099511628211ull;
    }
    return h;
}
inline constexpr std::uint64_t fnv_init = 14695981039346656037ull;

class test_client {
public:
    // rcvbuf > 0 fixes the receive buffer before connecting (it turns off autotuning, which on
    // this kernel may grow to tcp_rmem's 32 MiB and swallow whatever a test wants to hold back).
    explicit test_client(const address& a, int rcvbuf = 0) {
        fd_ = ::socket(a.family(), SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd_ >= 0 && rcvbuf > 0) ::setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
        if (fd_ >= 0 && ::connect(fd_, a.sa(), a.len()) != 0) {
            ::close(fd_);
            fd_ = -1;
        }
        if (fd_ >= 0) {
            int one = 1;
            ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        }
    }
    ~test_client() {
        if (fd_ >= 0) ::close(fd_);
    }
    test_client(const test_client&) = delete;
    test_client& operator=(const test_client&) = delete;

    bool ok() const { return fd_ >= 0; }
    int fd() const { return fd_; }

    bool send_all(const void* data, std::size_t n) {
        auto* p = static_cast<const char*>(data);
        while (n > 0) {
            ssize_t w = ::send(fd_, p, n, MSG_NOSIGNAL);
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) return false;
            p += w;
            n -= static_cast<std::size_t>(w);
        }
        return true;
    }
    bool send_all(std::string_view s) { return send_all(s.data(), s.size()); }

    // Reads exactly n bytes unless EOF, an error or the timeout comes first.
    std::string recv_exact(std::size_t n, std::chrono::milliseconds timeout = 10s) {
        std::string out;
        out.resize(n);
        std::size_t got = 0;
        auto deadline = std::chrono::steady_clock::now() + timeout;
        while (got < n) {
            if (!wait_readable(deadline)) break;
            ssize_t r = ::recv(fd_, out.data() + got, n - got, 0);
            if (r < 0 && errno == EINTR) continue;
            if (r <= 0) break;
            got += static_cast<std::size_t>(r);
        }
        out.resize(got);
        return out;
    }
    // Reads until a newline (included).
    std::string recv_line(std::chrono::milliseconds timeout = 10s) {
        std::string out;
        auto deadline = std::chrono::steady_clock::now() + timeout;
        char c;
        while (wait_readable(deadline)) {
            ssize_t r = ::recv(fd_, &c, 1, 0);
            if (r <= 0) break;
            out.push_back(c);
            if (c == '\n') break;
        }
        return out;
    }
    // True when the peer closed (EOF or reset) within the timeout; data before it is skipped.
    bool wait_closed(std::chrono::milliseconds timeout = 10s) {
        auto deadline = std::chrono::steady_clock::now() + timeout;
        char buf[4096];
        while (wait_readable(deadline)) {
            ssize_t r = ::recv(fd_, buf, sizeof(buf), 0);
            if (r == 0 || (r < 0 && errno == ECONNRESET)) return true;
            if (r < 0 && errno != EINTR) return true;
        }
        return false;
    }
    // True if nothing arrives within `quiet`.
    bool silent_for(std::chrono::milliseconds quiet) {
        pollfd p{fd_, POLLIN, 0};
        return ::poll(&p, 1, static_cast<int>(quiet.count())) == 0;
    }

private:
    bool wait_readable(std::chrono::steady_clock::time_point deadline) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0) return false;
        pollfd p{fd_, POLLIN, 0};
        int r = ::poll(&p, 1, static_cast<int>(left.count()));
        return r > 0;
    }
    int fd_ = -1;
};

// Counters shared between a test and its handlers (handlers run on shard threads).
struct counters {
    std::atomic<int> created{0};
    std::atomic<int> opened{0};
    std::atomic<int> closed{0};
    std::atomic<int> destroyed{0};
    std::atomic<int> closed_ok{0};      // why.code == ok (local close)
    std::atomic<int> closed_peer{0};    // errc::closed
    std::atomic<int> closed_io{0};      // errc::io
    std::atomic<int> last_sys{0};
    std::atomic<int> wrong_thread{0};   // an event arrived on a thread other than the owner's
};

// Base for test handlers: counts lifecycle events and checks the thread of every event.
class counted : public connection {
public:
    explicit counted(counters* c) : c_(c) { ++c_->created; }
    ~counted() override { ++c_->destroyed; }
    void on_open() override {
        check();
        ++c_->opened;
    }
    void on_close(const error& why) override {
        check();
        ++c_->closed;
        if (why.code == errc::ok) ++c_->closed_ok;
        else if (why.code == errc::closed) ++c_->closed_peer;
        else if (why.code == errc::io) {
            ++c_->closed_io;
            c_->last_sys = why.sys;
        }
    }

protected:
    void check() {
        if (shard::current() != &owner()) ++c_->wrong_thread;
    }
    counters* c_;
};

class echo : public counted {
public:
    using counted::counted;
    void on_data(slice s) override {
        check();
        (void)send(std::move(s));
    }
    void on_output_high() override { pause_reading(); }
    void on_output_low() override { resume_reading(); }
};

inline std::unique_ptr<engine> start_engine(config cfg) {
    auto e = engine::start(cfg);
    EXPECT_TRUE(e) << (e ? "" : e.err().detail);
    if (!e) return nullptr;
    return std::move(*e);
}

// Runs `fn` on shard `i` and waits for it to finish.
template <class F>
void run_on(engine& e, unsigned i, F fn) {
    std::promise<void> done;
    auto fut = done.get_future();
    e.post(i, [&fn, &done](shard& s) {
        fn(s);
        done.set_value();
    });
    ASSERT_EQ(fut.wait_for(10s), std::future_status::ready);
}

// Polls `pred` until true or timeout.
template <class P>
bool eventually(P pred, std::chrono::milliseconds timeout = 10s) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
        if (pred()) return true;
        std::this_thread::sleep_for(1ms);
    }
    return pred();
}

}  // namespace ferry::reactor::testing
