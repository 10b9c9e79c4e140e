// TLS on the reactor (link::tls_transform + reactor::connection's transform hook), over real
// loopback sockets: server handlers that never see ciphertext, an outbound TLS client on the
// reactor, hand-over of a TLS connection to another shard, close_notify both ways, corking of
// many small sends into few records, failures that close one connection only.
//
// The blocking test client is tls::session (sans-IO) driven over a plain socket.
#include <poll.h>

#include <thread>
#include <vector>

#include "../reactor/helpers.hh"
#include "link/tls_transform.hh"
#include "proto/tls/certgen.hh"

namespace ferry::link {
namespace {

using namespace ferry::reactor;
using namespace ferry::reactor::testing;

struct material {
    tls::certificate ca, leaf, other_ca, other_leaf;
};

const material& certs() {
    static const material m = [] {
        material x;
        tls::cert_options ca;
        ca.common_name = "test CA";  // issuer and subject names must differ from the leaves'
        ca.is_ca = true;
        ca.dns_names = {};
        ca.ip_addresses = {};
        auto now = std::chrono::system_clock::now();
        x.ca = *tls::generate_certificate(ca, now);
        ca.common_name = "another test CA";
        x.other_ca = *tls::generate_certificate(ca, now);
        tls::cert_options leaf;
        leaf.issuer_cert_pem = x.ca.cert_pem;
        leaf.issuer_key_pem = x.ca.key_pem;
        x.leaf = *tls::generate_certificate(leaf, now);
        leaf.issuer_cert_pem = x.other_ca.cert_pem;
        leaf.issuer_key_pem = x.other_ca.key_pem;
        x.other_leaf = *tls::generate_certificate(leaf, now);
        return x;
    }();
    return m;
}

std::shared_ptr<const tls::server_context> server_ctx(const tls::certificate& c) {
    tls::server_options o;
    o.cert_pem = c.cert_pem;
    o.key_pem = c.key_pem;
    auto r = tls::server_context::create(o);
    EXPECT_TRUE(r) << r.err().detail;
    return *r;
}

std::shared_ptr<const tls::client_context> client_ctx(const std::string& ca) {
    tls::client_options o;
    o.ca_pem = ca;
    auto r = tls::client_context::create(o);
    EXPECT_TRUE(r) << r.err().detail;
    return *r;
}

// A blocking TLS client: a tls::session driven over a loopback socket by hand.
class tls_client {
public:
    tls_client(const address& a, std::shared_ptr<const tls::client_context> ctx, std::string_view name = "localhost")
        : tcp_(a), s_(tls::session::client(std::move(ctx), name).value()) {}

    bool handshake(std::chrono::milliseconds timeout = 10s) {
        if (!tcp_.ok() || !s_.start(out_) || !flush()) return false;
        auto deadline = std::chrono::steady_clock::now() + timeout;
        while (!s_.handshake_done() && st_ && !eof_) {
            if (!pump(deadline)) break;
        }
        return s_.handshake_done();
    }
    bool send(std::string_view plain) { return s_.write(as_bytes(plain), out_) && flush(); }
    bool close_notify() { return s_.close_notify(out_) && flush(); }
    // Plaintext until `n` bytes arrived, EOF, an error or the timeout.
    std::string recv_exact(std::size_t n, std::chrono::milliseconds timeout = 20s) {
        auto deadline = std::chrono::steady_clock::now() + timeout;
        while (plain_.size() < n && st_ && !eof_ && !s_.peer_closed()) {
            if (!pump(deadline)) break;
        }
        std::string r = plain_.substr(0, std::min(n, plain_.size()));
        plain_.erase(0, r.size());
        return r;
    }
    // Reads until TCP EOF (or the timeout); true if it came.
    bool wait_eof(std::chrono::milliseconds timeout = 10s) {
        auto deadline = std::chrono::steady_clock::now() + timeout;
        while (!eof_ && st_) {
            if (!pump(deadline)) break;
        }
        return eof_ || !st_;
    }
    const tls::session& session() const { return s_; }
    const status& st() const { return st_; }
    std::size_t wire_bytes_in() const { return wire_in_; }
    test_client& tcp() { return tcp_; }

private:
    bool flush() {
        std::string w = out_.to_string();
        out_.clear();
        return w.empty() || tcp_.send_all(w);
    }
    bool pump(std::chrono::steady_clock::time_point deadline) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0) return false;
        pollfd p{tcp_.fd(), POLLIN, 0};
        if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) return false;
        char buf[65536];
        ssize_t r = ::recv(tcp_.fd(), buf, sizeof buf, 0);
        if (r <= 0) {
            eof_ = true;
            return false;
        }
        wire_in_ += static_cast<std::size_t>(r);
        bytes in(reinterpret_cast<const std::byte*>(buf), static_cast<std::size_t>(r));
        for (;;) {
            auto ev = s_.next(in, out_);
            if (!ev) {
                st_ = fail(ev.err());
                break;
            }
            if (ev->type == tls::event_type::need_more) break;
            if (ev->type == tls::event_type::data) plain_.append(as_string(ev->data.view()));
        }
        flush();
        return true;
    }

    test_client tcp_;
    tls::session s_;
    buffer_chain out_;
    std::string plain_;
    std::size_t wire_in_ = 0;
    bool eof_ = false;
    status st_{};
};

