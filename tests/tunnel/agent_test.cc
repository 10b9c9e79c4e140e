// Agent building blocks: the reconnect schedule (deterministic, injected randomness), the
// known_hosts store (parsing, trust on first use, pinning, mismatch), the relay's refusal
// answers, and the WebSocket client on the reactor against our WebSocket server over loopback.
// The agent itself runs end to end in tests/integration/agent_test.py.
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <vector>

#include "../reactor/helpers.hh"
#include "proto/ssh/hostkey.hh"
#include "tunnel/agent.hh"
#include "tunnel/known_hosts.hh"
#include "tunnel/ws_client.hh"
#include "tunnel/ws_server.hh"

namespace ferry::tunnel {
namespace {

using namespace ferry::reactor;
using namespace ferry::reactor::testing;
using std::chrono::milliseconds;

// ---- backoff ------------------------------------------------------------------------------------

std::function<double()> constant(double u) {
    return [u] { return u; };
}

std::vector<long> schedule(backoff& b, int n) {
    std::vector<long> v;
    for (int i = 0; i < n; ++i) v.push_back(long(b.next().count()));
    return v;
}

TEST(Backoff, DefaultScheduleWithoutJitter) {
    backoff b(backoff_policy{}, constant(0.5));  // 0.5: the jitter term is zero
    EXPECT_EQ(schedule(b, 9), (std::vector<long>{0, 2000, 4000, 8000, 16000, 32000, 60000, 60000, 60000}));
}

TEST(Backoff, JitterBoundsAndCap) {
    backoff lo(backoff_policy{}, constant(0.0));
    EXPECT_EQ(schedule(lo, 8), (std::vector<long>{0, 1400, 2800, 5600, 11200, 22400, 42000, 42000}));
    backoff hi(backoff_policy{}, constant(1.0));
    // +30%, but never above the 60 s cap.
    EXPECT_EQ(schedule(hi, 8), (std::vector<long>{0, 2600, 5200, 10400, 20800, 41600, 60000, 60000}));
}

TEST(Backoff, JitterIsSpreadAroundTheNominalDelay) {
    // A real generator: the delays spread over [0.7, 1.3] of nominal and average near it.
    std::uint64_t s = 88172645463325252ull;
    backoff b(backoff_policy{}, [&s] {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        return double(s >> 11) / double(1ull << 53);
    });
    double sum = 0;
    long mn = 1 << 30, mx = 0;
    for (int i = 0; i < 2000; ++i) {
        b.reset();
        (void)b.next();  // immediate
        long d = long(b.next().count());
        sum += double(d);
        mn = std::min(mn, d);
        mx = std::max(mx, d);
    }
    EXPECT_GE(mn, 1400);
    EXPECT_LE(mx, 2600);
    EXPECT_LT(mn, 1500);  // the range is actually used
    EXPECT_GT(mx, 2500);
    EXPECT_NEAR(sum / 2000, 2000, 60);
}

TEST(Backoff, ResetAfterSuccessRetriesAtOnce) {
    backoff b(backoff_policy{}, constant(0.5));
    (void)schedule(b, 5);
    b.reset();
    EXPECT_EQ(schedule(b, 3), (std::vector<long>{0, 2000, 4000}));
}

TEST(Backoff, AtCapStaysAtCap) {
    backoff b(backoff_policy{}, constant(0.5));
    EXPECT_EQ(b.next().count(), 0);
    EXPECT_EQ(b.at_cap().count(), 60000);  // 401/403: straight to the cap
    EXPECT_EQ(b.next().count(), 60000);
    backoff j(backoff_policy{}, constant(0.0));
    EXPECT_EQ(j.at_cap().count(), 42000);  // jitter only lowers it
}

TEST(Backoff, CustomPolicyAndSanitising) {
    backoff_policy p;
    p.base = milliseconds(100);
    p.factor = 3;
    p.cap = milliseconds(1000);
    p.jitter = 0;
    backoff b(p, constant(0.9));
    EXPECT_EQ(schedule(b, 6), (std::vector<long>{0, 100, 300, 900, 1000, 1000}));
    // Nonsense values are clamped: factor < 1 behaves as 1, cap below base becomes base.
    p.factor = 0.1;
    p.cap = milliseconds(10);
    backoff c(p, constant(0.5));
    EXPECT_EQ(schedule(c, 4), (std::vector<long>{0, 100, 100, 100}));
}

TEST(Backoff, NoOverflowAfterManySteps) {
    backoff b(backoff_policy{}, constant(0.5));
    for (int i = 0; i < 10000; ++i) ASSERT_LE(b.next().count(), 60000);
    EXPECT_EQ(b.next().count(), 60000);
}

// ---- known_hosts ----------------------------------------------------------------------------------

std::vector<std::byte> ed_blob(std::uint8_t fill) {
    auto key = ssh::ed25519_private::from_seed(std::vector<std::byte>(32, std::byte(fill)));
    EXPECT_TRUE(key);
    return ssh::ed25519_key_blob(key->public_key());
}

std::string tmpdir() {
    char t[] = "/tmp/ferry-kh-XXXXXX";
    EXPECT_NE(::mkdtemp(t), nullptr);
    return t;
}

std::string slurp(const std::string& path) {
    std::ifstream f(path);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

TEST(KnownHosts, Base64MatchesRfc4648) {
    const char* plain[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    const char* enc[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
    for (int i = 0; i < 7; ++i) {
        EXPECT_EQ(base64_encode(as_bytes(std::string_view(plain[i]))), enc[i]);
        auto d = base64_decode(enc[i]);
        ASSERT_TRUE(d) << enc[i];
        EXPECT_EQ(std::string(reinterpret_cast<const char*>(d->data()), d->size()), plain[i]);
    }
    EXPECT_EQ(base64_encode(as_bytes(std::string_view("\xfb\xff"))), "+/8=");
    for (const char* bad : {"Zg=", "Z===", "Zh==", "-_8=", "Zm9v!A==", "Zm=v"}) {
        EXPECT_FALSE(base64_decode(bad)) << bad;
    }
}

TEST(KnownHosts, NameFollowsOpenSsh) {
    EXPECT_EQ(known_hosts_name("Relay.Example.COM", 22), "relay.example.com");
    EXPECT_EQ(known_hosts_name("relay.example.com", 8443), "[relay.example.com]:8443");
    EXPECT_EQ(known_hosts_name("::1", 443), "[::1]:443");
}

TEST(KnownHosts, FindsKeysForTheName) {
    auto a = ed_blob(1), b = ed_blob(2), c = ed_blob(3);
    std::string text = "# comment\n\n";
    text += "other.example " + known_hosts_line("x", a).substr(2);                     // another host
    text += "relay.example,[relay.example]:8443 " + known_hosts_line("x", b).substr(2);  // a list
    text += "|1|abc=|def= " + known_hosts_line("x", c).substr(2);                      // hashed: skipped
    text += "*.example " + known_hosts_line("x", c).substr(2);                         // pattern: skipped
    text += "[relay.example]:8443 ssh-ed25519 not-base64\n";                            // malformed
    text += "[relay.example]:8443 ssh-rsa " + base64_encode(a) + "\r\n";              // type mismatch
    text += "@revoked [RELAY.example]:8443 " + known_hosts_line("x", c).substr(2);
    text += "@cert-authority *.example " + known_hosts_line("x", c).substr(2);
    text += "[relay.example]:8443";  // truncated last line without newline
    auto m = find_known_hosts(text, "[relay.example]:8443");
    ASSERT_EQ(m.keys.size(), 2u);
    EXPECT_EQ(m.keys[0].blob, b);
    EXPECT_FALSE(m.keys[0].revoked);
    EXPECT_EQ(m.keys[1].blob, c);
    EXPECT_TRUE(m.keys[1].revoked);
    EXPECT_EQ(m.keys[0].type, "ssh-ed25519");
    EXPECT_EQ(m.skipped, 6u);
    EXPECT_TRUE(find_known_hosts(text, "relay.example").keys.size() == 1);
    EXPECT_TRUE(find_known_hosts(text, "nobody").keys.empty());
}

TEST(KnownHosts, TrustOnFirstUseThenPinned) {
    const std::string dir = tmpdir();
    const std::string path = dir + "/sub/dir/known_hosts";
    auto k1 = ed_blob(7), k2 = ed_blob(8);
    {
        known_hosts_verifier v(path, "[relay]:8443");
        EXPECT_TRUE(v.accept("ssh-ed25519", k1));
        EXPECT_EQ(v.last(), known_hosts_verifier::outcome::learned);
        EXPECT_TRUE(v.detail().empty()) << v.detail();
        EXPECT_TRUE(v.accept("ssh-ed25519", k1));
        EXPECT_EQ(v.last(), known_hosts_verifier::outcome::matched);
    }
    EXPECT_EQ(slurp(path), known_hosts_line("[relay]:8443", k1));
    struct stat st {};
    ASSERT_EQ(::stat(path.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u);
    ASSERT_EQ(::stat((dir + "/sub/dir").c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0700u);

    // A later run finds the pinned key; another key is a mismatch naming both fingerprints.
    known_hosts_verifier v2(path, "[relay]:8443");
    EXPECT_TRUE(v2.accept("ssh-ed25519", k1));
    EXPECT_EQ(v2.last(), known_hosts_verifier::outcome::matched);
    EXPECT_FALSE(v2.accept("ssh-ed25519", k2));
    EXPECT_EQ(v2.last(), known_hosts_verifier::outcome::mismatch);
    EXPECT_EQ(v2.expected_fingerprints(), ssh::fingerprint_sha256(k1));
    EXPECT_EQ(v2.offered_fingerprint(), ssh::fingerprint_sha256(k2));
    EXPECT_EQ(slurp(path), known_hosts_line("[relay]:8443", k1));  // nothing appended

    // Another relay name in the same file learns its own key.
    known_hosts_verifier v3(path, "[other]:8443");
    EXPECT_TRUE(v3.accept("ssh-ed25519", k2));
    EXPECT_EQ(v3.last(), known_hosts_verifier::outcome::learned);
    EXPECT_EQ(find_known_hosts(slurp(path), "[other]:8443").keys.size(), 1u);
    std::system(("rm -rf " + dir).c_str());
}

TEST(KnownHosts, AppendsAfterALastLineWithoutNewline) {
    const std::string dir = tmpdir();
    const std::string path = dir + "/kh";
    std::ofstream(path) << "# no newline at the end";
    known_hosts_verifier v(path, "r");
    EXPECT_TRUE(v.accept("ssh-ed25519", ed_blob(1)));
    EXPECT_EQ(find_known_hosts(slurp(path), "r").keys.size(), 1u);
    EXPECT_EQ(slurp(path).rfind("# no newline at the end\n", 0), 0u);
    std::system(("rm -rf " + dir).c_str());
}

TEST(KnownHosts, MemoryOnlyRevokedAndUnreadable) {
    auto k1 = ed_blob(1), k2 = ed_blob(2);
    known_hosts_verifier mem("", "r");
    EXPECT_TRUE(mem.accept("ssh-ed25519", k1));
    EXPECT_EQ(mem.last(), known_hosts_verifier::outcome::learned);
    EXPECT_FALSE(mem.accept("ssh-ed25519", k2));  // pinned for the process's life
    EXPECT_EQ(mem.last(), known_hosts_verifier::outcome::mismatch);
    EXPECT_FALSE(mem.accept("ssh-rsa", k1));
    EXPECT_EQ(mem.last(), known_hosts_verifier::outcome::refused);

    const std::string dir = tmpdir();
    std::ofstream(dir + "/kh") << "@revoked r " << base64_encode(k1).insert(0, "ssh-ed25519 ") << "\n";
    known_hosts_verifier rv(dir + "/kh", "r");
    EXPECT_FALSE(rv.accept("ssh-ed25519", k1));
    EXPECT_EQ(rv.last(), known_hosts_verifier::outcome::refused);
    EXPECT_NE(rv.detail().find("revoked"), std::string::npos);

    known_hosts_verifier dirpath(dir, "r");  // a directory: cannot be read
    EXPECT_FALSE(dirpath.accept("ssh-ed25519", k1));
    EXPECT_EQ(dirpath.last(), known_hosts_verifier::outcome::refused);
    std::system(("rm -rf " + dir).c_str());
}

// ---- refusals -----------------------------------------------------------------------------------

TEST(WsRefusal, ReadsTheRelaysErrorBody) {
    ws::header h[] = {{"Content-Type", "application/json"}, {"retry-after", "30"}};
    auto r = parse_refusal(503, h, R"({"error":{"code":"tunnel_offline","message":"try later","request_id":"x"}})");
    EXPECT_EQ(r.status, 503);
    EXPECT_EQ(r.code, "tunnel_offline");
    EXPECT_EQ(r.message, "try later");
    EXPECT_EQ(r.retry_after, 30u);
}

TEST(WsRefusal, HostileOrOddBodies) {
    ws::header date[] = {{"Retry-After", "Wed, 21 Oct 2015 07:28:00 GMT"}};
    EXPECT_EQ(parse_refusal(429, date, "").retry_after, 0u);  // HTTP-date: not used
    ws::header huge[] = {{"Retry-After", "999999999"}};
    EXPECT_EQ(parse_refusal(429, huge, "").retry_after, 86400u);
    ws::header neg[] = {{"Retry-After", "-5"}};
    EXPECT_EQ(parse_refusal(429, neg, "").retry_after, 0u);
    for (const char* body : {"", "not json", "[]", R"({"error":"flat"})", R"({"error":{"code":7}})",
                             R"({"error":{"code":"a","code":"b"}})", "{\"error\":{\"code\":\"x\"}"}) {
        auto r = parse_refusal(401, {}, body);
        EXPECT_EQ(r.status, 401);
        EXPECT_TRUE(r.code.empty()) << body;
        EXPECT_TRUE(r.message.empty()) << body;
    }
    // Control characters never reach a log line; long texts are cut; a body with a string over
    // the reader's limit is not read at all.
    auto r = parse_refusal(401, {}, "{\"error\":{\"code\":\"a\\nb\",\"message\":\"\\u0007m\"}}");
    EXPECT_EQ(r.code, "a?b");
    EXPECT_EQ(r.message, "?m");
    auto r1 = parse_refusal(401, {}, "{\"error\":{\"code\":\"c\",\"message\":\"" + std::string(5000, 'm') + "\"}}");
    EXPECT_TRUE(r1.code.empty());
    auto r2 = parse_refusal(401, {}, "{\"error\":{\"message\":\"" + std::string(1000, 'm') + "\"}}");
    EXPECT_EQ(r2.message.size(), 256u);
}

// ---- the WebSocket client on the reactor ------------------------------------------------------------

// Echo server: every binary piece goes back as its own message.
class echo_server final : public ws_server_connection {
public:
    echo_server(shard& s, bool refuse) : ws_server_connection(s), refuse_(refuse) {}
    bool accept_upgrade(const http1::request_head& h) override {
        if (refuse_) return false;
        for (auto& f : h.headers) {
            if (ws::iequals(f.name, "Authorization")) auth_ok_ = f.value == "Bearer t0ken";
        }
        return auth_ok_;
    }
    void on_ws_data(const ws::event& ev, slice payload) override {
        buffer_chain out;
        (void)codec().send(out, ev.op, std::move(payload));
        flush(out);
    }

private:
    bool refuse_;
    bool auth_ok_ = false;
};

struct client_seen {
    std::atomic<bool> opened{false}, refused{false}, closed{false}, done{false};
    std::atomic<int> status{0}, close_code{0};
    std::atomic<std::size_t> received{0};
    std::string err, code, message, data;  // written before `done`
    std::atomic<int> err_code{0};
};

class test_client_ws final : public ws_client_connection {
public:
    test_client_ws(shard& s, ws_client_options o, ssh::rng& r, client_seen* seen, std::size_t send_bytes)
        : ws_client_connection(s, std::move(o), r), seen_(seen), n_(send_bytes) {}
    void on_ws_open() override {
        seen_->opened = true;
        // One big chain: send_binary splits it into messages of at most max_send_message.
        buffer_chain c;
        std::string payload(n_, '\0');
        for (std::size_t i = 0; i < n_; ++i) payload[i] = char('a' + i % 26);
        expect_ = payload;
        c.append_copy(as_bytes(payload));
        ASSERT_TRUE(send_binary(c));
    }
    void on_ws_data(const ws::event&, slice payload) override {
        got_.append(as_string(payload.view()));
        seen_->received = got_.size();
        if (got_.size() == expect_.size()) ws_close(ws::close_code::normal, "bye");
    }
    void on_ws_closed(std::uint16_t code) override {
        seen_->close_code = code;
        seen_->data = got_ == expect_ ? "match" : "mismatch";
        seen_->closed = true;
    }
    void on_ws_refused(const ws_refusal& r) override {
        seen_->status = r.status;
        seen_->code = r.code;
        seen_->message = r.message;
        seen_->err = r.err.detail;
        seen_->err_code = int(r.err.code);
        seen_->refused = true;
    }
    void on_close(const error& why) override {
        ws_client_connection::on_close(why);
        seen_->done = true;
    }

private:
    client_seen* seen_;
    std::size_t n_;
    std::string expect_, got_;
};

struct ws_fixture {
    std::unique_ptr<engine> srv, cli;
    address addr;
    std::unique_ptr<ssh::system_rng> rng = ssh::system_rng::create().value();

    explicit ws_fixture(bool refuse = false) {
        config c;
        c.shards = 1;
        srv = start_engine(c);
        auto b = srv->listen(*address::parse("127.0.0.1:0"),
                             [refuse](shard& s) { return std::make_unique<echo_server>(s, refuse); });
        EXPECT_TRUE(b);
        addr = *b;
        cli = start_engine(c);
    }
    ~ws_fixture() {
        cli->stop();
        cli->wait();
        srv->stop();
        srv->wait();
    }
    void run(client_seen* seen, const address& to, std::string auth, std::size_t bytes) {
        run_on(*cli, 0, [&](shard& s) {
            ws_client_options o;
            o.host = "localhost";
            o.target = "/tunnel";
            o.extra_headers = "Authorization: Bearer " + auth + "\r\n";
            o.max_send_message = 64 * 1024;
            o.handshake_timeout = std::chrono::seconds(5);
            ASSERT_TRUE(s.connect(to, std::make_unique<test_client_ws>(s, o, *rng, seen, bytes)));
        });
        ASSERT_TRUE(eventually([&] { return seen->done.load(); }, 20s));
    }
};

TEST(WsClient, UpgradesEchoesAndClosesNormally) {
    ws_fixture f;
    client_seen seen;
    f.run(&seen, f.addr, "t0ken", 1 << 20);  // 16 messages of 64 KiB, masked
    EXPECT_TRUE(seen.opened);
    EXPECT_FALSE(seen.refused);
    EXPECT_TRUE(seen.closed);
    EXPECT_EQ(seen.data, "match");
    EXPECT_EQ(seen.close_code.load(), 1000);
}

TEST(WsClient, ReportsARefusalWithItsStatusAndBody) {
    ws_fixture f;
    client_seen seen;
    f.run(&seen, f.addr, "wrong", 10);  // accept_upgrade says no: 403 with a JSON body
    EXPECT_FALSE(seen.opened);
    EXPECT_TRUE(seen.refused);
    EXPECT_EQ(seen.status.load(), 403);
    EXPECT_EQ(seen.code, "forbidden");
    EXPECT_EQ(seen.message, "upgrade refused");
    EXPECT_FALSE(seen.closed);
}

TEST(WsClient, ReportsConnectFailureAndTimeout) {
    ws_fixture f;
    // Nothing listens on a port we bound and closed.
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    auto any = *address::parse("127.0.0.1:0");
    ASSERT_EQ(::bind(fd, any.sa(), any.len()), 0);
    auto dead = *local_address(fd);
    ::close(fd);
    client_seen seen;
    f.run(&seen, dead, "t0ken", 10);
    EXPECT_TRUE(seen.refused);
    EXPECT_EQ(seen.status.load(), 0);
    EXPECT_EQ(seen.err_code.load(), int(errc::io));

    // A listener that never answers the upgrade: the handshake timeout fires.
    int lfd = ::socket(AF_INET, SOCK_STREAM, 0);
    ASSERT_EQ(::bind(lfd, any.sa(), any.len()), 0);
    ASSERT_EQ(::listen(lfd, 4), 0);
    auto silent = *local_address(lfd);
    client_seen slow;
    run_on(*f.cli, 0, [&](shard& s) {
        ws_client_options o;
        o.host = "localhost";
        o.handshake_timeout = milliseconds(200);
        ASSERT_TRUE(s.connect(silent, std::make_unique<test_client_ws>(s, o, *f.rng, &slow, 10)));
    });
    ASSERT_TRUE(eventually([&] { return slow.done.load(); }, 5s));
    EXPECT_TRUE(slow.refused);
    EXPECT_EQ(slow.err_code.load(), int(errc::timeout));
    ::close(lfd);
}

}  // namespace
}  // namespace ferry::tunnel
