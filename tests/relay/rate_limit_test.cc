// Token buckets for the per-user request rate.
#include "relay/rate_limit.hh"

#include <gtest/gtest.h>

namespace ferry::relay {
namespace {

TEST(RateLimiter, BurstThenRefusalWithRetryAfter) {
    rate_limiter r(100, 60);  // 100 per minute: one token every 0.6 s
    for (int i = 0; i < 100; ++i) {
        auto d = r.take("alice", 10.0);
        ASSERT_TRUE(d.allowed) << i;
        EXPECT_EQ(d.limit, 100u);
        EXPECT_EQ(d.remaining, unsigned(99 - i));
    }
    auto d = r.take("alice", 10.0);
    EXPECT_FALSE(d.allowed);
    EXPECT_EQ(d.remaining, 0u);
    EXPECT_EQ(d.retry_after_s, 1u);  // 0.6 s, rounded up
    EXPECT_EQ(d.reset_s, 60u);
    // Another key has its own bucket.
    EXPECT_TRUE(r.take("bob", 10.0).allowed);
    // One token back after 0.6 s.
    EXPECT_TRUE(r.take("alice", 10.61).allowed);
    EXPECT_FALSE(r.take("alice", 10.62).allowed);
}

TEST(RateLimiter, RefillsToCapacityNotBeyond) {
    rate_limiter r(10, 10);  // 1 per second
    for (int i = 0; i < 10; ++i) ASSERT_TRUE(r.take("k", 0).allowed);
    EXPECT_FALSE(r.take("k", 0).allowed);
    auto d = r.take("k", 1000);  // long idle: full again, not 1000 tokens
    EXPECT_TRUE(d.allowed);
    EXPECT_EQ(d.remaining, 9u);
    int ok = 0;
    while (r.take("k", 1000).allowed) ++ok;
    EXPECT_EQ(ok, 9);
}

TEST(RateLimiter, ClockGoingBackDoesNotAddTokens) {
    rate_limiter r(2, 60);
    EXPECT_TRUE(r.take("k", 100).allowed);
    EXPECT_TRUE(r.take("k", 100).allowed);
    EXPECT_FALSE(r.take("k", 50).allowed);
}

TEST(RateLimiter, DisabledPassesEverything) {
    rate_limiter r(0, 60);
    for (int i = 0; i < 1000; ++i) ASSERT_TRUE(r.take("k", 0).allowed);
    EXPECT_EQ(r.keys(), 0u);
}

TEST(RateLimiter, TableIsBoundedAndSweepsFullBuckets) {
    rate_limiter r(5, 5, 3);  // 1 per second, at most 3 keys
    EXPECT_TRUE(r.take("a", 0).allowed);
    EXPECT_TRUE(r.take("b", 0).allowed);
    EXPECT_TRUE(r.take("c", 0).allowed);
    EXPECT_EQ(r.keys(), 3u);
    // All three are still refilling: a fourth key is refused rather than growing the table.
    EXPECT_FALSE(r.take("d", 0.5).allowed);
    EXPECT_EQ(r.keys(), 3u);
    // Once they are full again they are swept and "d" fits.
    EXPECT_TRUE(r.take("d", 2.0).allowed);
    EXPECT_EQ(r.keys(), 1u);
}

}  // namespace
}  // namespace ferry::relay