// Records what the handler saw; shared with the test thread.
struct seen {
    std::atomic<int> opened{0}, data_events{0}, read_eof{0}, closed{0};
    std::atomic<int> close_code{-1};
    std::atomic<bool> saw_tls{false};
    std::string detail;  // written before `closed` is incremented
};

// Echo that also answers two commands: "BYE\n" half-closes (close_notify, then FIN) after the
// echo, "MANY\n" answers with 1000 separate 10-byte sends in one event.
class tls_echo : public connection {
public:
    explicit tls_echo(seen* s) : s_(s) {}
    void on_open() override {
        ++s_->opened;
        s_->saw_tls = tls_of(*this) != nullptr;
    }
    void on_data(slice d) override {
        ++s_->data_events;
        std::string_view v = as_string(d.view());
        if (v == "MANY\n") {
            for (int i = 0; i < 1000; ++i) (void)send_copy(as_bytes("0123456789"));
            return;
        }
        bool bye = v.size() >= 4 && v.substr(v.size() - 4) == "BYE\n";
        (void)send(std::move(d));
        if (bye) shutdown_write();
    }
    void on_read_eof() override {
        ++s_->read_eof;
        close();
    }
    void on_output_high() override { pause_reading(); }
    void on_output_low() override { resume_reading(); }
    void on_close(const error& why) override {
        s_->close_code = static_cast<int>(why.code);
        s_->detail = why.detail;
        ++s_->closed;
    }

private:
    seen* s_;
};

struct server {
    std::unique_ptr<engine> e;
    address addr;
};

server start_tls_echo(seen* s, std::shared_ptr<const tls::server_context> ctx, unsigned shards = 2) {
    config cfg;
    cfg.shards = shards;
    server srv;
    srv.e = start_engine(cfg);
    auto bound = srv.e->listen(*address::parse("127.0.0.1:0"),
                               with_tls(std::move(ctx), [s](shard&) { return std::make_unique<tls_echo>(s); }));
    EXPECT_TRUE(bound);
    srv.addr = *bound;
    return srv;
}

TEST(TlsReactor, EchoManySizes) {
    seen s;
    auto srv = start_tls_echo(&s, server_ctx(certs().leaf));
    tls_client c(srv.addr, client_ctx(certs().ca.cert_pem));
    ASSERT_TRUE(c.handshake()) << c.st().err().detail;
    EXPECT_EQ(c.session().alpn(), "http/1.1");
    for (std::size_t n : {std::size_t(1), std::size_t(100), std::size_t(16384), std::size_t(16385),
                          std::size_t(200000)}) {
        std::string msg(n, '\0');
        byte_stream(n).fill(reinterpret_cast<unsigned char*>(msg.data()), n);
        ASSERT_TRUE(c.send(msg));
        ASSERT_TRUE(c.recv_exact(n) == msg) << n;
    }
    EXPECT_TRUE(s.saw_tls);
    srv.e->stop();
    srv.e->wait();
}

