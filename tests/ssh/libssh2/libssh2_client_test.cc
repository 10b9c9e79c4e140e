// libssh2 (an independent client implementation, Debian's build on OpenSSL) against our test
// server (tests/ssh/ssh_test_server.cc, on the reactor) over loopback:
//   * the algorithms are forced with libssh2_session_method_pref (curve25519-sha256,
//     ssh-ed25519, aes256-ctr, hmac-sha2-256) and checked with libssh2_session_methods;
//   * the host key libssh2 received must be the one the server printed;
//   * password authentication (a wrong password first, refused);
//   * tcpip-forward through libssh2_channel_forward_listen_ex; the test connects consumers to
//     the server's forward listener, the server opens `forwarded-tcpip` channels, libssh2
//     accepts them with libssh2_channel_forward_accept; each channel carries an independent
//     stream each way, checked by SHA-256 at both ends.
// libssh2 runs non-blocking in this thread (one session is not thread-safe); the consumers are
// threads with blocking sockets.
//   test_ssh_libssh2 PATH_TO_ssh_test_server
#include <libssh2.h>
#include <poll.h>
#include <signal.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <future>
#include <memory>
#include <string>
#include <vector>

#include "support/interop.hh"
#include "support/stream.hh"

using namespace ferry;
using namespace ferry::test;

namespace {

std::string g_server;  // argv[1]

constexpr const char* kPassword = "libssh2-pw-7f3a9c";
constexpr const char* kForwardName = "libssh2-tunnel";
constexpr int kForwardPort = 80;
// The server rekeys after this many bytes in one direction: several times during the transfer
// below, with libssh2 answering server-initiated key exchanges while channels are busy.
constexpr std::uint64_t kRekeyBytes = 16ull << 20;
constexpr int kChannels = 4;
constexpr std::uint64_t kSize = 16ull << 20;  // per channel and direction

struct server_proc {
    temp_dir dir{"ferry-libssh2"};
    child proc;
    std::unique_ptr<line_reader> lines;
    std::uint16_t port = 0;
    std::vector<std::byte> host_key;  // wire blob from the "hostkey" line
    std::string err_path;
    std::string skipped;  // stdout lines we did not need

    ~server_proc() { stop(proc); }

    // Starts the server and reads its "listening" and "hostkey" lines.
    bool start(std::string& why) {
        err_path = dir.path() + "/server.err";
        proc = spawn({g_server, "--listen", "127.0.0.1:0", "--password", kPassword, "--ciphers",
                      "aes256-ctr", "--macs", "hmac-sha2-256", "--rekey-bytes",
                      std::to_string(kRekeyBytes)},
                     err_path, true);
        if (proc.pid <= 0) {
            why = "spawn failed";
            return false;
        }
        lines = std::make_unique<line_reader>(proc.out);
        std::string line;
        while (port == 0 || host_key.empty()) {
            if (!lines->next(line, 10000)) {
                why = "no listening/hostkey line from the server; stderr:\n" +
                      read_text_file(err_path);
                return false;
            }
            if (line.rfind("listening ", 0) == 0) {
                auto colon = line.rfind(':');
                port = std::uint16_t(std::stoi(line.substr(colon + 1)));
            } else if (line.rfind("hostkey ssh-ed25519 ", 0) == 0) {
                host_key = unbase64(line.substr(20));
            } else {
                skipped += line + "\n";
            }
        }
        return true;
    }

    // Waits for a line starting with `prefix`; returns it (empty on timeout).
    std::string wait_line(std::string_view prefix, int timeout_ms = 10000) {
        std::string line;
        if (!lines->wait_for(prefix, line, timeout_ms, &skipped)) return {};
        return line;
    }

    // Waits for "forward NAME PORT -> 127.0.0.1:LPORT" and returns LPORT (0 on failure).
    std::uint16_t forward_port(std::string_view name, int port_no) {
        std::string want = "forward " + std::string(name) + " " + std::to_string(port_no) + " -> ";
        std::string line;
        if (!lines->wait_for(want, line, 10000, &skipped)) return 0;
        auto colon = line.rfind(':');
        if (colon == std::string::npos) return 0;
        return std::uint16_t(std::stoi(line.substr(colon + 1)));
    }

