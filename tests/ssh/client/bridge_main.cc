// ssh_bridge: the test bridge (bridge.hh) as a command, for bench/e2e/ssh-compare: logs in to
// an SSH server with a password, asks for one remote forward and connects every
// forwarded-tcpip channel to a local port (like `ssh -N -R NAME:PORT:127.0.0.1:LPORT`).
//
//   ssh_bridge --connect 127.0.0.1:PORT --user U --password PW --remote NAME:PORT
//              --to 127.0.0.1:LPORT [--ciphers LIST]
// Prints "forwarding NAME PORT" once the server accepted; runs until the session ends.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <climits>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "bridge.hh"

using namespace ferry;

namespace {

int dial(const std::string& hp) {
    auto colon = hp.rfind(':');
    if (colon == std::string::npos) return -1;
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(std::atoi(hp.c_str() + colon + 1)));
    if (inet_pton(AF_INET, hp.substr(0, colon).c_str(), &a.sin_addr) != 1) return -1;
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
        ::close(fd);
        return -1;
    }
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

}  // namespace

int main(int argc, char** argv) {
    std::string connect_to, user, password, remote, to, ciphers;
    for (int i = 1; i + 1 < argc; i += 2) {
        std::string k = argv[i], v = argv[i + 1];
        if (k == "--connect") connect_to = v;
        else if (k == "--user") user = v;
        else if (k == "--password") password = v;
        else if (k == "--remote") remote = v;
        else if (k == "--to") to = v;
        else if (k == "--ciphers") ciphers = v;
        else {
            std::fprintf(stderr, "ssh_bridge: unknown flag %s\n", k.c_str());
            return 2;
        }
    }
    auto rc = remote.rfind(':'), tc = to.rfind(':');
    if (connect_to.empty() || user.empty() || rc == std::string::npos || tc == std::string::npos) {
        std::fprintf(stderr, "usage: ssh_bridge --connect A --user U --password PW --remote NAME:PORT --to 127.0.0.1:LPORT\n");
        return 2;
    }
    const std::string name = remote.substr(0, rc);
    const auto rport = static_cast<std::uint32_t>(std::atoi(remote.c_str() + rc + 1));
    const auto lport = static_cast<std::uint16_t>(std::atoi(to.c_str() + tc + 1));

    auto rng = ssh::system_rng::create();
    if (!rng) {
        std::fprintf(stderr, "ssh_bridge: no random source\n");
        return 1;
    }
    ssh::pinned_host_keys trust(ssh::pinned_host_keys::policy::trust_on_first_use);
    ssh::session_config cfg;
    cfg.transport.self = ssh::role::client;
    cfg.transport.random = rng->get();
    cfg.transport.verifier = &trust;
    if (!ciphers.empty()) cfg.transport.ciphers = ciphers;
    cfg.auth_client.user = user;
    cfg.auth_client.password = password;

    int fd = dial(connect_to);
    if (fd < 0) {
        std::perror("ssh_bridge: connect");
        return 1;
    }
    test::bridge b(fd, std::move(cfg));
    if (!b.start() || !b.run([&] { return b.authenticated(); }, 10000)) {
        std::fprintf(stderr, "ssh_bridge: login failed: %s\n", b.failure().c_str());
        return 1;
    }
    b.forward_to(lport);
    if (!b.session().conn().request_tcpip_forward(name, rport, b.out())) {
        std::fprintf(stderr, "ssh_bridge: cannot send tcpip-forward\n");
        return 1;
    }
    if (!b.run([&] { return !b.global_replies().empty(); }, 10000) || !b.global_replies()[0].ok) {
        std::fprintf(stderr, "ssh_bridge: forward refused: %s\n", b.failure().c_str());
        return 1;
    }
    std::printf("forwarding %s %u\n", name.c_str(), rport);
    std::fflush(stdout);
    b.run([&] { return b.peer_disconnected(); }, INT_MAX);
    if (!b.failure().empty()) std::fprintf(stderr, "ssh_bridge: %s\n", b.failure().c_str());
    return 0;
}
