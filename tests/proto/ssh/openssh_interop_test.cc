// Interoperability with OpenSSH (an independent implementation), without sockets:
//   * our client transport against `sshd -i` (inetd mode: SSH on the child's stdin/stdout);
//   * OpenSSH's `ssh` against our server transport, run as its ProxyCommand
//     (tests/proto/ssh/stdio_server.cc).
// For every cipher and MAC we offer. A successful exchange proves the exchange hash, key
// derivation, ciphers and sequence numbering (strict KEX) agree with OpenSSH's. Rekeying is not
// exercised here: OpenSSH (ssh and sshd) refuses a KEXINIT during user authentication, so it
// needs the auth layer first.
// Skipped when OpenSSH is not installed. sshd runs as `nobody` when we are root (no privilege
// separation directory is needed then).
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "proto/ssh/hostkey.hh"
#include "proto/ssh/transport.hh"

using namespace ferry;
using namespace ferry::ssh;

namespace {

std::string g_stdio_server;  // path of ssh_stdio_server (argv[1])

std::string read_file(const std::string& p) {
    std::ifstream f(p);
    std::stringstream s;
    s << f.rdbuf();
    return s.str();
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

struct child {
    pid_t pid = -1;
    int to = -1;    // its stdin
    int from = -1;  // its stdout
};

child spawn(const std::vector<std::string>& argv, bool as_nobody, const std::string& err_path) {
    int in[2], out[2];
    if (pipe(in) != 0 || pipe(out) != 0) return {};
    child c;
    c.pid = fork();
    if (c.pid == 0) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        int e = open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (e >= 0) dup2(e, 2);
        for (int fd = 3; fd < 256; ++fd) close(fd);
        if (as_nobody && geteuid() == 0) {
            passwd* pw = getpwnam("nobody");
            if (!pw || setgroups(0, nullptr) != 0 || setgid(pw->pw_gid) != 0 ||
                setuid(pw->pw_uid) != 0) {
                _exit(126);
            }
        }
        std::vector<char*> a;
        for (auto& s : argv) a.push_back(const_cast<char*>(s.c_str()));
        a.push_back(nullptr);
        execv(a[0], a.data());
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    c.to = in[1];
    c.from = out[0];
    fcntl(c.to, F_SETFL, O_NONBLOCK);
    return c;
}

int reap(child& c) {
    if (c.to >= 0) close(c.to);
    if (c.from >= 0) close(c.from);
    int st = 0;
    for (int i = 0; i < 100; ++i) {
        if (waitpid(c.pid, &st, WNOHANG) == c.pid) return st;
        usleep(20000);
    }
    kill(c.pid, SIGKILL);
    waitpid(c.pid, &st, 0);
    return st;
}

class temp_dir {
public:
    temp_dir() {
        char t[] = "/tmp/ferry-ssh-interop-XXXXXX";
        path_ = mkdtemp(t);
        chmod(path_.c_str(), 0755);
    }
    ~temp_dir() {
        if (!std::getenv("FERRY_KEEP_TMP")) std::system(("rm -rf '" + path_ + "'").c_str());
    }
    const std::string& path() const { return path_; }

private:
    std::string path_;
};

bool have(const char* p) { return access(p, X_OK) == 0; }

struct combo {
    const char* cipher;
    const char* mac;
};
const combo kCombos[] = {
    {"aes256-gcm@openssh.com", ""},
    {"aes128-gcm@openssh.com", ""},
    {"chacha20-poly1305@openssh.com", ""},
    {"aes256-ctr", "hmac-sha2-256"},
    {"aes256-ctr", "hmac-sha2-512"},
    {"aes256-ctr", "hmac-sha2-256-etm@openssh.com"},
    {"aes128-ctr", "hmac-sha2-512-etm@openssh.com"},
    {"aes128-ctr", "hmac-sha2-256"},
};

// Drives our client over the child's pipes until `done` says so or 10 s pass.
template <class F>
bool drive(transport& t, child& c, buffer_chain& out, F&& on_event, std::string& why) {
    std::vector<std::byte> buf(64 * 1024);
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (std::chrono::steady_clock::now() < deadline) {
        while (!out.empty()) {
            iovec iov[16];
            std::size_t n = out.to_iovec(iov, 16);
            ssize_t w = writev(c.to, iov, int(n));
            if (w < 0) break;  // EAGAIN: poll below
            out.consume(std::size_t(w));
        }
        pollfd p[2] = {{c.from, POLLIN, 0}, {c.to, short(out.empty() ? 0 : POLLOUT), 0}};
        if (poll(p, 2, 200) < 0) continue;
        if (!(p[0].revents & (POLLIN | POLLHUP))) continue;
        ssize_t n = read(c.from, buf.data(), buf.size());
        if (n <= 0) {
            why = "peer closed";
            return false;
        }
        mut_bytes in(buf.data(), std::size_t(n));
        for (;;) {
            auto ev = t.feed(in, out, 0);
            if (!ev) {
                why = std::string(to_string(ev.code())) + ": " + ev.err().detail;
                return false;
            }
            if (ev->type == event_type::need_more) break;
            int r = on_event(*ev);
            if (r < 0) {
                why = std::string("unexpected event ") + to_string(ev->type) + " seq " + std::to_string(ev->seq);
                return false;
            }
            if (r > 0) return true;
        }
    }
    why = "timeout";
    return false;
}

TEST(SshOpenSsh, OurClientAgainstSshd) {
    if (!have("/usr/sbin/sshd")) GTEST_SKIP() << "OpenSSH server not installed";
    temp_dir dir;
    std::string hk = dir.path() + "/hostkey";
    ASSERT_EQ(std::system(("ssh-keygen -q -t ed25519 -N '' -f " + hk).c_str()), 0);
    std::ofstream(dir.path() + "/sshd_config") << "HostKey " << hk << "\nPidFile none\n"
                                               << "UsePAM no\nStrictModes no\nLogLevel DEBUG3\n";
    if (geteuid() == 0) {
        passwd* pw = getpwnam("nobody");
        ASSERT_NE(pw, nullptr);
        ASSERT_EQ(chown(hk.c_str(), pw->pw_uid, pw->pw_gid), 0);
        ASSERT_EQ(chown(dir.path().c_str(), pw->pw_uid, pw->pw_gid), 0);  // sshd writes its log
    }
    // The pin: the blob from hostkey.pub ("ssh-ed25519 <base64> comment").
    std::string pub = read_file(hk + ".pub");
    auto sp1 = pub.find(' '), sp2 = pub.find(' ', sp1 + 1);
    auto blob = unbase64(pub.substr(sp1 + 1, sp2 - sp1 - 1));

    for (const auto& k : kCombos) {
        SCOPED_TRACE(std::string(k.cipher) + " " + k.mac);
        std::string log = dir.path() + "/sshd.log";
        child c = spawn({"/usr/sbin/sshd", "-i", "-f", dir.path() + "/sshd_config", "-E", log},
                        true, dir.path() + "/sshd.err");
        ASSERT_GT(c.pid, 0);
        auto rng = system_rng::create();
        pinned_host_keys verifier(pinned_host_keys::policy::pinned_only);
        verifier.pin(blob);
        transport_config cfg;
        cfg.self = role::client;
        cfg.random = rng->get();
        cfg.verifier = &verifier;
        cfg.ciphers = k.cipher;
        if (*k.mac) cfg.macs = k.mac;
        transport t(cfg);
        buffer_chain out;
        ASSERT_TRUE(t.start(out, 0));
        std::string why;
        int step = 0;
        int failures = 0;
        std::vector<std::byte> req;
        bool ok = drive(t, c, out, [&](const event& ev) -> int {
            switch (ev.type) {
            case event_type::handshake_done:
                req.clear();
                writer(req).u8(msg::service_request).string("ssh-userauth");
                if (!t.send(req, out)) return -1;
                return 0;
            case event_type::ext_info:
            case event_type::debug:
            case event_type::rekey_done:
                return 0;
            case event_type::message: {
                auto m = std::to_integer<std::uint8_t>(ev.payload[0]);
                if (m == msg::service_accept && step == 0) {
                    step = 1;
                } else if (m != 51) {
                    return -1;
                } else if (++failures == 3) {
                    return 1;
                }
                // Large IGNOREs in between (multi-block packets), then USERAUTH_REQUEST "none",
                // which sshd answers with USERAUTH_FAILURE (51).
                std::vector<std::byte> pad(30000, std::byte{0x5a});
                if (!t.send_ignore(pad, out)) return -1;
                req.clear();
                writer(req).u8(50).string("nobody").string("ssh-connection").string("none");
                return t.send(req, out) ? 0 : -1;
            }
            default:
                return -1;
            }
        }, why);
        EXPECT_TRUE(ok) << why << "\n" << read_file(dir.path() + "/sshd.err");
        EXPECT_TRUE(t.strict_kex());
        EXPECT_EQ(info(t.negotiated().enc[0]).name, k.cipher);
        EXPECT_EQ(failures, 3);
        t.disconnect(disconnect_reason::by_application, "done", out);
        iovec iov[16];
        std::size_t n = out.to_iovec(iov, 16);
        (void)!writev(c.to, iov, int(n));
        reap(c);
        std::string l = read_file(log);
        EXPECT_NE(l.find("Received disconnect"), std::string::npos) << l.substr(0, 4000);
    }
}

TEST(SshOpenSsh, SshClientAgainstOurServer) {
    if (!have("/usr/bin/ssh")) GTEST_SKIP() << "OpenSSH client not installed";
    ASSERT_FALSE(g_stdio_server.empty()) << "pass the path of ssh_stdio_server";
    temp_dir dir;
    std::array<std::byte, 32> seed{};
    for (int i = 0; i < 32; ++i) seed[i] = std::byte(0x40 + i);
    auto host = ed25519_private::from_seed(seed);
    auto blob = ed25519_key_blob(host->public_key());
    static const char* tbl = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string b64;
    for (std::size_t i = 0; i < blob.size(); i += 3) {
        std::uint32_t v = std::to_integer<std::uint32_t>(blob[i]) << 16;
        if (i + 1 < blob.size()) v |= std::to_integer<std::uint32_t>(blob[i + 1]) << 8;
        if (i + 2 < blob.size()) v |= std::to_integer<std::uint32_t>(blob[i + 2]);
        b64 += tbl[(v >> 18) & 63];
        b64 += tbl[(v >> 12) & 63];
        b64 += i + 1 < blob.size() ? tbl[(v >> 6) & 63] : '=';
        b64 += i + 2 < blob.size() ? tbl[v & 63] : '=';
    }
    std::ofstream(dir.path() + "/known_hosts") << "ferry-test ssh-ed25519 " << b64 << "\n";

    for (const auto& k : kCombos) {
        SCOPED_TRACE(std::string(k.cipher) + " " + k.mac);
        std::string proxy = g_stdio_server + " " + k.cipher;
        if (*k.mac) proxy += std::string(" ") + k.mac;
        std::vector<std::string> argv = {
            "/usr/bin/ssh", "-vvv", "-F", "/dev/null", "-o", "ProxyCommand=" + proxy,
            "-o", "HostKeyAlias=ferry-test", "-o", "UserKnownHostsFile=" + dir.path() + "/known_hosts",
            "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes",
            "-o", "PubkeyAuthentication=no", "-o", "PasswordAuthentication=no",
            "-o", "KbdInteractiveAuthentication=no", "-o", "GSSAPIAuthentication=no",
            "-c", k.cipher};
        if (*k.mac) {
            argv.push_back("-m");
            argv.push_back(k.mac);
        }
        argv.push_back("nobody@ferry-test");
        argv.push_back("true");
        std::string err = dir.path() + "/ssh.err";
        child c = spawn(argv, false, err);
        ASSERT_GT(c.pid, 0);
        close(c.to);
        c.to = -1;
        // ssh exits by itself after "Permission denied".
        char b[256];
        while (read(c.from, b, sizeof b) > 0) {
        }
        int st = reap(c);
        std::string l = read_file(err);
        EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 255) << st;
        EXPECT_NE(l.find("Host 'ferry-test' is known and matches the ED25519 host key"),
                  std::string::npos) << l;
        EXPECT_NE(l.find(std::string("kex: server->client cipher: ") + k.cipher),
                  std::string::npos) << l;
        EXPECT_NE(l.find("Permission denied (publickey)"), std::string::npos) << l;
        EXPECT_NE(l.find("kex_choose_conf: will use strict KEX ordering"), std::string::npos);
        EXPECT_NE(l.find("server-sig-algs=<ssh-ed25519,"), std::string::npos);
    }
}

}  // namespace

int main(int argc, char** argv) {
    ::testing::InitGoogleTest(&argc, argv);
    if (argc > 1) g_stdio_server = argv[1];
    signal(SIGPIPE, SIG_IGN);
    return RUN_ALL_TESTS();
}