    std::string log() const { return read_text_file(err_path); }
};

struct libssh2_global {
    libssh2_global() { ok = libssh2_init(0) == 0; }
    ~libssh2_global() { libssh2_exit(); }
    bool ok;
};

std::string last_error(LIBSSH2_SESSION* s) {
    char* msg = nullptr;
    int len = 0;
    int code = libssh2_session_last_error(s, &msg, &len, 0);
    return std::to_string(code) + " " + (msg ? std::string(msg, std::size_t(len)) : "");
}

// One forwarded channel on the libssh2 side: sends pattern(seed) and hashes what arrives.
struct chan {
    LIBSSH2_CHANNEL* ch = nullptr;
    pattern gen;
    digest sent_d, recv_d;
    std::string sent_digest, recv_digest;
    std::vector<std::byte> wbuf;
    std::size_t woff = 0, wlen = 0;
    std::uint64_t sent = 0;
    bool got_eof = false, sent_eof = false, closed = false;
    explicit chan(LIBSSH2_CHANNEL* c, std::uint64_t seed) : ch(c), gen(seed), wbuf(64 * 1024) {}
};

class driver {
public:
    driver(LIBSSH2_SESSION* s, int sock) : s_(s), sock_(sock) {}

    // libssh2 1.10 keeps one partly sent packet per session and refuses (LIBSSH2_ERROR_BAD_USE)
    // any other packet until the very call that started it is repeated. So an EAGAIN that left
    // outbound bytes pending is retried right here, before anything else touches the session.
    template <class F>
    long retry(F&& op) {
        for (;;) {
            long rc = op();
            if (rc != LIBSSH2_ERROR_EAGAIN) return rc;
            if (!(libssh2_session_block_directions(s_) & LIBSSH2_SESSION_BLOCK_OUTBOUND)) {
                return rc;
            }
            pollfd p{sock_, POLLOUT, 0};
            ::poll(&p, 1, 1000);
            if (now_ms() > deadline) return rc;
        }
    }

    // Waits until the socket can make progress in the direction libssh2 is blocked on.
    void wait(int timeout_ms) {
        int dirs = libssh2_session_block_directions(s_);
        short ev = 0;
        if (dirs & LIBSSH2_SESSION_BLOCK_INBOUND) ev |= POLLIN;
        if (dirs & LIBSSH2_SESSION_BLOCK_OUTBOUND) ev |= POLLOUT;
        if (!ev) ev = POLLIN;
        pollfd p{sock_, ev, 0};
        ::poll(&p, 1, timeout_ms);
    }

