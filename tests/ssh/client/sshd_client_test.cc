// Our client (ferry::ssh::session, client role, tests/ssh/client/bridge.hh) against OpenSSH's
// sshd (an independent server) listening on a loopback port, with its own config and host key
// in a temporary folder:
//   * user authentication by ed25519 key (AuthorizedKeysFile in the folder) and by password
//     for a dedicated account, `ferry-sshtest`, whose password is set to a fresh random value
//     on each run (a wrong password is refused);
//   * direct-tcpip: a local application connects to the bridge's listener, sshd connects to
//     the local service; 64 MiB each way;
//   * tcpip-forward: sshd listens (port 0: it picks one and tells us), the application connects
//     there, sshd opens forwarded-tcpip, the bridge connects it to the service; 64 MiB each way;
//   * rekeys in the middle of the transfers (sshd's RekeyLimit in one test, ours in the other);
//   * keepalive@openssh.com answered; cancel-tcpip-forward accepted.
// Each stream is checked by SHA-256 at both ends; throughput is printed.
// Needs root (sshd must switch to the test account; the account and its password are managed
// by the test): skipped otherwise, and when OpenSSH's server is not installed.
#include <pwd.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cctype>
#include <chrono>
#include <cstdio>
#include <future>
#include <optional>
#include <string>

#include "bridge.hh"
#include "proto/ssh/hostkey.hh"
#include "support/interop.hh"
#include "support/stream.hh"

using namespace ferry;
using namespace ferry::ssh;
using namespace ferry::test;

namespace {

constexpr const char* kUser = "ferry-sshtest";
constexpr const char* kSshd = "/usr/sbin/sshd";
constexpr std::uint64_t kSize = 64ull << 20;

// Creates the account if missing (no home, /bin/sh) and gives it `password`.
bool prepare_account(const std::string& password, std::string& why) {
    if (!getpwnam(kUser)) {
        std::string cmd = std::string("useradd -M -s /bin/sh ") + kUser + " 2>&1";
        if (std::system(cmd.c_str()) != 0 && !getpwnam(kUser)) {
            why = "useradd failed";
            return false;
        }
    }
    FILE* f = popen("chpasswd", "w");
    if (!f) {
        why = "chpasswd: cannot start";
        return false;
    }
    std::fprintf(f, "%s:%s\n", kUser, password.c_str());
    if (pclose(f) != 0) {
        why = "chpasswd failed";
        return false;
    }
    return true;
}

std::string random_password(rng& r) {
    std::array<std::byte, 24> raw{};
    (void)r.fill(raw);
    std::string pw;
    for (char c : base64(raw)) {
        if (std::isalnum(static_cast<unsigned char>(c))) pw += c;
    }
    return pw;
}

// One sshd -D on a loopback port with its own config.
class sshd_instance {
public:
    ~sshd_instance() { stop(proc_); }

