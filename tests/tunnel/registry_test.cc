// The relay's name registry: claims, leases, take-over by the same owner, the agent limit.
#include "tunnel/registry.hh"

#include <gtest/gtest.h>

#include <thread>
#include <vector>

namespace ferry::tunnel {
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

}  // namespace
}  // namespace ferry::tunnel
