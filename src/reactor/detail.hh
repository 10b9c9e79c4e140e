#pragma once
// Internal types of the reactor shared by shard.cc, engine.cc and connection.cc.
#include <unistd.h>

#include <cstdint>
#include <memory>
#include <utility>

#include "reactor/address.hh"
#include "reactor/function.hh"
#include "reactor/shard.hh"
#include "reactor/timer.hh"

namespace ferry::reactor::detail {

// A listening socket with its multishot accept. Owned by the shard; freed after the final
// accept CQE once closing.
struct alignas(16) listener {
    shard* owner = nullptr;
    int fd = -1;
    connection_factory make;
    listen_options opt;
    std::uint64_t id = 0;  // handle returned by shard::add_listener
    std::uint16_t gen = 0;
    bool armed = false;
    bool closing = false;
    std::unique_ptr<timer> retry;  // re-arm after EMFILE & co.
};

// A cross-shard message: a node of the target's lock-free inbox stack.
struct message {
    message* next = nullptr;
    unique_function<void(shard&)> fn;
};

// Owns an fd travelling inside a message: closed if the message is dropped unrun.
class unique_fd {
public:
    explicit unique_fd(int fd) noexcept : fd_(fd) {}
    unique_fd(unique_fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
    unique_fd& operator=(unique_fd&&) = delete;
    ~unique_fd() {
        if (fd_ >= 0) ::close(fd_);
    }
    int release() noexcept { return std::exchange(fd_, -1); }

private:
    int fd_;
};

}  // namespace ferry::reactor::detail