    bool start(const temp_dir& dir, bool password_auth, const std::string& rekey_limit,
               std::string& why) {
        dir_ = dir.path();
        std::string hk = dir_ + "/ssh_host_ed25519_key";
        std::string cmd = "ssh-keygen -q -t ed25519 -N '' -f " + hk;
        if (std::system(cmd.c_str()) != 0) {
            why = "ssh-keygen failed";
            return false;
        }
        std::string pub = read_text_file(hk + ".pub");
        auto sp1 = pub.find(' '), sp2 = pub.find(' ', sp1 + 1);
        host_key_ = unbase64(pub.substr(sp1 + 1, sp2 - sp1 - 1));
        config_ = dir_ + "/sshd_config";
        std::ofstream(config_)
            << "HostKey " << hk << "\n"
            << "PidFile none\n"
            << "ListenAddress 127.0.0.1\n"
            << "UsePAM no\n"
            << "StrictModes no\n"
            << "AuthorizedKeysFile " << dir_ << "/authorized_keys\n"
            << "PubkeyAuthentication yes\n"
            << "PasswordAuthentication " << (password_auth ? "yes" : "no") << "\n"
            << "KbdInteractiveAuthentication no\n"
            << "PermitRootLogin no\n"
            << "AllowUsers " << kUser << "\n"
            << "AllowTcpForwarding yes\n"
            << "MaxAuthTries 4\n"
            << "LogLevel VERBOSE\n"
            << (rekey_limit.empty() ? "" : "RekeyLimit " + rekey_limit + "\n");
        // sshd checks the privilege separation folder even in -D mode.
        mkdir("/run/sshd", 0755);
        log_ = dir_ + "/sshd.log";
        for (int attempt = 0; attempt < 3; ++attempt) {
            port_ = pick_free_port();
            proc_ = spawn({kSshd, "-D", "-e", "-f", config_, "-p", std::to_string(port_)}, log_,
                          false);
            if (proc_.pid <= 0) {
                why = "cannot start sshd";
                return false;
            }
            // Ready when it logs "Server listening on 127.0.0.1 port N".
            auto deadline = now_ms() + 10000;
            while (now_ms() < deadline) {
                std::string l = read_text_file(log_);
                if (l.find("Server listening on 127.0.0.1 port " + std::to_string(port_)) !=
                    std::string::npos) {
                    return true;
                }
                int st;
                if (waitpid(proc_.pid, &st, WNOHANG) == proc_.pid) {
                    proc_.pid = -1;
                    break;  // e.g. the port was taken meanwhile: try another
                }
                usleep(20000);
            }
            stop(proc_);
        }
        why = "sshd did not start:\n" + read_text_file(log_);
        return false;
    }

