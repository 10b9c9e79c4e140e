#pragma once
// A socket address (IPv4 or IPv6) and the few socket helpers the reactor needs. Parsing takes
// numeric literals only: "127.0.0.1:8080", "[::1]:0", "0.0.0.0:443", ":8080" (any IPv4),
// "[::]:8080"; no DNS on a shard (name resolution blocks, it belongs to the control plane).
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "proto/base/result.hh"

namespace ferry::reactor {

class address {
public:
    address() noexcept = default;
    // Parses "HOST:PORT" as above. Errors: errc::invalid_argument.
    static result<address> parse(std::string_view text) noexcept;
    // Copies a kernel-filled address; `len` must be <= sizeof(sockaddr_storage).
    static address from(const sockaddr* sa, socklen_t len) noexcept;
    static address ipv4_loopback(std::uint16_t port) noexcept;

    const sockaddr* sa() const noexcept { return reinterpret_cast<const sockaddr*>(&ss_); }
    sockaddr* sa() noexcept { return reinterpret_cast<sockaddr*>(&ss_); }
    socklen_t len() const noexcept { return len_; }
    int family() const noexcept { return ss_.ss_family; }
    bool empty() const noexcept { return len_ == 0; }
    std::uint16_t port() const noexcept;
    void set_port(std::uint16_t port) noexcept;
    // "127.0.0.1:8080" or "[::1]:8080".
    std::string to_string() const;

private:
    sockaddr_storage ss_{};
    socklen_t len_ = 0;
};

struct listen_options {
    int backlog = 4096;
    bool nodelay = true;      // TCP_NODELAY on accepted sockets (we cork per loop iteration)
    bool v6_only = true;      // IPV6_V6ONLY for "[::]" listeners
};

// Creates a TCP socket bound to `addr` with SO_REUSEADDR and SO_REUSEPORT, listening.
// Returns the fd (close-on-exec, blocking: io_uring needs no O_NONBLOCK on sockets).
result<int> make_listen_socket(const address& addr, const listen_options& opt) noexcept;
// The address a socket is bound to (learns the port after binding port 0).
result<address> local_address(int fd) noexcept;
result<address> peer_address(int fd) noexcept;

}  // namespace ferry::reactor
