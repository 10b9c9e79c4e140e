#include "agent/resolver.hh"

#include <netdb.h>
#include <sys/socket.h>

namespace ferry::agent {

result<reactor::address> resolve(const std::string& host, std::uint16_t port) {
    std::string lit = host.find(':') != std::string::npos ? "[" + host + "]" : host;
    if (auto a = reactor::address::parse(lit + ":" + std::to_string(port))) return a;
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* res = nullptr;
    int rc = ::getaddrinfo(host.c_str(), nullptr, &hints, &res);
    if (rc != 0 || !res) {
        // error::detail must be a static string: gai_strerror's are (glibc returns string
        // literals, EAI_SYSTEM included).
        if (res) ::freeaddrinfo(res);
        return fail(errc::io, ::gai_strerror(rc));
    }
    // Prefer IPv4 (loopback services often listen on 127.0.0.1 only), else the first.
    addrinfo* pick = res;
    for (addrinfo* r = res; r; r = r->ai_next) {
        if (r->ai_family == AF_INET) {
            pick = r;
            break;
        }
    }
    reactor::address a = reactor::address::from(pick->ai_addr, pick->ai_addrlen);
    ::freeaddrinfo(res);
    a.set_port(port);
    return a;
}

}  // namespace ferry::agent