TEST(TlsReactor, ManySmallSendsAreCorkedIntoFewRecords) {
    seen s;
    auto srv = start_tls_echo(&s, server_ctx(certs().leaf));
    tls_client c(srv.addr, client_ctx(certs().ca.cert_pem));
    ASSERT_TRUE(c.handshake());
    ASSERT_TRUE(c.send("x"));  // a round trip, so the session ticket has arrived too
    ASSERT_EQ(c.recv_exact(1), "x");
    std::size_t before = c.wire_bytes_in();
    ASSERT_TRUE(c.send("MANY\n"));
    std::string r = c.recv_exact(10000);
    ASSERT_EQ(r.size(), 10000u);
    // One record per send would add 22 bytes each (22,000); corked, 10,000 bytes fit in one
    // record (plus room for a second if the loop split them).
    EXPECT_LE(c.wire_bytes_in() - before, 10000u + 2 * 22u);
}

TEST(TlsReactor, CloseNotifyBothWays) {
    seen s;
    auto srv = start_tls_echo(&s, server_ctx(certs().leaf));
    {
        // Server half-closes after the echo: data, close_notify, then FIN.
        tls_client c(srv.addr, client_ctx(certs().ca.cert_pem));
        ASSERT_TRUE(c.handshake());
        ASSERT_TRUE(c.send("last words BYE\n"));
        EXPECT_EQ(c.recv_exact(15), "last words BYE\n");
        EXPECT_TRUE(c.wait_eof());
        EXPECT_TRUE(c.session().peer_closed()) << "close_notify before FIN";
        EXPECT_TRUE(c.st());
    }
    // The first connection's handler sees its EOF when the client socket closes; wait for it
    // to finish so its on_read_eof cannot land in the count below.
    ASSERT_TRUE(eventually([&] { return s.closed.load() == 1; }));
    {
        // Client sends close_notify: the handler gets on_read_eof although TCP is still open.
        int eofs = s.read_eof;
        tls_client c(srv.addr, client_ctx(certs().ca.cert_pem));
        ASSERT_TRUE(c.handshake());
        ASSERT_TRUE(c.send("hi"));
        EXPECT_EQ(c.recv_exact(2), "hi");
        ASSERT_TRUE(c.close_notify());
        EXPECT_TRUE(eventually([&] { return s.read_eof.load() == eofs + 1; }));
        EXPECT_TRUE(c.wait_eof());  // the handler closed: our close_notify came back, then FIN
        EXPECT_TRUE(c.session().peer_closed());
    }
    srv.e->stop();
    srv.e->wait();
}

TEST(TlsReactor, FailedHandshakeClosesOnlyThatConnection) {
    seen s;
    auto srv = start_tls_echo(&s, server_ctx(certs().other_leaf));
    tls_client good(srv.addr, client_ctx(certs().other_ca.cert_pem));
    ASSERT_TRUE(good.handshake());
    {
        tls_client bad(srv.addr, client_ctx(certs().ca.cert_pem));
        EXPECT_FALSE(bad.handshake());
        EXPECT_EQ(bad.st().code(), errc::tls_verify);
        EXPECT_TRUE(bad.wait_eof());
    }
    // The server's handler saw the refusal as a TLS error, with the client's alert named.
    ASSERT_TRUE(eventually([&] { return s.closed.load() == 1; }));
    EXPECT_EQ(s.close_code.load(), static_cast<int>(errc::tls_handshake));
    EXPECT_NE(s.detail.find("peer sent alert unknown_ca"), std::string::npos) << s.detail;
    // Plain bytes and a tampered record: each closes its own connection.
    {
        test_client raw(srv.addr);
        ASSERT_TRUE(raw.send_all("GET / HTTP/1.1\r\n\r\n"));
        std::string resp = raw.recv_exact(12);
        EXPECT_EQ(resp, "HTTP/1.1 400");
        EXPECT_TRUE(raw.wait_closed());
    }
    {
        tls_client t(srv.addr, client_ctx(certs().other_ca.cert_pem));
        ASSERT_TRUE(t.handshake());
        ASSERT_TRUE(t.send("ok"));
        EXPECT_EQ(t.recv_exact(2), "ok");
        // A record with a flipped bit (made by hand: header + garbage of a plausible size).
        std::string junk = std::string("\x17\x03\x03\x00\x20", 5) + std::string(32, 'x');
        ASSERT_TRUE(t.tcp().send_all(junk));
        EXPECT_TRUE(t.wait_eof());
        ASSERT_TRUE(eventually([&] { return s.close_code.load() == static_cast<int>(errc::tls_protocol); }));
    }
    ASSERT_TRUE(good.send("still fine"));
    EXPECT_EQ(good.recv_exact(10), "still fine");
    srv.e->stop();
    srv.e->wait();
}