    std::uint16_t port() const { return port_; }
    const std::vector<std::byte>& host_key() const { return host_key_; }
    std::string log() const { return read_text_file(log_); }

private:
    std::string dir_, config_, log_;
    child proc_;
    std::uint16_t port_ = 0;
    std::vector<std::byte> host_key_;
};

// The local "echo/sink" service: each connection receives pattern(seed) and everything it
// gets is hashed; one connection per service object.
class service {
public:
    explicit service(std::uint64_t seed, std::uint64_t size = kSize) {
        fd_ = listen_loopback(port_);
        result_ = std::async(std::launch::async, [this, seed, size] {
            pollfd p{fd_, POLLIN, 0};
            if (::poll(&p, 1, 60000) <= 0) return exchange_result{.error = ETIMEDOUT};
            int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
            if (c < 0) return exchange_result{.error = errno};
            auto r = exchange(c, seed, size);
            ::close(c);
            return r;
        });
    }
    ~service() {
        ::shutdown(fd_, SHUT_RDWR);  // wakes a poll() still waiting for a connection
        if (result_.valid()) result_.wait();
        ::close(fd_);
    }
    std::uint16_t port() const { return port_; }
    std::future<exchange_result>& result() { return result_; }

private:
    int fd_ = -1;
    std::uint16_t port_ = 0;
    std::future<exchange_result> result_;
};

std::future<exchange_result> application(std::uint16_t port, std::uint64_t seed,
                                         std::uint64_t size = kSize, int read_delay_ms = 0) {
    return std::async(std::launch::async, [port, seed, size, read_delay_ms] {
        int fd = -1;
        // The forward listener may need a moment after the reply; retry briefly.
        for (int i = 0; i < 50 && fd < 0; ++i) {
            // A slow reader gets a small fixed receive buffer: it fills long before the pause
            // ends, whatever the kernel's autotuning limits are.
            fd = connect_loopback(port, read_delay_ms > 0 ? 256 * 1024 : 0);
            if (fd < 0) usleep(20000);
        }
        if (fd < 0) return exchange_result{.error = ECONNREFUSED};
        auto r = exchange(fd, seed, size, read_delay_ms);
        ::close(fd);
        return r;
    });
}

bool ready(std::future<exchange_result>& f) {
    return f.wait_for(std::chrono::seconds(0)) == std::future_status::ready;
}

struct transfer_report {
    double up_mbps = 0, down_mbps = 0;  // application -> service, service -> application
};

// Runs one transfer (`size` bytes each way) between the application and the service through
// the bridge, then checks both digests against streams computed without any transfer.
void check_transfer(bridge& b, std::future<exchange_result>& app, service& svc,
                    std::uint64_t app_seed, std::uint64_t svc_seed, std::uint64_t size,
                    transfer_report& rep, const sshd_instance& sshd) {
    bool ok = b.run([&] { return ready(app) && ready(svc.result()) && b.active_links() == 0; },
                    240000);
    ASSERT_TRUE(ok) << b.failure() << "\nsshd log:\n" << sshd.log();
    exchange_result a = app.get(), s = svc.result().get();
    EXPECT_EQ(a.error, 0) << strerror(a.error);
    EXPECT_EQ(s.error, 0) << strerror(s.error);
    EXPECT_EQ(a.sent, size);
    EXPECT_EQ(s.sent, size);
    EXPECT_EQ(s.received, size);
    EXPECT_EQ(a.received, size);
    const std::string up = pattern_digest(app_seed, size), down = pattern_digest(svc_seed, size);
    EXPECT_EQ(a.sent_digest, up);
    EXPECT_EQ(s.recv_digest, up) << "application -> service stream differs";
    EXPECT_EQ(s.sent_digest, down);
    EXPECT_EQ(a.recv_digest, down) << "service -> application stream differs";
    rep.up_mbps = mbps(s.received, s.recv_seconds);
    rep.down_mbps = mbps(a.received, a.recv_seconds);
}

class OurClientAgainstSshd : public ::testing::Test {
protected:
    void SetUp() override {
        if (access(kSshd, X_OK) != 0) GTEST_SKIP() << "OpenSSH server not installed";
        if (geteuid() != 0) {
            GTEST_SKIP() << "needs root: sshd must switch to the " << kUser
                         << " account, which the test creates and gives a fresh password";
        }
        ASSERT_TRUE(dir.ok());
        auto r = system_rng::create();
        ASSERT_TRUE(r);
        rng_ = std::move(*r);
        password = random_password(*rng_);
        ASSERT_GE(password.size(), 20u);
        std::string why;
        ASSERT_TRUE(prepare_account(password, why)) << why;
        std::array<std::byte, 32> seed{};
        ASSERT_TRUE(rng_->fill(seed));
        auto k = ed25519_private::from_seed(seed);
        ASSERT_TRUE(k);
        user_key.emplace(std::move(*k));
        std::ofstream(dir.path() + "/authorized_keys")
            << "ssh-ed25519 " << base64(ed25519_key_blob(user_key->public_key()))
            << " ferry-test\n";
        chmod((dir.path() + "/authorized_keys").c_str(), 0644);
    }

    session_config client_config(pinned_host_keys& verifier) {
        session_config c;
        c.transport.self = role::client;
        c.transport.random = rng_.get();
        c.transport.verifier = &verifier;
        c.auth_client.user = kUser;
        return c;
    }

    std::unique_ptr<bridge> connect(const sshd_instance& sshd, session_config cfg) {
        int fd = connect_loopback(sshd.port());
        if (fd < 0) return nullptr;
        auto b = std::make_unique<bridge>(fd, std::move(cfg));
        if (!b->start()) return nullptr;
        return b;
    }