    std::uint64_t deadline = 0;

private:
    LIBSSH2_SESSION* s_;
    int sock_;
};

TEST(Libssh2Client, ForwardedChannelsWithPasswordAuth) {
    ASSERT_FALSE(g_server.empty()) << "pass the path of ssh_test_server";
    libssh2_global lib;
    ASSERT_TRUE(lib.ok);
    server_proc srv;
    std::string why;
    ASSERT_TRUE(srv.start(why)) << why;
    ASSERT_EQ(srv.host_key.size(), 51u) << "ssh-ed25519 blob: string name(11) + string key(32)";

    int sock = connect_loopback(srv.port);
    ASSERT_GE(sock, 0) << "connect to 127.0.0.1:" << srv.port;
    LIBSSH2_SESSION* s = libssh2_session_init();
    ASSERT_NE(s, nullptr);
    std::unique_ptr<LIBSSH2_SESSION, void (*)(LIBSSH2_SESSION*)> s_guard(s, [](LIBSSH2_SESSION* p) {
        libssh2_session_free(p);
    });

    // Only the algorithms under test are offered, so success proves they were used; the
    // negotiated names are checked as well.
    ASSERT_EQ(libssh2_session_method_pref(s, LIBSSH2_METHOD_KEX, "curve25519-sha256"), 0)
        << last_error(s);
    ASSERT_EQ(libssh2_session_method_pref(s, LIBSSH2_METHOD_HOSTKEY, "ssh-ed25519"), 0);
    ASSERT_EQ(libssh2_session_method_pref(s, LIBSSH2_METHOD_CRYPT_CS, "aes256-ctr"), 0);
    ASSERT_EQ(libssh2_session_method_pref(s, LIBSSH2_METHOD_CRYPT_SC, "aes256-ctr"), 0);
    ASSERT_EQ(libssh2_session_method_pref(s, LIBSSH2_METHOD_MAC_CS, "hmac-sha2-256"), 0);
    ASSERT_EQ(libssh2_session_method_pref(s, LIBSSH2_METHOD_MAC_SC, "hmac-sha2-256"), 0);

    // Blocking while setting up; the transfer below is non-blocking.
    libssh2_session_set_blocking(s, 1);
    libssh2_session_set_timeout(s, 20000);
    ASSERT_EQ(libssh2_session_handshake(s, sock), 0) << last_error(s) << "\n" << srv.log();
    EXPECT_STREQ(libssh2_session_methods(s, LIBSSH2_METHOD_KEX), "curve25519-sha256");
    EXPECT_STREQ(libssh2_session_methods(s, LIBSSH2_METHOD_HOSTKEY), "ssh-ed25519");
    EXPECT_STREQ(libssh2_session_methods(s, LIBSSH2_METHOD_CRYPT_CS), "aes256-ctr");
    EXPECT_STREQ(libssh2_session_methods(s, LIBSSH2_METHOD_CRYPT_SC), "aes256-ctr");
    EXPECT_STREQ(libssh2_session_methods(s, LIBSSH2_METHOD_MAC_CS), "hmac-sha2-256");
    EXPECT_STREQ(libssh2_session_methods(s, LIBSSH2_METHOD_MAC_SC), "hmac-sha2-256");

    std::size_t key_len = 0;
    int key_type = 0;
    const char* key = libssh2_session_hostkey(s, &key_len, &key_type);
    ASSERT_NE(key, nullptr);
    EXPECT_EQ(key_type, LIBSSH2_HOSTKEY_TYPE_ED25519);
    EXPECT_EQ(std::vector<std::byte>(reinterpret_cast<const std::byte*>(key),
                                     reinterpret_cast<const std::byte*>(key) + key_len),
              srv.host_key)
        << "libssh2 saw another host key than the server printed";

    // The server offers password; a wrong one is refused, the right one accepted.
    const char* methods = libssh2_userauth_list(s, "ferry", 5);
    ASSERT_NE(methods, nullptr) << last_error(s);
    EXPECT_NE(std::string(methods).find("password"), std::string::npos) << methods;
    EXPECT_EQ(libssh2_userauth_password(s, "ferry", "not-the-password"),
              LIBSSH2_ERROR_AUTHENTICATION_FAILED);
    EXPECT_EQ(libssh2_userauth_authenticated(s), 0);
    ASSERT_EQ(libssh2_userauth_password(s, "ferry", kPassword), 0) << last_error(s);
    ASSERT_EQ(libssh2_userauth_authenticated(s), 1);
    // The server's view: password, aes256-ctr, hmac-sha2-256, and no strict KEX (libssh2 1.10
    // predates it, so the server must not insist).
    EXPECT_EQ(srv.wait_line("auth "), "auth ferry password strict=0 cipher=aes256-ctr mac=hmac-sha2-256")
        << srv.skipped;

    int bound = -1;
    LIBSSH2_LISTENER* listener =
        libssh2_channel_forward_listen_ex(s, kForwardName, kForwardPort, &bound, 16);
    ASSERT_NE(listener, nullptr) << last_error(s) << "\n" << srv.log();
    EXPECT_EQ(bound, kForwardPort);
    std::uint16_t lport = srv.forward_port(kForwardName, kForwardPort);
    ASSERT_NE(lport, 0) << "no forward line; stdout:\n" << srv.skipped << "stderr:\n" << srv.log();

    // Consumers: each sends pattern(100 + i) and hashes what comes back. libssh2 sends
    // pattern(200 + k) on the k-th channel it accepts; channels and consumers are paired by
    // the server in whatever order it likes, so digests are compared as sets.
    auto t0 = std::chrono::steady_clock::now();
    std::vector<std::future<exchange_result>> consumers;
    for (int i = 0; i < kChannels; ++i) {
        consumers.push_back(std::async(std::launch::async, [lport, i] {
            int fd = connect_loopback(lport);
            if (fd < 0) return exchange_result{.error = errno ? errno : ECONNREFUSED};
            auto r = exchange(fd, 100 + std::uint64_t(i), kSize);
            ::close(fd);
            return r;
        }));
    }

    libssh2_session_set_blocking(s, 0);
    driver d(s, sock);
    d.deadline = now_ms() + 240 * 1000;
    std::vector<std::unique_ptr<chan>> chans;
    std::vector<std::byte> rbuf(64 * 1024);
    std::string failure;
    auto all_done = [&] {
        if (chans.size() < std::size_t(kChannels)) return false;
        for (auto& c : chans) {
            if (!c->closed) return false;
        }
        return true;
    };
    std::uint64_t last_progress = now_ms();
    while (failure.empty() && !all_done()) {
        if (now_ms() > d.deadline) {
            failure = "timeout";
            break;
        }
        if (now_ms() - last_progress > 30000) {
            failure = "stalled: no progress for 30 s";
            break;
        }
        bool progress = false;
        while (chans.size() < std::size_t(kChannels)) {
            LIBSSH2_CHANNEL* c = nullptr;
            long rc = d.retry([&]() -> long {
                c = libssh2_channel_forward_accept(listener);
                return c ? 0 : libssh2_session_last_errno(s);
            });
            if (!c) {
                if (rc != LIBSSH2_ERROR_EAGAIN) failure = "forward_accept: " + last_error(s);
                break;
            }
            chans.push_back(std::make_unique<chan>(c, 200 + chans.size()));
            progress = true;
        }
        for (auto& cp : chans) {
            chan& c = *cp;
            if (!failure.empty() || c.closed) continue;
            // Reading: a few packets per round, so no channel starves the others.
            for (int k = 0; k < 16 && !c.got_eof; ++k) {
                long n = d.retry([&]() -> long {
                    return libssh2_channel_read(c.ch, reinterpret_cast<char*>(rbuf.data()),
                                                rbuf.size());
                });
                if (n > 0) {
                    c.recv_d.update(bytes(rbuf.data(), std::size_t(n)));
                    progress = true;
                    continue;
                }
                if (n == LIBSSH2_ERROR_EAGAIN) break;
                if (n == 0 && libssh2_channel_eof(c.ch) == 1) {
                    c.got_eof = true;
                    c.recv_digest = c.recv_d.finish();
                    progress = true;
                    break;
                }
                if (n < 0) failure = "channel_read: " + last_error(s);
                break;
            }
            // Writing: the same buffer is offered again until libssh2 took all of it.
            while (failure.empty() && (c.sent < kSize || c.woff < c.wlen)) {
                if (c.woff == c.wlen) {
                    std::size_t n = std::size_t(std::min<std::uint64_t>(kSize - c.sent, c.wbuf.size()));
                    c.gen.fill(mut_bytes(c.wbuf.data(), n));
                    c.sent_d.update(bytes(c.wbuf.data(), n));
                    c.woff = 0;
                    c.wlen = n;
                    c.sent += n;
                }
                long n = d.retry([&]() -> long {
                    return libssh2_channel_write(c.ch,
                                                 reinterpret_cast<const char*>(c.wbuf.data() + c.woff),
                                                 c.wlen - c.woff);
                });
                if (n > 0) {
                    c.woff += std::size_t(n);
                    progress = true;
                    continue;
                }
                if (n != LIBSSH2_ERROR_EAGAIN) failure = "channel_write: " + last_error(s);
                break;
            }
            bool all_written = c.sent == kSize && c.woff == c.wlen;
            if (failure.empty() && all_written && !c.sent_eof) {
                long rc = d.retry([&]() -> long { return libssh2_channel_send_eof(c.ch); });
                if (rc == 0) {
                    c.sent_eof = true;
                    c.sent_digest = c.sent_d.finish();
                    progress = true;
                } else if (rc != LIBSSH2_ERROR_EAGAIN) {
                    failure = "send_eof: " + last_error(s);
                }
            }
            if (failure.empty() && c.sent_eof && c.got_eof) {
                long rc = d.retry([&]() -> long { return libssh2_channel_close(c.ch); });
                if (rc == 0) {
                    rc = d.retry([&]() -> long { return libssh2_channel_free(c.ch); });
                    c.ch = nullptr;
                    c.closed = true;
                    progress = true;
                } else if (rc != LIBSSH2_ERROR_EAGAIN) {
                    failure = "channel_close: " + last_error(s);
                }
            }
        }
        if (progress) {
            last_progress = now_ms();
        } else {
            d.wait(100);
        }
    }
    double libssh2_seconds = seconds_since(t0);
    if (!failure.empty()) {
        // Where each channel stood, for the failure message.
        for (auto& c : chans) {
            failure += "\n  channel: sent " + std::to_string(c->sent) + " (+" +
                       std::to_string(c->wlen - c->woff) + " unwritten) received " +
                       std::to_string(c->recv_d.size()) + (c->got_eof ? " got_eof" : "") +
                       (c->sent_eof ? " sent_eof" : "") + (c->closed ? " closed" : "");
            if (c->ch) {
                unsigned long read_avail = 0, window_size_initial = 0;
                unsigned long rw = libssh2_channel_window_read_ex(c->ch, &read_avail,
                                                                  &window_size_initial);
                unsigned long ww = libssh2_channel_window_write_ex(c->ch, &window_size_initial);
                failure += " window_read " + std::to_string(rw) + " read_avail " +
                           std::to_string(read_avail) + " window_write " + std::to_string(ww);
            }
        }
        failure += "\n  libssh2 block directions " +
                   std::to_string(libssh2_session_block_directions(s)) + ", last error " +
                   last_error(s);
        std::string line;
        while (srv.lines->next(line, 200)) srv.skipped += line + "\n";
        failure += "\n  server stdout:\n" + srv.skipped;
    }
    ASSERT_EQ(failure, "") << "stderr of the server:\n" << srv.log();

    std::vector<exchange_result> results;
    for (auto& f : consumers) results.push_back(f.get());
    double seconds = seconds_since(t0);

    std::vector<std::string> consumer_sent, consumer_recv, ours_sent, ours_recv;
    for (auto& r : results) {
        EXPECT_EQ(r.error, 0) << strerror(r.error);
        EXPECT_EQ(r.sent, kSize);
        EXPECT_EQ(r.received, kSize);
        consumer_sent.push_back(r.sent_digest);
        consumer_recv.push_back(r.recv_digest);
    }
    for (auto& c : chans) {
        EXPECT_EQ(c->recv_d.size(), kSize);
        ours_sent.push_back(c->sent_digest);
        ours_recv.push_back(c->recv_digest);
    }
    // The digests each side computed over what it sent must be what the other side received,
    // and both must equal the digests of the streams computed without any transfer.
    std::vector<std::string> expect_up, expect_down;
    for (int i = 0; i < kChannels; ++i) {
        expect_up.push_back(pattern_digest(100 + std::uint64_t(i), kSize));
        expect_down.push_back(pattern_digest(200 + std::uint64_t(i), kSize));
    }
    for (auto* v : {&consumer_sent, &consumer_recv, &ours_sent, &ours_recv, &expect_up,
                    &expect_down}) {
        std::sort(v->begin(), v->end());
    }
    EXPECT_EQ(consumer_sent, expect_up);
    EXPECT_EQ(ours_recv, expect_up) << "consumer -> libssh2 data differs";
    EXPECT_EQ(ours_sent, expect_down);
    EXPECT_EQ(consumer_recv, expect_down) << "libssh2 -> consumer data differs";

    std::printf("libssh2 <-> ssh_test_server: %d channels x %llu MiB each way in %.2f s "
                "(libssh2 done %.2f s): %.1f MB/s each way\n",
                kChannels, static_cast<unsigned long long>(kSize >> 20), seconds, libssh2_seconds,
                mbps(kSize * kChannels, seconds));

    libssh2_session_set_blocking(s, 1);
    EXPECT_EQ(libssh2_channel_forward_cancel(listener), 0) << last_error(s);
    EXPECT_NE(srv.wait_line("cancel "), "") << "no cancel line";
    EXPECT_EQ(libssh2_session_disconnect(s, "done"), 0);
    s_guard.reset();
    ::close(sock);

    // The server's summary: every channel was its, and it rekeyed during the transfer
    // (kRekeyBytes is a quarter of what went each way).
    std::string end = srv.wait_line("end ");
    ASSERT_NE(end, "") << srv.skipped << srv.log();
    // "end key=value ...": read the fields by name (the server may add others).
    auto field = [&](const char* key) -> long long {
        std::string k = std::string(" ") + key + "=";
        auto p = end.find(k);
        return p == std::string::npos ? -1 : std::atoll(end.c_str() + p + k.size());
    };
    long long rekeys = field("rekeys"), channels = field("channels"), up = field("up"),
              down = field("down");
    EXPECT_EQ(up, static_cast<long long>(kSize * kChannels)) << end;
    EXPECT_EQ(down, static_cast<long long>(kSize * kChannels)) << end;
    EXPECT_EQ(channels, kChannels) << end;
    EXPECT_GE(rekeys, 3) << end;
    std::printf("server: %s\n", end.c_str());
}

}  // namespace

// libssh2 1.10's curve25519_sha256() (kex.c) allocates session->server_hostkey again on every
// key re-exchange without freeing the previous copy: 51 bytes lost per rekey, in libssh2, not
// here. LeakSanitizer is told to ignore leaks allocated inside libssh2 only.
extern "C" const char* __lsan_default_suppressions() { return "leak:libssh2.so\n"; }

int main(int argc, char** argv) {
    ::testing::InitGoogleTest(&argc, argv);
    if (argc > 1) g_server = argv[1];
    signal(SIGPIPE, SIG_IGN);
    return RUN_ALL_TESTS();
}