// ---- outbound client on the reactor --------------------------------------------------------------

struct client_result {
    std::atomic<bool> done{false};
    std::atomic<int> code{-1};
    std::string detail, alpn, received;
};

// Connects, sends `msg`, reads it back, closes.
class tls_caller : public connection {
public:
    tls_caller(client_result* r, std::string msg) : r_(r), msg_(std::move(msg)) {}
    void on_open() override { (void)send_copy(as_bytes(msg_)); }  // queued until the handshake is done
    void on_data(slice d) override {
        r_->received.append(as_string(d.view()));
        if (r_->received.size() >= msg_.size()) {
            if (const tls::session* t = tls_of(*this)) r_->alpn = t->alpn();
            close();
        }
    }
    void on_close(const error& why) override {
        r_->code = static_cast<int>(why.code);
        r_->detail = why.detail;
        r_->done = true;
    }

private:
    client_result* r_;
    std::string msg_;
};

void call(engine& e, const address& to, std::shared_ptr<const tls::client_context> ctx, client_result* r,
          std::string msg) {
    run_on(e, 0, [&](shard& s) {
        auto c = std::make_unique<tls_caller>(r, msg);
        auto t = tls_transform::client(ctx, "localhost");
        ASSERT_TRUE(t);
        c->set_transform(std::move(*t));
        ASSERT_TRUE(s.connect(to, std::move(c)));
    });
    ASSERT_TRUE(eventually([&] { return r->done.load(); }, 20s));
}

TEST(TlsReactor, OutboundClientOnTheReactor) {
    seen s;
    auto srv = start_tls_echo(&s, server_ctx(certs().leaf));
    config cfg;
    cfg.shards = 1;
    auto cli = start_engine(cfg);
    std::string msg(100000, 'q');
    client_result ok;
    call(*cli, srv.addr, client_ctx(certs().ca.cert_pem), &ok, msg);
    EXPECT_EQ(ok.code.load(), static_cast<int>(errc::ok)) << ok.detail;
    EXPECT_TRUE(ok.received == msg);
    EXPECT_EQ(ok.alpn, "http/1.1");

    client_result refused;
    call(*cli, srv.addr, client_ctx(certs().other_ca.cert_pem), &refused, "x");
    EXPECT_EQ(refused.code.load(), static_cast<int>(errc::tls_verify));
    EXPECT_NE(refused.detail.find("unknown CA"), std::string::npos) << refused.detail;
    EXPECT_TRUE(refused.received.empty());
    cli->stop();
    cli->wait();
    srv.e->stop();
    srv.e->wait();
}

// Streams `total` bytes to a TLS echo and checks them as they come back, both ends on the
// reactor. Every 4 MiB received it stops reading for 30 ms, so the echo's output crosses its
// high watermark and the echo pauses its reading too: backpressure through TLS on both sides.
class tls_stream_check : public connection {
public:
    tls_stream_check(shard& s, std::size_t total, client_result* r)
        : total_(total), r_(r), tx_(7), rx_(7), nap_(s, [this] { resume_reading(); }) {}
    void on_open() override { produce(); }
    void on_output_low() override { produce(); }
    void on_data(slice d) override {
        std::string_view v = as_string(d.view());
        expect_.resize(v.size());
        rx_.fill(reinterpret_cast<unsigned char*>(expect_.data()), v.size());
        if (v != std::string_view(expect_)) bad_ = true;
        std::size_t before = got_;
        got_ += v.size();
        if (got_ / (4u << 20) != before / (4u << 20) && got_ < total_) {
            pause_reading();
            nap_.arm_after(30ms);
            ++naps_;
        }
        if (got_ >= total_) close();
    }
    void on_close(const error& why) override {
        nap_.cancel();
        r_->code = static_cast<int>(why.code);
        r_->detail = why.detail;
        r_->received = bad_ ? "corrupt" : std::to_string(got_) + " naps " + std::to_string(naps_);
        r_->done = true;
    }

private:
    void produce() {
        std::string chunk(64 * 1024, '\0');
        // Up to just over the watermark: on_output_high is then raised, on_output_low later.
        while (sent_ < total_ && output_pending() <= owner().cfg().output_high_watermark) {
            std::size_t n = std::min(chunk.size(), total_ - sent_);
            tx_.fill(reinterpret_cast<unsigned char*>(chunk.data()), n);
            (void)send_copy(as_bytes(std::string_view(chunk.data(), n)));
            sent_ += n;
        }
    }
    std::size_t total_, sent_ = 0, got_ = 0;
    client_result* r_;
    byte_stream tx_, rx_;
    timer nap_;
    std::string expect_;
    bool bad_ = false;
    int naps_ = 0;
};

