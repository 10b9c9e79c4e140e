#pragma once
// Small helpers shared by the agent's files (not an interface).
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "reactor/timer.hh"

namespace ferry::agent::detail {

inline std::uint64_t to_ms(reactor::timer::clock::time_point t) {
    return std::uint64_t(std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count());
}
inline reactor::timer::clock::time_point from_ms(std::uint64_t m) {
    return reactor::timer::clock::time_point(std::chrono::milliseconds(m));
}

inline void set_nodelay(int fd) {
    int one = 1;
    if (fd >= 0) (void)::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

// Peer-chosen text for logs: printable ASCII, bounded.
inline std::string printable(std::string_view s, std::size_t max = 200) {
    std::string o;
    for (char c : s.substr(0, max)) o += (c >= ' ' && c <= '~') ? c : '?';
    return o;
}

inline std::string host_header(const std::string& host, std::uint16_t port, bool tls) {
    std::string h = host.find(':') != std::string::npos ? "[" + host + "]" : host;  // IPv6 literal
    if ((tls && port != 443) || (!tls && port != 80)) h += ":" + std::to_string(port);
    return h;
}

}  // namespace ferry::agent::detail
