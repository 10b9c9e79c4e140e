// A minimal SSH server on stdin/stdout for the OpenSSH interoperability test: `ssh` runs it as
// its ProxyCommand, so no socket is involved. Transport and user authentication (the connection
// layer comes later): after USERAUTH_SUCCESS it starts a rekey of its own and refuses every
// CHANNEL_OPEN, so `ssh ... true` ends right after "Authenticated to ...".
//   ssh_stdio_server [--ciphers LIST] [--macs LIST] [--authorized FILE] [--password PW]
// FILE holds authorized_keys-style lines ("type base64 [comment]") for any user name.
#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "proto/ssh/auth.hh"
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

std::vector<std::byte> unbase64(std::string_view s) {
    std::vector<std::byte> out;
    std::uint32_t acc = 0;
    int bits = 0;
    for (char c : s) {
        int v;
        if (c >= 'A' && c <= 'Z') v = c - 'A';
        else if (c >= 'a' && c <= 'z') v = c - 'a' + 26;
        else if (c >= '0' && c <= '9') v = c - '0' + 52;
        else if (c == '+') v = 62;
        else if (c == '/') v = 63;
        else continue;
        acc = (acc << 6) | std::uint32_t(v);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out.push_back(std::byte((acc >> bits) & 0xff));
        }
    }
    return out;
}

struct file_policy : auth_policy {
    std::vector<std::vector<std::byte>> keys;
    std::string password;
    bool check_password(std::string_view, std::string_view pw) override {
        return !password.empty() && pw == password;
    }
    bool check_publickey(std::string_view, user_key_alg, bytes blob) override {
        for (auto& k : keys) {
            if (std::equal(k.begin(), k.end(), blob.begin(), blob.end())) return true;
        }
        return false;
    }
};

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
    file_policy policy;
    for (int i = 1; i + 1 < argc; i += 2) {
        std::string a = argv[i], v = argv[i + 1];
        if (a == "--ciphers") cfg.ciphers = v;
        if (a == "--macs") cfg.macs = v;
        if (a == "--password") policy.password = v;
        if (a == "--authorized") {
            std::ifstream f(v);
            std::string type, b64;
            while (f >> type >> b64) {
                policy.keys.push_back(unbase64(b64));
                std::string rest;
                std::getline(f, rest);
            }
        }
    }
    transport t(cfg);
    auth_server_config ac;
    ac.policy = &policy;
    auth_server auth(t, ac);
    buffer_chain out;
    if (!t.start(out, 0) || !write_all(1, out)) return 2;
    std::vector<std::byte> buf(64 * 1024);
    auto now = [] {
        return millis(std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::steady_clock::now().time_since_epoch())
                          .count());
    };
    for (;;) {
        // Held-back auth failures (failure_delay) go out when their time comes.
        if (millis d = auth.next_deadline()) {
            pollfd p{0, POLLIN, 0};
            int wait = d > now() ? int(d - now()) : 0;
            if (::poll(&p, 1, wait) == 0) {
                auto a = auth.tick(out, now());
                if (!a) return 1;
                if (a->type == auth_event_type::authenticated && !t.rekey(out, 0)) return 1;
                if (!write_all(1, out)) return 1;
                continue;
            }
        }
        ssize_t n = ::read(0, buf.data(), buf.size());
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return 0;
        mut_bytes in(buf.data(), std::size_t(n));
        for (;;) {
            auto ev = t.feed(in, out, now());
            if (!ev) {
                std::fprintf(stderr, "stdio_server: %s: %s\n", to_string(ev.code()), ev.err().detail);
                write_all(1, out);
                return 1;
            }
            if (ev->type == event_type::need_more) break;
            std::fprintf(stderr, "stdio_server: event %s\n", to_string(ev->type));
            if (ev->type == event_type::disconnected) return 0;
            if (ev->type != event_type::message) continue;
            if (!auth.authenticated()) {
                auto a = auth.handle(ev->payload, out, now());
                if (!a) {
                    std::fprintf(stderr, "stdio_server: auth: %s\n", a.err().detail);
                    write_all(1, out);
                    return 1;
                }
                if (a->type == auth_event_type::authenticated) {
                    std::fprintf(stderr, "stdio_server: authenticated %.*s by %.*s\n",
                                 int(a->user.size()), a->user.data(), int(a->method.size()),
                                 a->method.data());
                    if (!t.rekey(out, 0)) return 1;  // OpenSSH accepts rekeys from now on
                }
                continue;
            }
            auto m = std::to_integer<std::uint8_t>(ev->payload[0]);
            std::vector<std::byte> reply;
            if (m == 90) {  // CHANNEL_OPEN: refuse (connection layer not there yet)
                reader r(ev->payload.subspan(1));
                (void)r.string();
                auto sender = r.u32();
                writer(reply).u8(92).u32(sender ? *sender : 0).u32(1).string("not yet").string("");
                if (!t.send(reply, out)) return 1;
            } else if (m == 80) {  // GLOBAL_REQUEST: refuse when a reply is wanted
                reader r(ev->payload.subspan(1));
                (void)r.string();
                auto want = r.boolean();
                if (want && *want) {
                    reply.push_back(std::byte{82});
                    if (!t.send(reply, out)) return 1;
                }
            }
        }
        if (!write_all(1, out)) return 1;
    }
}