TEST(TlsReactor, BulkBothWaysWithBackpressure) {
    seen s;
    auto srv = start_tls_echo(&s, server_ctx(certs().leaf), 1);
    config cfg;
    cfg.shards = 1;
    auto cli = start_engine(cfg);
    constexpr std::size_t total = 48u << 20;
    client_result r;
    auto ctx = client_ctx(certs().ca.cert_pem);
    run_on(*cli, 0, [&](shard& sh) {
        auto c = std::make_unique<tls_stream_check>(sh, total, &r);
        c->set_transform(tls_transform::client(ctx, "localhost").value());
        ASSERT_TRUE(sh.connect(srv.addr, std::move(c)));
    });
    ASSERT_TRUE(eventually([&] { return r.done.load(); }, 120s));
    EXPECT_EQ(r.code.load(), static_cast<int>(errc::ok)) << r.detail;
    EXPECT_EQ(r.received, std::to_string(total) + " naps 11");
    cli->stop();
    cli->wait();
    srv.e->stop();
    srv.e->wait();
    // The echo's reading was paused at least once (its output crossed the watermark).
    EXPECT_GT(srv.e->total_stats().recv_arms, 1u);
}

// ---- hand-over ------------------------------------------------------------------------------------

// Reads a first line, then moves the connection (TLS session included) to the next shard,
// where an echo handler takes over. Replies say which shard answered.
class tls_router : public connection {
public:
    explicit tls_router(std::atomic<int>* moved) : moved_(moved) {}
    void on_data(slice d) override {
        read_.append(std::move(d));
        if (read_.to_string().find('\n') == std::string::npos || started_) return;
        started_ = true;
        unsigned next = (owner().id() + 1) % owner().count();
        std::atomic<int>* m = moved_;
        status st = hand_over(next, std::move(read_), [m](shard& s) {
            ++*m;
            return std::make_unique<where_echo>(s.id());
        });
        EXPECT_TRUE(st);
    }
    class where_echo : public connection {
    public:
        explicit where_echo(unsigned id) : id_(id) {}
        void on_open() override { (void)send_copy(as_bytes("on " + std::to_string(id_) + "\n")); }
        void on_data(slice d) override { (void)send(std::move(d)); }

    private:
        unsigned id_;
    };

private:
    std::atomic<int>* moved_;
    buffer_chain read_;
    bool started_ = false;
};

TEST(TlsReactor, HandOverMovesTheTlsSession) {
    config cfg;
    cfg.shards = 2;
    auto e = start_engine(cfg);
    std::atomic<int> moved{0};
    auto bound = e->listen(*address::parse("127.0.0.1:0"),
                           with_tls(server_ctx(certs().leaf), [&](shard&) { return std::make_unique<tls_router>(&moved); }));
    ASSERT_TRUE(bound);
    for (int i = 0; i < 8; ++i) {
        tls_client c(*bound, client_ctx(certs().ca.cert_pem));
        ASSERT_TRUE(c.handshake());
        // The head line, and 300 KB right behind it: some is decrypted on the first shard
        // while the hand-over is under way and must reach the new handler in order.
        std::string head = "HELLO " + std::to_string(i) + "\n";
        std::string body(300000, '\0');
        byte_stream(static_cast<std::uint64_t>(i) + 1).fill(reinterpret_cast<unsigned char*>(body.data()), body.size());
        ASSERT_TRUE(c.send(head + body));
        std::string where = c.recv_exact(5);  // "on N\n"
        EXPECT_EQ(where.substr(0, 3), "on ");
        std::string echoed = c.recv_exact(head.size() + body.size(), 30s);
        EXPECT_TRUE(echoed == head + body) << "connection " << i << " got " << echoed.size();
        // Still the same TLS session after the move: more data both ways.
        ASSERT_TRUE(c.send("after"));
        EXPECT_EQ(c.recv_exact(5), "after");
    }
    EXPECT_EQ(moved.load(), 8);
    e->stop();
    e->wait();
}

}  // namespace
}  // namespace ferry::link