    // Authenticates, then both transfers; reports MB/s.
    void run_all(const sshd_instance& sshd, bridge& b, const char* method, const char* label) {
        ASSERT_TRUE(b.run([&] { return b.authenticated(); }, 20000))
            << b.failure() << "\nsshd log:\n" << sshd.log();
        EXPECT_EQ(b.auth_method(), method);
        EXPECT_TRUE(b.session().transport().strict_kex());

        // keepalive@openssh.com: sshd answers (REQUEST_FAILURE: it does not know the name, and
        // that is all ssh's ServerAliveInterval needs).
        ASSERT_TRUE(b.session().conn().send_keepalive(b.out()));
        ASSERT_TRUE(b.run([&] { return !b.global_replies().empty(); }, 10000)) << b.failure();
        EXPECT_EQ(b.global_replies()[0].request, global_kind::keepalive);

        // direct-tcpip: application -> bridge listener -> channel -> sshd -> service.
        transfer_report direct;
        {
            service svc(2001);
            std::uint16_t lport = 0;
            int lfd = listen_loopback(lport);
            ASSERT_GE(lfd, 0);
            b.serve_direct_tcpip(lfd, "127.0.0.1", svc.port());
            auto app = application(lport, 1001);
            check_transfer(b, app, svc, 1001, 2001, kSize, direct, sshd);
            if (HasFatalFailure()) return;
            EXPECT_EQ(b.channels_opened(), 1u);
        }

        // tcpip-forward: sshd listens on a port of its choice.
        transfer_report forward;
        int rekeys_before = b.rekeys();
        {
            service svc(2002);
            b.forward_to(svc.port());
            ASSERT_TRUE(b.session().conn().request_tcpip_forward("127.0.0.1", 0, b.out()));
            ASSERT_TRUE(b.run([&] { return b.global_replies().size() == 2; }, 10000))
                << b.failure() << "\nsshd log:\n" << sshd.log();
            const global_reply_record rep = b.global_replies()[1];  // a copy: the vector grows
            ASSERT_EQ(rep.request, global_kind::tcpip_forward);
            ASSERT_TRUE(rep.ok) << "sshd refused tcpip-forward:\n" << sshd.log();
            ASSERT_NE(rep.port, 0u);
            auto app = application(std::uint16_t(rep.port), 1002);
            check_transfer(b, app, svc, 1002, 2002, kSize, forward, sshd);
            if (HasFatalFailure()) return;
            ASSERT_EQ(b.forwarded_opens().size(), 1u);
            EXPECT_EQ(b.forwarded_opens()[0].host, "127.0.0.1");
            EXPECT_EQ(b.forwarded_opens()[0].port, rep.port);
            EXPECT_EQ(b.forwarded_opens()[0].origin_host, "127.0.0.1");
            EXPECT_EQ(b.channels_opened(), 2u);

            ASSERT_TRUE(b.session().conn().cancel_tcpip_forward("127.0.0.1", rep.port, b.out()));
            ASSERT_TRUE(b.run([&] { return b.global_replies().size() == 3; }, 10000)) << b.failure();
            EXPECT_EQ(b.global_replies()[2].request, global_kind::cancel_tcpip_forward);
            EXPECT_TRUE(b.global_replies()[2].ok);
            // The port is closed again.
            int probe = connect_loopback(std::uint16_t(rep.port));
            EXPECT_LT(probe, 0) << "sshd still listens after cancel-tcpip-forward";
            if (probe >= 0) ::close(probe);
        }
        EXPECT_GT(b.rekeys(), 0) << "no rekey happened during 256 MiB";
        EXPECT_GT(b.rekeys(), rekeys_before) << "no rekey during the forwarded transfer";
        // Our sending was held back by sshd's window at times (send_data returned short and a
        // `writable` event resumed it).
        EXPECT_GT(b.send_blocks(), 0u);

        // A slow local reader: the application starts reading 2 s late. Once the kernel's
        // socket buffers are full, what sshd may still send is bounded by our window, because
        // consumed() is only called for bytes written to the socket: the bridge's backlog
        // toward the socket must reach a good part of the window but never exceed it.
        {
            constexpr std::uint64_t kSlow = 24ull << 20;
            const std::uint32_t window = connection_limits{}.window;
            b.reset_max_to_sock();
            service svc(2003, kSlow);
            std::uint16_t lport = 0;
            int lfd = listen_loopback(lport);
            ASSERT_GE(lfd, 0);
            b.serve_direct_tcpip(lfd, "127.0.0.1", svc.port());
            auto app = application(lport, 1003, kSlow, 2000);
            transfer_report slow;
            check_transfer(b, app, svc, 1003, 2003, kSlow, slow, sshd);
            if (HasFatalFailure()) return;
            EXPECT_GE(b.max_to_sock(), window / 4) << "the slow reader never held data back";
            EXPECT_LE(b.max_to_sock(), window) << "sshd sent beyond our window";
            std::printf("[%s] slow reader: backlog toward the socket peaked at %zu KiB (window "
                        "%u KiB)\n",
                        label, b.max_to_sock() / 1024, window / 1024);
        }
        std::printf("[%s] %s: direct-tcpip %.1f MB/s up, %.1f MB/s down; tcpip-forward "
                    "%.1f MB/s up, %.1f MB/s down; cipher %s; rekeys %d; send blocks %llu\n",
                    label, b.session().transport().peer_version().c_str(), direct.up_mbps,
                    direct.down_mbps, forward.up_mbps, forward.down_mbps,
                    std::string(info(b.session().transport().negotiated().enc[0]).name).c_str(),
                    b.rekeys(), static_cast<unsigned long long>(b.send_blocks()));
        b.disconnect("done");
    }

