// Accept + echo over real loopback sockets: many clients, a 64 MiB transfer with a checksum,
// the -ENOBUFS path with a tiny buffer ring, ring pressure (copy fallback), IPv6, clean stop.
#include <thread>
#include <vector>

#include "helpers.hh"

namespace ferry::reactor::testing {
namespace {

TEST(Address, ParsesAndFormats) {
    auto a = address::parse("127.0.0.1:8080");
    ASSERT_TRUE(a);
    EXPECT_EQ(a->family(), AF_INET);
    EXPECT_EQ(a->port(), 8080);
    EXPECT_EQ(a->to_string(), "127.0.0.1:8080");

    auto b = address::parse("[::1]:0");
    ASSERT_TRUE(b);
    EXPECT_EQ(b->family(), AF_INET6);
    EXPECT_EQ(b->to_string(), "[::1]:0");

    auto any = address::parse(":443");
    ASSERT_TRUE(any);
    EXPECT_EQ(any->to_string(), "0.0.0.0:443");

    for (const char* bad : {"", "127.0.0.1", "127.0.0.1:", "127.0.0.1:65536", "::1:80", "[::1]80",
                            "localhost:80", "1.2.3.4:8x", "[::1:80"}) {
        EXPECT_FALSE(address::parse(bad)) << bad;
    }
}

TEST(Engine, ReportsRingFlagsAndRejectsBadConfig) {
    config cfg;
    cfg.shards = 1;
    cfg.buf_count = 3;  // not a power of two
    auto bad = engine::start(cfg);
    ASSERT_FALSE(bad);
    EXPECT_EQ(bad.code(), errc::invalid_argument);

    cfg.buf_count = 64;
    auto e = start_engine(cfg);
    ASSERT_TRUE(e);
    std::string flags = e->ring_flags();
    // The string is built from the bits the kernel accepted.
    unsigned bits = e->at(0).ring_flag_bits();
    EXPECT_EQ(flags.find("SINGLE_ISSUER") != std::string::npos, (bits & IORING_SETUP_SINGLE_ISSUER) != 0);
    EXPECT_EQ(flags.find("DEFER_TASKRUN") != std::string::npos, (bits & IORING_SETUP_DEFER_TASKRUN) != 0);
    // DEFER_TASKRUN is only valid together with SINGLE_ISSUER.
    if (bits & IORING_SETUP_DEFER_TASKRUN) {
        EXPECT_TRUE(bits & IORING_SETUP_SINGLE_ISSUER);
    }
    EXPECT_FALSE(flags.empty());
}

TEST(Echo, ManyConcurrentClientsAcrossShards) {
    counters cnt;
    config cfg;
    cfg.shards = 2;
    auto e = start_engine(cfg);
    ASSERT_TRUE(e);
    auto bound = e->listen(*address::parse("127.0.0.1:0"), [&](shard&) { return std::make_unique<echo>(&cnt); });
    ASSERT_TRUE(bound);
    ASSERT_NE(bound->port(), 0);

    constexpr int clients = 64, rounds = 20;
    std::atomic<int> good{0};
    std::vector<std::thread> ts;
    for (int i = 0; i < clients; ++i) {
        ts.emplace_back([&, i] {
            test_client c(*bound);
            if (!c.ok()) return;
            bool all = true;
            for (int r = 0; r < rounds && all; ++r) {
                std::string msg = "client " + std::to_string(i) + " round " + std::to_string(r) + " ";
                msg.append(static_cast<std::size_t>((i * 131 + r * 17) % 3000), char('a' + i % 26));
                all = c.send_all(msg) && c.recv_exact(msg.size()) == msg;
            }
            if (all) ++good;
        });
    }
    for (auto& t : ts) t.join();
    EXPECT_EQ(good.load(), clients);
    EXPECT_TRUE(eventually([&] { return cnt.closed.load() == clients; }));
    e->stop();
    e->wait();
    EXPECT_EQ(cnt.created.load(), clients);
    EXPECT_EQ(cnt.opened.load(), clients);
    EXPECT_EQ(cnt.destroyed.load(), clients);
    EXPECT_EQ(cnt.closed_peer.load(), clients);  // clients closed first
    EXPECT_EQ(cnt.wrong_thread.load(), 0);
    // SO_REUSEPORT spread the clients over both shards' listeners (P(all on one) = 2^-63).
    EXPECT_GT(e->at(0).stats().accepts, 0u);
    EXPECT_GT(e->at(1).stats().accepts, 0u);
    EXPECT_EQ(e->total_stats().accepts, unsigned(clients));
    EXPECT_EQ(e->total_stats().stale_cqes, 0u);
}

// Sends `total` bytes from a writer thread while reading the echo; checks every byte against
// the regenerated stream and compares FNV-1a checksums of both directions.
void transfer_and_check(const address& to, std::size_t total, std::uint64_t seed) {
    test_client c(to);
    ASSERT_TRUE(c.ok());
    std::uint64_t sent_sum = fnv_init;
    std::thread writer([&] {
        byte_stream gen(seed);
        std::vector<unsigned char> buf(256 * 1024);
        std::size_t left = total;
        while (left > 0) {
            std::size_t n = std::min(left, buf.size());
            gen.fill(buf.data(), n);
            sent_sum = fnv1a(sent_sum, buf.data(), n);
            if (!c.send_all(buf.data(), n)) return;
            left -= n;
        }
    });
    byte_stream expect(seed);
    std::vector<unsigned char> want(256 * 1024);
    std::uint64_t got_sum = fnv_init;
    std::size_t got = 0;
    bool same = true;
    while (got < total) {
        std::string chunk = c.recv_exact(std::min<std::size_t>(total - got, want.size()));
        if (chunk.empty()) break;
        expect.fill(want.data(), chunk.size());
        if (same && std::memcmp(want.data(), chunk.data(), chunk.size()) != 0) same = false;
        got_sum = fnv1a(got_sum, reinterpret_cast<const unsigned char*>(chunk.data()), chunk.size());
        got += chunk.size();
    }
    writer.join();
    EXPECT_EQ(got, total);
    EXPECT_TRUE(same);
    EXPECT_EQ(got_sum, sent_sum);
}

TEST(Echo, LargeTransfer64MiBWithChecksum) {
    counters cnt;
    config cfg;
    cfg.shards = 1;
    auto e = start_engine(cfg);
    ASSERT_TRUE(e);
    auto bound = e->listen(*address::parse("127.0.0.1:0"), [&](shard&) { return std::make_unique<echo>(&cnt); });
    ASSERT_TRUE(bound);
    transfer_and_check(*bound, 64u << 20, 42);
    e->stop();
    e->wait();
    shard_stats st = e->total_stats();
    EXPECT_EQ(st.recv_bytes, 64u << 20);
    EXPECT_EQ(st.send_bytes, 64u << 20);
    EXPECT_EQ(st.stale_cqes, 0u);
    EXPECT_EQ(cnt.destroyed.load(), 1);
    // Scatter-gather: fewer sends than receives (several ring buffers per sendmsg).
    EXPECT_LT(st.sends, st.recv_cqes);
}

TEST(Echo, TinyBufferRingHitsEnobufsAndRecovers) {
    counters cnt;
    config cfg;
    cfg.shards = 1;
    cfg.buf_count = 2;  // two 64-byte buffers: every burst empties the ring
    cfg.buf_size = 64;
    auto e = start_engine(cfg);
    ASSERT_TRUE(e);
    auto bound = e->listen(*address::parse("127.0.0.1:0"), [&](shard&) { return std::make_unique<echo>(&cnt); });
    ASSERT_TRUE(bound);
    transfer_and_check(*bound, 1u << 20, 7);
    e->stop();
    e->wait();
    shard_stats st = e->total_stats();
    EXPECT_GT(st.enobufs, 0u);                 // the ring ran dry ...
    EXPECT_GE(st.recv_arms, st.enobufs + 1);   // ... and each time the recv was re-armed
    EXPECT_EQ(st.recv_bytes, 1u << 20);
    EXPECT_EQ(st.stale_cqes, 0u);
}

// A handler that keeps the first `hold_until` bytes (every slice as delivered), then echoes
// them at once and everything after that as it comes.
class hoarder : public counted {
public:
    hoarder(counters* c, std::size_t hold_until, std::atomic<int>* ring_backed)
        : counted(c), hold_until_(hold_until), ring_backed_(ring_backed) {}
    void on_data(slice s) override {
        if (owner().buffers().is_ring_owner(s.get_owner())) ++*ring_backed_;
        if (flushed_) {
            (void)send(std::move(s));
            return;
        }
        got_ += s.size();
        held_.append(std::move(s));
        if (got_ >= hold_until_) {
            (void)send(std::move(held_));
            held_.clear();
            flushed_ = true;
        }
    }
    void on_close(const error& why) override {
        held_.clear();
        counted::on_close(why);
    }

private:
    std::size_t hold_until_;
    std::size_t got_ = 0;
    bool flushed_ = false;
    buffer_chain held_;
    std::atomic<int>* ring_backed_;
};

TEST(Echo, RingPressureFallsBackToCopies) {
    counters cnt;
    std::atomic<int> ring_backed{0};
    config cfg;
    cfg.shards = 1;
    cfg.buf_count = 16;
    cfg.buf_size = 1024;  // 16 KiB of ring; the handler holds 64 KiB before echoing
    auto e = start_engine(cfg);
    ASSERT_TRUE(e);
    constexpr std::size_t hold = 64 * 1024;
    auto bound = e->listen(*address::parse("127.0.0.1:0"),
                           [&](shard&) { return std::make_unique<hoarder>(&cnt, hold, &ring_backed); });
    ASSERT_TRUE(bound);
    transfer_and_check(*bound, 4 * hold, 99);
    e->stop();
    e->wait();
    shard_stats st = e->total_stats();
    EXPECT_GT(ring_backed.load(), 0);  // zero-copy while the ring had room
    EXPECT_GT(st.recv_copies, 0u);     // copies once handlers held 75 % of it
    EXPECT_EQ(e->at(0).buffers().held(), 0u);
}

TEST(Echo, Ipv6Listener) {
    int probe = ::socket(AF_INET6, SOCK_STREAM, 0);
    sockaddr_in6 lo{};
    lo.sin6_family = AF_INET6;
    lo.sin6_addr = in6addr_loopback;
    bool have_v6 = probe >= 0 && ::bind(probe, reinterpret_cast<sockaddr*>(&lo), sizeof(lo)) == 0;
    if (probe >= 0) ::close(probe);
    if (!have_v6) GTEST_SKIP() << "no IPv6 loopback here";

    counters cnt;
    config cfg;
    cfg.shards = 2;
    auto e = start_engine(cfg);
    ASSERT_TRUE(e);
    auto bound = e->listen(*address::parse("[::1]:0"), [&](shard&) { return std::make_unique<echo>(&cnt); });
    ASSERT_TRUE(bound);
    EXPECT_EQ(bound->family(), AF_INET6);
    test_client c(*bound);
    ASSERT_TRUE(c.ok());
    ASSERT_TRUE(c.send_all("over v6"));
    EXPECT_EQ(c.recv_exact(7), "over v6");
}

TEST(Stop, CleanStopWithOpenConnectionsFromAnyThread) {
    counters cnt;
    config cfg;
    cfg.shards = 2;
    auto e = start_engine(cfg);
    ASSERT_TRUE(e);
    auto bound = e->listen(*address::parse("127.0.0.1:0"), [&](shard&) { return std::make_unique<echo>(&cnt); });
    ASSERT_TRUE(bound);
    std::vector<std::unique_ptr<test_client>> cs;
    for (int i = 0; i < 16; ++i) {
        cs.push_back(std::make_unique<test_client>(*bound));
        ASSERT_TRUE(cs.back()->send_all("x"));
        ASSERT_EQ(cs.back()->recv_exact(1), "x");
    }
    // Stop from a thread that is neither the test thread nor a shard.
    std::thread([&] { e->stop(); }).join();
    e->wait();
    EXPECT_EQ(cnt.opened.load(), 16);
    EXPECT_EQ(cnt.closed.load(), 16);
    EXPECT_EQ(cnt.closed_peer.load(), 16);  // errc::closed "reactor stopping"
    EXPECT_EQ(cnt.destroyed.load(), 16);
    for (auto& c : cs) EXPECT_TRUE(c->wait_closed(2s));
    // The listening sockets are gone too.
    test_client late(*bound);
    EXPECT_FALSE(late.ok());
}

class stopper : public counted {
public:
    using counted::counted;
    void on_data(slice s) override {
        if (as_string(s.view()) == "STOP") owner().owner_engine().stop();
    }
};

TEST(Stop, StopFromInsideAHandler) {
    counters cnt;
    config cfg;
    cfg.shards = 2;
    auto e = start_engine(cfg);
    ASSERT_TRUE(e);
    auto bound = e->listen(*address::parse("127.0.0.1:0"), [&](shard&) { return std::make_unique<stopper>(&cnt); });
    ASSERT_TRUE(bound);
    test_client c(*bound);
    ASSERT_TRUE(c.send_all("STOP"));
    e->wait();  // returns because the handler stopped the engine
    EXPECT_TRUE(e->stop_requested());
    EXPECT_EQ(cnt.destroyed.load(), 1);
    EXPECT_TRUE(c.wait_closed(2s));
}

}  // namespace
}  // namespace ferry::reactor::testing
