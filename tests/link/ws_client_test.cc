// The WebSocket client of src/link: the relay's refusal answers, and the client on the reactor
// against our WebSocket server over loopback.
#include <vector>

#include "../reactor/helpers.hh"
#include "link/ws_client.hh"
#include "link/ws_server.hh"

namespace ferry::link {
namespace {

using namespace ferry::reactor;
using namespace ferry::reactor::testing;
using std::chrono::milliseconds;

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
}  // namespace ferry::link
