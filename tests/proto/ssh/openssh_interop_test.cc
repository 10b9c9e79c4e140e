// Interoperability with OpenSSH (an independent implementation), without sockets:
//   * our client transport against `sshd -i` (inetd mode: SSH on the child's stdin/stdout);
//   * OpenSSH's `ssh` against our server transport, run as its ProxyCommand
//     (tests/proto/ssh/stdio_server.cc).
// For every cipher and MAC we offer, with user authentication (RFC 4252: none, publickey with
// ed25519/ecdsa/rsa keys, password) and rekeys after it (OpenSSH refuses a KEXINIT during user
// authentication). Success proves the exchange hash, key derivation, ciphers, sequence numbering
// (strict KEX), signatures and rekeying agree with OpenSSH's.
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

#include "proto/ssh/auth.hh"
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

std::string base64(bytes blob) {
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
    return b64;
}

struct child {
    pid_t pid = -1;
    int to = -1;    // its stdin
    int from = -1;  // its stdout
};

child spawn(const std::vector<std::string>& argv, bool as_nobody, const std::string& err_path,
            const std::vector<std::pair<std::string, std::string>>& env = {}) {
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
        for (auto& [k, v] : env) setenv(k.c_str(), v.c_str(), 1);
        setsid();  // no controlling terminal: ssh must use SSH_ASKPASS
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
            if (r == -2) return false;  // `why` set by the handler
            if (r < 0) {
                why = std::string("unexpected event ") + to_string(ev->type) + " seq " +
                      std::to_string(ev->seq);
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
    // Our user key, authorised for the account sshd runs as (non-root sshd can only log in its
    // own user).
    std::array<std::byte, 32> seed{};
    seed[3] = std::byte{33};
    auto user_key = ed25519_private::from_seed(seed);
    std::ofstream(dir.path() + "/authorized_keys")
        << "ssh-ed25519 " << base64(ed25519_key_blob(user_key->public_key())) << " ferry\n";
    std::string login = "root";
    if (geteuid() == 0) {
        login = "nobody";
    } else if (passwd* me = getpwuid(geteuid())) {
        login = me->pw_name;
    }
    std::ofstream(dir.path() + "/sshd_config")
        // UsePAM: without it sshd refuses accounts whose shadow password is "*" (like nobody).
        << "HostKey " << hk << "\nPidFile none\nUsePAM yes\nStrictModes no\nLogLevel DEBUG3\n"
        << "AuthorizedKeysFile " << dir.path() << "/authorized_keys\n"
        << "PasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        << "RekeyLimit 64K\n";
    if (geteuid() == 0) {
        passwd* pw = getpwnam("nobody");
        ASSERT_NE(pw, nullptr);
        for (std::string f : {hk, dir.path() + "/authorized_keys", dir.path()}) {
            ASSERT_EQ(chown(f.c_str(), pw->pw_uid, pw->pw_gid), 0);  // sshd also writes its log
        }
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
        auth_client_config acc;
        acc.user = login;
        acc.key = &*user_key;
        auth_client auth(t, acc);
        buffer_chain out;
        ASSERT_TRUE(t.start(out, 0));
        std::string why, method;
        int rekeys = 0;
        std::vector<std::byte> pad(30000, std::byte{0x5a});
        bool ok = drive(t, c, out, [&](const event& ev) -> int {
            switch (ev.type) {
            case event_type::handshake_done:
                return auth.start(out) ? 0 : -1;
            case event_type::ext_info:
            case event_type::debug:
                return 0;
            case event_type::rekey_done:
                if (++rekeys == 2) return 1;  // ours, then sshd's (RekeyLimit 64K)
                // Push > 64 KiB of IGNOREs so that sshd starts one of its own.
                for (int i = 0; i < 4; ++i) {
                    if (!t.in_kex() && !t.send_ignore(pad, out)) return -1;
                }
                return 0;
            case event_type::message: {
                if (auth.authenticated()) return 0;  // e.g. hostkeys-00@openssh.com
                auto a = auth.handle(ev.payload, out);
                if (!a) {
                    why = std::string("auth: ") + a.err().detail;
                    return -2;
                }
                if (a->type == auth_event_type::failed) return -1;
                if (a->type == auth_event_type::authenticated) {
                    method = a->method;
                    if (!t.rekey(out, 0)) return -1;  // client-initiated, after auth
                }
                return 0;
            }
            default:
                return -1;
            }
        }, why);
        EXPECT_TRUE(ok) << why << "\n" << read_file(dir.path() + "/sshd.err");
        EXPECT_TRUE(t.strict_kex());
        EXPECT_EQ(info(t.negotiated().enc[0]).name, k.cipher);
        EXPECT_EQ(method, "publickey");
        EXPECT_EQ(auth.server_methods(), "publickey");  // from the failed "none" probe
        EXPECT_EQ(t.kex_count(), 3u);
        t.disconnect(disconnect_reason::by_application, "done", out);
        iovec iov[16];
        std::size_t n = out.to_iovec(iov, 16);
        (void)!writev(c.to, iov, int(n));
        reap(c);
        std::string l = read_file(log);
        EXPECT_NE(l.find("Accepted publickey for " + login), std::string::npos) << l.substr(0, 4000);
        EXPECT_NE(l.find("Received disconnect"), std::string::npos);
    }
}

struct ssh_run {
    int status = -1;
    std::string log;
};

ssh_run run_ssh(const temp_dir& dir, const std::string& proxy, std::vector<std::string> opts,
                const std::vector<std::pair<std::string, std::string>>& env = {}) {
    std::vector<std::string> argv = {
        "/usr/bin/ssh", "-vvv", "-F", "/dev/null", "-o", "ProxyCommand=" + proxy,
        "-o", "HostKeyAlias=ferry-test", "-o", "UserKnownHostsFile=" + dir.path() + "/known_hosts",
        "-o", "StrictHostKeyChecking=yes", "-o", "GSSAPIAuthentication=no",
        "-o", "KbdInteractiveAuthentication=no"};
    argv.insert(argv.end(), opts.begin(), opts.end());
    argv.push_back("agent@ferry-test");
    argv.push_back("true");
    std::string err = dir.path() + "/ssh.err";
    child c = spawn(argv, false, err, env);
    close(c.to);
    c.to = -1;
    // ssh exits by itself; a hang (a bug on our side) is cut off after 20 s.
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    char b[256];
    for (;;) {
        pollfd p{c.from, POLLIN, 0};
        if (poll(&p, 1, 200) > 0 && read(c.from, b, sizeof b) <= 0) break;
        if (std::chrono::steady_clock::now() > deadline) {
            kill(c.pid, SIGKILL);
            break;
        }
    }
    ssh_run r;
    r.status = reap(c);
    r.log = read_file(err);
    return r;
}

std::size_t count(const std::string& hay, const std::string& needle) {
    std::size_t n = 0;
    for (std::size_t p = 0; (p = hay.find(needle, p)) != std::string::npos; ++p) ++n;
    return n;
}

class OpensshAgainstOurServer : public ::testing::Test {
protected:
    void SetUp() override {
        if (!have("/usr/bin/ssh")) GTEST_SKIP() << "OpenSSH client not installed";
        ASSERT_FALSE(g_stdio_server.empty()) << "pass the path of ssh_stdio_server";
        std::array<std::byte, 32> seed{};
        for (int i = 0; i < 32; ++i) seed[i] = std::byte(0x40 + i);
        auto host = ed25519_private::from_seed(seed);
        std::ofstream(dir.path() + "/known_hosts")
            << "ferry-test ssh-ed25519 " << base64(ed25519_key_blob(host->public_key())) << "\n";
        for (const char* type : {"ed25519", "ecdsa", "rsa"}) {
            std::string f = dir.path() + "/id_" + type;
            std::string cmd = std::string("ssh-keygen -q -N '' -t ") + type +
                              (std::string(type) == "ecdsa" ? " -b 256" : "") +
                              (std::string(type) == "rsa" ? " -b 3072" : "") + " -f " + f;
            ASSERT_EQ(std::system(cmd.c_str()), 0);
            std::ofstream(dir.path() + "/authorized", std::ios::app) << read_file(f + ".pub");
        }
    }
    std::string proxy(const char* cipher, const char* mac) {
        std::string p = g_stdio_server + " --authorized " + dir.path() + "/authorized" +
                        " --password pw-for-ferry --ciphers " + cipher;
        if (*mac) p += std::string(" --macs ") + mac;
        return p;
    }
    temp_dir dir;
};

TEST_F(OpensshAgainstOurServer, SshClientWithEveryCipherAndEd25519Key) {
    for (const auto& k : kCombos) {
        SCOPED_TRACE(std::string(k.cipher) + " " + k.mac);
        std::vector<std::string> o = {"-o", "BatchMode=yes", "-o", "PasswordAuthentication=no",
                                      "-o", "IdentitiesOnly=yes", "-i", dir.path() + "/id_ed25519",
                                      "-c", k.cipher};
        if (*k.mac) {
            o.push_back("-m");
            o.push_back(k.mac);
        }
        auto r = run_ssh(dir, proxy(k.cipher, k.mac), o);
        const std::string& l = r.log;
        EXPECT_NE(l.find("Host 'ferry-test' is known and matches the ED25519 host key"),
                  std::string::npos) << l;
        EXPECT_NE(l.find(std::string("kex: server->client cipher: ") + k.cipher), std::string::npos);
        EXPECT_NE(l.find("kex_choose_conf: will use strict KEX ordering"), std::string::npos);
        EXPECT_NE(l.find("server-sig-algs=<ssh-ed25519,"), std::string::npos);
        EXPECT_NE(l.find("Authenticated to ferry-test"), std::string::npos) << l;
        EXPECT_NE(l.find("using \"publickey\""), std::string::npos);
        // Our server rekeys right after authentication: two NEWKEYS each way.
        EXPECT_EQ(count(l, "SSH2_MSG_NEWKEYS received"), 2u) << l;
        // The session channel is refused (no connection layer yet): ssh gives up cleanly.
        EXPECT_NE(l.find("open failed: administratively prohibited: not yet"), std::string::npos);
    }
}

TEST_F(OpensshAgainstOurServer, SshClientWithEcdsaAndRsaKeys) {
    for (std::string type : {"ecdsa", "rsa"}) {
        SCOPED_TRACE(type);
        auto r = run_ssh(dir, proxy("aes256-gcm@openssh.com", ""),
                         {"-o", "BatchMode=yes", "-o", "PasswordAuthentication=no", "-o",
                          "IdentitiesOnly=yes", "-i", dir.path() + "/id_" + type});
        EXPECT_NE(r.log.find("Authenticated to ferry-test"), std::string::npos) << r.log;
        if (type == "rsa") {
            // Chosen thanks to our server-sig-algs (RFC 8308/8332).
            EXPECT_NE(r.log.find("rsa-sha2-512"), std::string::npos);
        }
    }
}

TEST_F(OpensshAgainstOurServer, SshClientWithPassword) {
    std::string askpass = dir.path() + "/askpass";
    std::ofstream(askpass) << "#!/bin/sh\necho pw-for-ferry\n";
    chmod(askpass.c_str(), 0755);
    auto r = run_ssh(dir, proxy("chacha20-poly1305@openssh.com", ""),
                     {"-o", "PubkeyAuthentication=no", "-o", "PreferredAuthentications=password",
                      "-o", "NumberOfPasswordPrompts=1"},
                     {{"SSH_ASKPASS", askpass}, {"SSH_ASKPASS_REQUIRE", "force"},
                      {"DISPLAY", ":0"}});
    EXPECT_NE(r.log.find("Authenticated to ferry-test"), std::string::npos) << r.log;
    EXPECT_NE(r.log.find("using \"password\""), std::string::npos);

    // A wrong password is refused.
    std::ofstream(askpass) << "#!/bin/sh\necho wrong\n";
    auto bad = run_ssh(dir, proxy("chacha20-poly1305@openssh.com", ""),
                       {"-o", "PubkeyAuthentication=no", "-o", "PreferredAuthentications=password",
                        "-o", "NumberOfPasswordPrompts=1"},
                       {{"SSH_ASKPASS", askpass}, {"SSH_ASKPASS_REQUIRE", "force"},
                        {"DISPLAY", ":0"}});
    EXPECT_EQ(bad.log.find("Authenticated to ferry-test"), std::string::npos);
    EXPECT_NE(bad.log.find("Permission denied"), std::string::npos) << bad.log;
}

}  // namespace

int main(int argc, char** argv) {
    ::testing::InitGoogleTest(&argc, argv);
    if (argc > 1) g_stdio_server = argv[1];
    signal(SIGPIPE, SIG_IGN);
    return RUN_ALL_TESTS();
}
