#include "reactor/address.hh"

#include <arpa/inet.h>
#include <netinet/tcp.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>

namespace ferry::reactor {

result<address> address::parse(std::string_view text) noexcept {
    std::string_view host, port_s;
    if (!text.empty() && text.front() == '[') {
        auto close = text.find(']');
        if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':')
            return fail(errc::invalid_argument, "address: expected [v6]:port");
        host = text.substr(1, close - 1);
        port_s = text.substr(close + 2);
    } else {
        auto colon = text.rfind(':');
        if (colon == std::string_view::npos) return fail(errc::invalid_argument, "address: expected host:port");
        host = text.substr(0, colon);
        port_s = text.substr(colon + 1);
        if (host.find(':') != std::string_view::npos)
            return fail(errc::invalid_argument, "address: IPv6 literals need brackets");
    }
    unsigned port = 0;
    auto [end, ec] = std::from_chars(port_s.data(), port_s.data() + port_s.size(), port);
    if (port_s.empty() || ec != std::errc() || end != port_s.data() + port_s.size() || port > 65535)
        return fail(errc::invalid_argument, "address: bad port");

    char buf[64];
    if (host.size() >= sizeof(buf)) return fail(errc::invalid_argument, "address: host too long");
    std::memcpy(buf, host.data(), host.size());
    buf[host.size()] = '\0';

    address a;
    bool bracketed = !text.empty() && text.front() == '[';
    if (!bracketed) {
        auto* in = reinterpret_cast<sockaddr_in*>(&a.ss_);
        in->sin_family = AF_INET;
        in->sin_port = htons(static_cast<std::uint16_t>(port));
        if (host.empty() || host == "*") {
            in->sin_addr.s_addr = htonl(INADDR_ANY);
        } else if (inet_pton(AF_INET, buf, &in->sin_addr) != 1) {
            return fail(errc::invalid_argument, "address: bad IPv4 literal (no DNS here)");
        }
        a.len_ = sizeof(sockaddr_in);
    } else {
        auto* in6 = reinterpret_cast<sockaddr_in6*>(&a.ss_);
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(static_cast<std::uint16_t>(port));
        if (inet_pton(AF_INET6, buf, &in6->sin6_addr) != 1)
            return fail(errc::invalid_argument, "address: bad IPv6 literal");
        a.len_ = sizeof(sockaddr_in6);
    }
    return a;
}

address address::from(const sockaddr* sa, socklen_t len) noexcept {
    address a;
    if (len > sizeof(a.ss_)) len = sizeof(a.ss_);
    std::memcpy(&a.ss_, sa, len);
    a.len_ = len;
    return a;
}

address address::ipv4_loopback(std::uint16_t port) noexcept {
    address a;
    auto* in = reinterpret_cast<sockaddr_in*>(&a.ss_);
    in->sin_family = AF_INET;
    in->sin_port = htons(port);
    in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.len_ = sizeof(sockaddr_in);
    return a;
}

std::uint16_t address::port() const noexcept {
    if (family() == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in*>(&ss_)->sin_port);
    if (family() == AF_INET6) return ntohs(reinterpret_cast<const sockaddr_in6*>(&ss_)->sin6_port);
    return 0;
}

void address::set_port(std::uint16_t port) noexcept {
    if (family() == AF_INET) reinterpret_cast<sockaddr_in*>(&ss_)->sin_port = htons(port);
    if (family() == AF_INET6) reinterpret_cast<sockaddr_in6*>(&ss_)->sin6_port = htons(port);
}

std::string address::to_string() const {
    char buf[INET6_ADDRSTRLEN] = {};
    if (family() == AF_INET) {
        inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&ss_)->sin_addr, buf, sizeof(buf));
        return std::string(buf) + ":" + std::to_string(port());
    }
    if (family() == AF_INET6) {
        inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(&ss_)->sin6_addr, buf, sizeof(buf));
        return "[" + std::string(buf) + "]:" + std::to_string(port());
    }
    return "(none)";
}

result<int> make_listen_socket(const address& addr, const listen_options& opt) noexcept {
    int fd = ::socket(addr.family(), SOCK_STREAM | SOCK_CLOEXEC, IPPROTO_TCP);
    if (fd < 0) return fail(error::from_errno(errno, "socket"));
    int one = 1;
    auto bail = [fd](const char* what) {
        int e = errno;
        ::close(fd);
        return fail(error::from_errno(e, what));
    };
    if (::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0) return bail("SO_REUSEADDR");
    if (::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0) return bail("SO_REUSEPORT");
    if (addr.family() == AF_INET6) {
        int v6only = opt.v6_only ? 1 : 0;
        if (::setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof(v6only)) != 0) return bail("IPV6_V6ONLY");
    }
    if (::bind(fd, addr.sa(), addr.len()) != 0) return bail("bind");
    if (::listen(fd, opt.backlog) != 0) return bail("listen");
    return fd;
}

result<address> local_address(int fd) noexcept {
    sockaddr_storage ss{};
    socklen_t len = sizeof(ss);
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0)
        return fail(error::from_errno(errno, "getsockname"));
    return address::from(reinterpret_cast<sockaddr*>(&ss), len);
}

result<address> peer_address(int fd) noexcept {
    sockaddr_storage ss{};
    socklen_t len = sizeof(ss);
    if (::getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0)
        return fail(error::from_errno(errno, "getpeername"));
    return address::from(reinterpret_cast<sockaddr*>(&ss), len);
}

}  // namespace ferry::reactor
