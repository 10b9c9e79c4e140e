// A minimal SSH server on stdin/stdout for the OpenSSH interoperability test: `ssh` runs it as
// its ProxyCommand, so no socket is involved. Transport only (the auth and connection layers
// come later): it accepts the ssh-userauth service and answers every USERAUTH_REQUEST with a
// failure naming "publickey", so `ssh` ends with "Permission denied (publickey)" after
// exercising the key exchange and both directions of the negotiated cipher.
//   ssh_stdio_server [ciphers [macs]]
#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <string>
#include <vector>

#include "proto/ssh/transport.hh"

using namespace ferry;
using namespace ferry::ssh;

namespace {

bool write_all(int fd, buffer_chain& out) {
    while (!out.empty()) {
        iovec iov[16];
        std::size_t n = out.to_iovec(iov, 16);
        ssize_t w = ::writev(fd, iov, int(n));
        if (w < 0) {
            if (errno == EINTR) continue;
            return false;
        }
        out.consume(std::size_t(w));
    }
    return true;
}

}  // namespace

int main(int argc, char** argv) {
    auto rng = system_rng::create();
    if (!rng) return 2;
    std::array<std::byte, 32> seed{};
    for (int i = 0; i < 32; ++i) seed[i] = std::byte(0x40 + i);
    auto host = ed25519_private::from_seed(seed);
    transport_config cfg;
    cfg.self = role::server;
    cfg.random = rng->get();
    cfg.host_key = &*host;
    if (argc > 1) cfg.ciphers = argv[1];
    if (argc > 2) cfg.macs = argv[2];
    transport t(cfg);
    buffer_chain out;
    if (!t.start(out, 0) || !write_all(1, out)) return 2;
    std::vector<std::byte> buf(64 * 1024);
    for (;;) {
        ssize_t n = ::read(0, buf.data(), buf.size());
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return 0;
        mut_bytes in(buf.data(), std::size_t(n));
        for (;;) {
            auto ev = t.feed(in, out, 0);
            if (!ev) {
                std::fprintf(stderr, "stdio_server: %s: %s\n", to_string(ev.code()), ev.err().detail);
                write_all(1, out);
                return 1;
            }
            if (ev->type == event_type::need_more) break;
            std::fprintf(stderr, "stdio_server: event %s\n", to_string(ev->type));
            if (ev->type == event_type::disconnected) {
                return 0;
            }
            if (ev->type != event_type::message) continue;
            auto m = std::to_integer<std::uint8_t>(ev->payload[0]);
            std::vector<std::byte> reply;
            if (m == msg::service_request) {
                writer(reply).u8(msg::service_accept).string("ssh-userauth");
                if (!t.send(reply, out)) return 1;
            } else if (m == 50) {  // USERAUTH_REQUEST
                writer(reply).u8(51).string("publickey").boolean(false);
                if (!t.send(reply, out)) return 1;
            }
        }
        if (!write_all(1, out)) return 1;
    }
}
