// The relay's name registry: claims, leases, take-over by the same owner, the agent limit.
#include "relay/registry.hh"

#include <gtest/gtest.h>

#include <thread>
#include <vector>

namespace ferry::relay {
namespace {

using namespace std::chrono_literals;
using kind = name_state::kind;
using cs = registry::claim_status;

const steady::time_point t0 = steady::time_point(1000s);

TEST(Registry, ClaimAndCleanRelease) {
    registry r;
    auto c = r.claim("llm", "alice", 1, 7, t0);
    ASSERT_EQ(c.status, cs::ok);
    EXPECT_EQ(c.now.state, kind::online);
    EXPECT_EQ(c.now.shard, 1u);
    EXPECT_EQ(c.now.session, 7u);
    EXPECT_EQ(c.replaced, 0u);
    EXPECT_EQ(r.get("llm", t0).state, kind::online);
    auto s = r.release("llm", 7, true, 60s, t0);
    EXPECT_EQ(s.state, kind::free);
    EXPECT_GT(s.version, c.now.version);
    EXPECT_EQ(r.get("llm", t0).state, kind::free);
    // Free again: anyone may take it.
    EXPECT_EQ(r.claim("llm", "bob", 0, 8, t0).status, cs::ok);
}

TEST(Registry, InvalidNamesAreRefused) {
    registry r;
    for (const char* n : {"", "-a", "a-", "UPPER", "a.b", "a_b",
                          "0123456789012345678901234567890123456789012345678901234567890123"}) {
        EXPECT_EQ(r.claim(n, "alice", 0, 1, t0).status, cs::invalid) << n;
    }
    EXPECT_EQ(r.claim("a-1", "alice", 0, 1, t0).status, cs::ok);
}

TEST(Registry, OnlineNameIsNotGivenToAnotherUser) {
    registry r;
    ASSERT_EQ(r.claim("llm", "alice", 0, 1, t0).status, cs::ok);
    EXPECT_EQ(r.claim("llm", "bob", 1, 2, t0).status, cs::taken);
    EXPECT_EQ(r.claim("llm", "alice", 0, 1, t0).status, cs::duplicate);
    EXPECT_EQ(r.get("llm", t0).session, 1u);
}

TEST(Registry, UncleanDropLeasesTheNameToItsOwner) {
    registry r;
    ASSERT_EQ(r.claim("llm", "alice", 0, 1, t0).status, cs::ok);
    auto s = r.release("llm", 1, false, 60s, t0);
    EXPECT_EQ(s.state, kind::leased);
    EXPECT_EQ(s.until, t0 + 60s);
    EXPECT_EQ(s.owner, "alice");
    // Nobody else during the lease...
    EXPECT_EQ(r.claim("llm", "bob", 0, 2, t0 + 59s).status, cs::taken);
    // ... the owner at once ...
    auto c = r.claim("llm", "alice", 1, 3, t0 + 10s);
    EXPECT_EQ(c.status, cs::ok);
    EXPECT_EQ(c.replaced, 0u);  // the old session was already gone
    EXPECT_EQ(c.now.shard, 1u);
}

TEST(Registry, ExpiredLeaseIsFree) {
    registry r;
    ASSERT_EQ(r.claim("llm", "alice", 0, 1, t0).status, cs::ok);
    r.release("llm", 1, false, 60s, t0);
    EXPECT_EQ(r.get("llm", t0 + 60s).state, kind::free);
    EXPECT_EQ(r.claim("llm", "bob", 0, 2, t0 + 61s).status, cs::ok);
}

TEST(Registry, SameOwnerTakesOverAStaleSession) {
    registry r;
    ASSERT_EQ(r.claim("llm", "alice", 0, 1, t0).status, cs::ok);
    auto c = r.claim("llm", "alice", 1, 2, t0 + 1s);
    ASSERT_EQ(c.status, cs::ok);
    EXPECT_EQ(c.replaced, 1u);
    EXPECT_EQ(c.replaced_shard, 0u);
    // The stale session's late release changes nothing (version 0: not its name any more).
    auto s = r.release("llm", 1, false, 60s, t0 + 2s);
    EXPECT_EQ(s.version, 0u);
    auto now = r.get("llm", t0 + 2s);
    EXPECT_EQ(now.state, kind::online);
    EXPECT_EQ(now.session, 2u);
}

TEST(Registry, VersionsIncreaseAcrossNames) {
    registry r;
    auto a = r.claim("a", "u", 0, 1, t0);
    auto b = r.claim("b", "u", 0, 1, t0);
    auto a2 = r.release("a", 1, false, 5s, t0);
    EXPECT_LT(a.now.version, b.now.version);
    EXPECT_LT(b.now.version, a2.version);
}

TEST(Registry, AgentLimitPerUser) {
    registry r;
    EXPECT_TRUE(r.add_agent("alice", 3));
    EXPECT_TRUE(r.add_agent("alice", 3));
    EXPECT_TRUE(r.add_agent("alice", 3));
    EXPECT_FALSE(r.add_agent("alice", 3));
    EXPECT_TRUE(r.add_agent("bob", 3));
    EXPECT_EQ(r.agents("alice"), 3u);
    r.remove_agent("alice");
    EXPECT_TRUE(r.add_agent("alice", 3));
    EXPECT_FALSE(r.add_agent("carol", 0));
    EXPECT_EQ(r.agents("carol"), 0u);
}

TEST(Registry, ConcurrentClaimsGiveTheNameToExactlyOneUser) {
    registry r;
    std::vector<std::thread> ts;
    std::atomic<int> won{0};
    for (int i = 0; i < 8; ++i) {
        ts.emplace_back([&, i] {
            if (r.claim("hot", "user" + std::to_string(i), 0, r.next_session(), t0).status == cs::ok) ++won;
        });
    }
    for (auto& t : ts) t.join();
    EXPECT_EQ(won.load(), 1);
}

// Issue 11 item 4: registering, dropping the connection and registering again collected names
// without bound (every drop leases them). The cap counts leased names, and ended leases go.
TEST(Registry, NamesPerUserCountLeasedOnes) {
    registry r(4);
    for (int i = 0; i < 4; ++i) ASSERT_EQ(r.claim("n" + std::to_string(i), "hoarder", 0, 1, t0).status, cs::ok);
    EXPECT_EQ(r.claim("n4", "hoarder", 0, 1, t0).status, cs::limit);
    EXPECT_EQ(r.names("hoarder"), 4u);
    // The connection drops: the names are leased, still counted.
    for (int i = 0; i < 4; ++i) EXPECT_EQ(r.release("n" + std::to_string(i), 1, false, 60s, t0).state, kind::leased);
    EXPECT_EQ(r.names("hoarder"), 4u);
    EXPECT_EQ(r.claim("fresh", "hoarder", 0, 2, t0 + 1s).status, cs::limit);
    // Taking its own leased names back is allowed (a reconnecting agent), and counts once.
    EXPECT_EQ(r.claim("n0", "hoarder", 0, 2, t0 + 1s).status, cs::ok);
    EXPECT_EQ(r.names("hoarder"), 4u);
    // Other users are not affected.
    EXPECT_EQ(r.claim("other", "bob", 1, 3, t0).status, cs::ok);
    // A clean release frees the slot at once.
    r.release("n0", 2, true, 60s, t0 + 2s);
    EXPECT_EQ(r.names("hoarder"), 3u);
    EXPECT_EQ(r.claim("fresh", "hoarder", 0, 2, t0 + 2s).status, cs::ok);
}

TEST(Registry, ExpireRemovesEndedLeasesOnce) {
    registry r(8);
    ASSERT_EQ(r.claim("a", "u", 0, 1, t0).status, cs::ok);
    ASSERT_EQ(r.claim("b", "u", 0, 1, t0).status, cs::ok);
    ASSERT_EQ(r.claim("c", "u", 0, 1, t0).status, cs::ok);
    const auto va = r.release("a", 1, false, 10s, t0).version;
    r.release("b", 1, false, 20s, t0);
    steady::time_point next{};
    EXPECT_TRUE(r.expire(t0 + 9s, &next).empty());
    EXPECT_EQ(next, t0 + 10s);
    auto gone = r.expire(t0 + 10s, &next);
    ASSERT_EQ(gone.size(), 1u);
    EXPECT_EQ(gone[0].name, "a");
    EXPECT_EQ(gone[0].state.state, kind::free);
    EXPECT_GT(gone[0].state.version, va);  // newer than the lease: replicas take it
    EXPECT_EQ(next, t0 + 20s);
    EXPECT_TRUE(r.expire(t0 + 10s).empty());  // handed out once
    EXPECT_EQ(r.size(), 2u);                  // b (leased) and c (online)
    EXPECT_EQ(r.names("u"), 2u);
    // b is taken back by its owner before its lease ends: the old lease record is skipped.
    ASSERT_EQ(r.claim("b", "u", 0, 2, t0 + 15s).status, cs::ok);
    EXPECT_TRUE(r.expire(t0 + 30s).empty());
    EXPECT_EQ(r.get("b", t0 + 30s).state, kind::online);
    // Leased again later: only the newer lease's end counts.
    r.release("b", 2, false, 20s, t0 + 40s);
    EXPECT_TRUE(r.expire(t0 + 59s).empty());
    ASSERT_EQ(r.expire(t0 + 60s).size(), 1u);
    EXPECT_EQ(r.size(), 1u);
    EXPECT_EQ(r.names("u"), 1u);
}

TEST(Registry, AnEndedLeaseIsFreeEvenBeforeItIsSwept) {
    registry r(1);
    ASSERT_EQ(r.claim("x", "alice", 0, 1, t0).status, cs::ok);
    r.release("x", 1, false, 5s, t0);
    // Not swept yet, but over: another user may claim it, and alice's count drops.
    EXPECT_EQ(r.claim("x", "bob", 0, 2, t0 + 6s).status, cs::ok);
    EXPECT_EQ(r.names("alice"), 0u);
    EXPECT_EQ(r.claim("y", "alice", 0, 3, t0 + 6s).status, cs::ok);
    EXPECT_TRUE(r.expire(t0 + 6s).empty());  // the stale record finds nothing to remove
}

// Reconnect churn: an owner dropping and taking its names back keeps one lease record per
// leased name, not one per drop.
TEST(Registry, TakingBackRemovesTheLeaseRecord) {
    registry r(64);
    for (std::uint64_t session = 1; session <= 1000; ++session) {
        ASSERT_EQ(r.claim("x", "u", 0, session, t0).status, cs::ok);
        r.release("x", session, false, 60s, t0);
    }
    EXPECT_EQ(r.pending_leases(), 1u);
    EXPECT_EQ(r.expire(t0 + 61s).size(), 1u);
    EXPECT_EQ(r.pending_leases(), 0u);
}

// A claim that removes an ended lease on its way says so even when it fails, so the replicas
// can forget the lease too.
TEST(Registry, FailedClaimStillReportsTheEndedLease) {
    registry r(1);
    ASSERT_EQ(r.claim("old", "alice", 0, 1, t0).status, cs::ok);
    ASSERT_EQ(r.claim("keep", "bob", 0, 2, t0).status, cs::ok);
    const auto v = r.release("old", 1, false, 5s, t0).version;
    ASSERT_EQ(r.claim("other", "alice", 0, 3, t0).status, cs::limit);  // alice still holds "old"
    auto res = r.claim("old", "bob", 0, 2, t0 + 6s);                   // bob is at his cap: refused
    EXPECT_EQ(res.status, cs::limit);
    EXPECT_EQ(res.freed.state, kind::free);
    EXPECT_GT(res.freed.version, v);
    EXPECT_EQ(r.get("old", t0 + 6s).state, kind::free);
    EXPECT_EQ(r.names("alice"), 0u);
    // A successful claim reports no separate free state (its own state is newer).
    ASSERT_EQ(r.claim("z", "carol", 0, 4, t0).status, cs::ok);
    EXPECT_EQ(r.claim("z", "carol", 0, 4, t0).freed.version, 0u);
}

}  // namespace
}  // namespace ferry::relay
