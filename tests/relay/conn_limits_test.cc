// conn_limits: the process-wide connection cap and the per-address cap (no sockets).
#include "relay/conn_limits.hh"

#include <gtest/gtest.h>

#include <atomic>
#include <barrier>
#include <thread>
#include <vector>

namespace ferry::relay {
namespace {

using v = conn_limits::verdict;

reactor::address at(std::string_view s) { return *reactor::address::parse(s); }

TEST(ConnLimits, PerAddressCap) {
    conn_limits l(0, 2);
    conn_limits::slot a, b, c, d;
    EXPECT_EQ(l.admit(a, at("10.0.0.1:1000")), v::ok);
    EXPECT_EQ(l.admit(b, at("10.0.0.1:1001")), v::ok);
    EXPECT_EQ(l.admit(c, at("10.0.0.1:1002")), v::over_ip);
    EXPECT_FALSE(c.counted());
    EXPECT_EQ(l.admit(d, at("10.0.0.2:1000")), v::ok);  // another address
    EXPECT_EQ(l.from(at("10.0.0.1:1")), 2u);
    EXPECT_EQ(l.total(), 3u);
    a.release();
    EXPECT_EQ(l.admit(c, at("10.0.0.1:1002")), v::ok);
    // IPv6: one /64 is one client.
    conn_limits l6(0, 1);
    conn_limits::slot x, y, z;
    EXPECT_EQ(l6.admit(x, at("[2001:db8:1:2::1]:1")), v::ok);
    EXPECT_EQ(l6.admit(y, at("[2001:db8:1:2::ffff]:1")), v::over_ip);
    EXPECT_EQ(l6.admit(z, at("[2001:db8:1:3::1]:1")), v::ok);
}

TEST(ConnLimits, TotalCapAndRoomMade) {
    conn_limits l(2, 0);
    conn_limits::slot a, b, c;
    EXPECT_EQ(l.admit(a, at("10.0.0.1:1")), v::ok);
    EXPECT_EQ(l.admit(b, at("10.0.0.2:1")), v::ok);
    EXPECT_EQ(l.admit(c, at("10.0.0.3:1")), v::over_total);
    EXPECT_EQ(l.total(), 2u);
    // The caller evicted one, whose count comes back later: admitted over the cap meanwhile.
    EXPECT_EQ(l.admit(c, at("10.0.0.3:1"), true), v::ok);
    EXPECT_EQ(l.total(), 3u);
    a.release();
    EXPECT_EQ(l.total(), 2u);
    // room_made does not lift the per-address cap.
    conn_limits both(1, 1);
    conn_limits::slot p, q;
    EXPECT_EQ(both.admit(p, at("10.0.0.1:1")), v::ok);
    EXPECT_EQ(both.admit(q, at("10.0.0.1:2"), true), v::over_ip);
    // A trusted proxy is not counted per address (it speaks for many clients).
    conn_limits proxied(0, 1);
    conn_limits::slot m, n;
    EXPECT_EQ(proxied.admit(m, at("10.9.9.9:1"), false, false), v::ok);
    EXPECT_EQ(proxied.admit(n, at("10.9.9.9:2"), false, false), v::ok);
    EXPECT_EQ(proxied.from(at("10.9.9.9:3")), 0u);
    EXPECT_EQ(proxied.total(), 2u);
}

TEST(ConnLimits, SlotsMoveAndReleaseOnce) {
    conn_limits l(0, 5);
    {
        conn_limits::slot a;
        ASSERT_EQ(l.admit(a, at("10.0.0.1:1")), v::ok);
        conn_limits::slot b(std::move(a));  // a hand-over moves the count
        EXPECT_FALSE(a.counted());
        EXPECT_TRUE(b.counted());
        EXPECT_EQ(l.total(), 1u);
        conn_limits::slot c;
        ASSERT_EQ(l.admit(c, at("10.0.0.1:2")), v::ok);
        c = std::move(b);  // c's own count goes back, b's moves in
        EXPECT_EQ(l.total(), 1u);
        EXPECT_EQ(l.from(at("10.0.0.1:9")), 1u);
        c.release();
        c.release();
        EXPECT_EQ(l.total(), 0u);
    }
    EXPECT_EQ(l.total(), 0u);
    EXPECT_EQ(l.from(at("10.0.0.1:9")), 0u);
}

TEST(ConnLimits, ExactAcrossThreads) {
    conn_limits l(1000, 10);
    std::vector<std::thread> ts;
    std::atomic<int> ok{0};
    std::barrier all_admitted(8);
    for (int t = 0; t < 8; ++t) {
        ts.emplace_back([&] {
            std::vector<conn_limits::slot> mine(50);
            for (auto& s : mine)
                if (l.admit(s, at("192.0.2.1:1")) == v::ok) ++ok;
            all_admitted.arrive_and_wait();  // nobody releases before everyone tried
        });
    }
    for (auto& t : ts) t.join();
    EXPECT_EQ(ok.load(), 10);  // all slots gone again with the threads' vectors
    EXPECT_EQ(l.total(), 0u);
}

}  // namespace
}  // namespace ferry::relay