    temp_dir dir{"ferry-sshd"};
    std::unique_ptr<system_rng> rng_;
    std::string password;
    std::optional<ed25519_private> user_key;
};

TEST_F(OurClientAgainstSshd, Ed25519KeyDirectTcpipAndTcpipForward) {
    sshd_instance sshd;
    std::string why;
    // sshd rekeys every 32 MiB: several times in the middle of each transfer.
    ASSERT_TRUE(sshd.start(dir, false, "32M", why)) << why;
    pinned_host_keys verifier(pinned_host_keys::policy::pinned_only);
    verifier.pin(sshd.host_key());
    auto cfg = client_config(verifier);
    cfg.auth_client.key = &*user_key;
    cfg.transport.ciphers = "aes256-gcm@openssh.com";
    auto b = connect(sshd, std::move(cfg));
    ASSERT_TRUE(b) << "connect";
    run_all(sshd, *b, "publickey", "ed25519 key, aes256-gcm");
    b.reset();
    std::string log = sshd.log();
    EXPECT_NE(log.find(std::string("Accepted publickey for ") + kUser + " from 127.0.0.1"),
              std::string::npos) << log;
}

TEST_F(OurClientAgainstSshd, PasswordDirectTcpipAndTcpipForward) {
    sshd_instance sshd;
    std::string why;
    ASSERT_TRUE(sshd.start(dir, true, "", why)) << why;
    pinned_host_keys verifier(pinned_host_keys::policy::pinned_only);
    verifier.pin(sshd.host_key());

    {
        // A wrong password is refused: the session ends with an authentication error.
        auto cfg = client_config(verifier);
        cfg.auth_client.password = password + "x";
        auto bad = connect(sshd, std::move(cfg));
        ASSERT_TRUE(bad);
        EXPECT_FALSE(bad->run([&] { return bad->authenticated(); }, 20000));
        EXPECT_FALSE(bad->authenticated());
        EXPECT_NE(bad->failure().find("authentication failed"), std::string::npos)
            << bad->failure();
    }

    auto cfg = client_config(verifier);
    cfg.auth_client.password = password;
    cfg.transport.ciphers = "chacha20-poly1305@openssh.com";
    // Our side rekeys every 32 MiB this time.
    cfg.transport.limits.rekey_bytes = 32ull << 20;
    auto b = connect(sshd, std::move(cfg));
    ASSERT_TRUE(b);
    run_all(sshd, *b, "password", "password, chacha20-poly1305");
    b.reset();
    std::string log = sshd.log();
    EXPECT_NE(log.find(std::string("Failed password for ") + kUser), std::string::npos) << log;
    EXPECT_NE(log.find(std::string("Accepted password for ") + kUser + " from 127.0.0.1"),
              std::string::npos) << log;
}

}  // namespace

int main(int argc, char** argv) {
    ::testing::InitGoogleTest(&argc, argv);
    signal(SIGPIPE, SIG_IGN);
    return RUN_ALL_TESTS();
}
