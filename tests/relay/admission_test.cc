// relay/admission: every decision (reject, agent_upgrade, hand_over, serve, queue) and every
// SPEC §4 error admission makes, from parsed heads and a shard view built in memory (no socket,
// no clock: the times are given).
#include "relay/admission.hh"

#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "proto/jwt/mint.hh"

namespace ferry::relay {
namespace {

using kind = admission_decision::kind;
using ingress::error_kind;

constexpr std::int64_t kNow = 1'800'000'000;  // unix seconds the tokens are minted and checked at
const std::string kSecret(40, 'k');

struct head {
    std::string text;
    http1::request_parser ps;
    explicit head(std::string t) : text(std::move(t)) {
        auto p = ps.parse(as_bytes(text));
        EXPECT_TRUE(p.done()) << "test request does not parse";
    }
};

std::string token(std::string sub, std::int64_t ttl = 3600, std::string scope = {},
                  std::vector<std::string> tunnels = {}, std::int64_t minted = kNow) {
    jwt::mint_request r;
    r.sub = std::move(sub);
    r.ttl = ttl;
    r.scope = std::move(scope);
    r.tunnels = std::move(tunnels);
    return *jwt::mint_hs256(as_bytes(kSecret), r, minted);
}

std::string req(std::string_view target, std::string_view tok = {}, std::string_view extra = {}) {
    std::string s = "GET " + std::string(target) + " HTTP/1.1\r\nHost: relay.example\r\n";
    if (!tok.empty()) s += "Authorization: Bearer " + std::string(tok) + "\r\n";
    s += extra;
    return s + "\r\n";
}

std::string upgrade(std::string_view tok) {
    return req("/tunnel", tok,
               "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
               "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n");
}

// A shard (number 0) with a directory, local sessions and limits of its own.
struct shard_fixture {
    relay_config cfg;
    std::unique_ptr<jwt::verifier> verifier;
    std::unordered_map<std::string, name_state> directory;
    std::unordered_map<std::string, agent_conn*> local;
    rate_limiter limiter{0};
    registry names;
    agent_conn* session = reinterpret_cast<agent_conn*>(0x1000);  // opaque: never dereferenced
    std::string scratch;
    steady::time_point now = steady::time_point(std::chrono::hours(1000));

    shard_fixture() {
        jwt::key_set_builder b;
        EXPECT_TRUE(b.add_hs256_secret(as_bytes(kSecret)));
        cfg.keys = b.build();
        cfg.public_tunnels = {"docs"};
        cfg.max_agents_per_user = 2;
        verifier = std::make_unique<jwt::verifier>(cfg.keys, cfg.verify);
        online("shop", "ann", 0);
        local["shop"] = session;
        online("far", "ann", 1);
        online("docs", "ann", 0);
        local["docs"] = session;
        leased("away", "ann", now + std::chrono::seconds(30));
        leased("gone", "ann", now - std::chrono::seconds(1));
        directory["freed"] = name_state{name_state::kind::free, "ann"};
    }
    void online(const std::string& n, const std::string& owner, unsigned shard) {
        directory[n] = name_state{name_state::kind::online, owner, shard, 7, {}, 1};
    }
    void leased(const std::string& n, const std::string& owner, steady::time_point until) {
        directory[n] = name_state{name_state::kind::leased, owner, 0, 0, until, 1};
    }
    std::unique_ptr<head> last;  // the decision's route views into it
    admission_decision admit(const std::string& text, unsigned hops = 0, bool counted = false) {
        last = std::make_unique<head>(text);
        admission_view v{cfg, *verifier, directory, local, limiter, names, 0};
        admission_request rq{last->ps.head(), "192.0.2.7"};
        rq.hops = hops;
        rq.rate_counted = counted;
        rq.unix_now = kNow + 10;
        rq.now = now;
        rq.limiter_now = 100.0;
        rq.route_scratch = &scratch;
        return admit_request(rq, v);
    }
};

void expect_reject(const admission_decision& d, error_kind k, std::string_view message) {
    EXPECT_EQ(d.what, kind::reject);
    EXPECT_EQ(ingress::info(d.error).code, ingress::info(k).code) << d.message;
    EXPECT_EQ(d.message, message);
}

TEST(Admission, ServesALocalTunnelToItsOwner) {
    shard_fixture f;
    auto d = f.admit(req("/t/shop/cart?x=1", token("ann")));
    ASSERT_EQ(d.what, kind::serve) << d.message;
    EXPECT_EQ(d.session, f.session);
    EXPECT_EQ(d.tunnel, "shop");
    EXPECT_EQ(d.route.target, "/cart?x=1");
    EXPECT_TRUE(d.authenticated);
    EXPECT_TRUE(d.rate_counted);
    EXPECT_EQ(d.rate_key, "ann");
}

TEST(Admission, HandsOverToTheTunnelsShardAtMostTwice) {
    shard_fixture f;
    auto d = f.admit(req("/t/far/", token("ann")));
    ASSERT_EQ(d.what, kind::hand_over);
    EXPECT_EQ(d.shard, 1u);
    EXPECT_FALSE(d.rate_counted);  // counted where it is served
    // After two hops the replicas disagree: it waits here rather than bounce again.
    EXPECT_EQ(f.admit(req("/t/far/", token("ann")), 2).what, kind::queue);
}

TEST(Admission, QueuesWhileTheTunnelIsLeased) {
    shard_fixture f;
    auto d = f.admit(req("/t/away/", token("ann")));
    EXPECT_EQ(d.what, kind::queue);
    EXPECT_EQ(d.tunnel, "away");
}

TEST(Admission, AgentUpgradeTakesAnAgentSlot) {
    shard_fixture f;
    auto d = f.admit(upgrade(token("ann", 600, "ferry:agent")));
    ASSERT_EQ(d.what, kind::agent_upgrade) << d.message;
    EXPECT_EQ(d.sub, "ann");
    EXPECT_EQ(d.expires, kNow + 600);
    EXPECT_EQ(f.admit(upgrade(token("ann", 600, "ferry:agent"))).what, kind::agent_upgrade);
    // max_agents_per_user (2) reached.
    auto third = f.admit(upgrade(token("ann", 600, "ferry:agent")));
    expect_reject(third, error_kind::rate_limited, "too many agent connections for this user");
    EXPECT_EQ(third.extra.retry_after_s, 60u);
}

TEST(Admission, AgentUpgradeErrors) {
    shard_fixture f;
    expect_reject(f.admit(upgrade("")), error_kind::token_missing, "agents need a bearer token");
    expect_reject(f.admit(upgrade(token("ann"))), error_kind::forbidden,
                  "this token is not an agent token: agents need the scope ferry:agent");
    expect_reject(f.admit(upgrade(token("ann", 5, "ferry:agent", {}, kNow - 100))), error_kind::token_expired,
                  "token expired");
    expect_reject(f.admit(upgrade("e30.e30.c2ln")), error_kind::token_invalid, "invalid token");
}

TEST(Admission, ConsumerTokenErrors) {
    shard_fixture f;
    expect_reject(f.admit(req("/t/shop/")), error_kind::token_missing, "missing bearer token");
    expect_reject(f.admit(req("/t/shop/", token("ann", 5, {}, {}, kNow - 100))), error_kind::token_expired,
                  "token expired");
    expect_reject(f.admit(req("/t/shop/", "e30.e30.c2ln")), error_kind::token_invalid, "invalid token");
    expect_reject(f.admit(req("/t/shop/", {}, "Authorization: Bearer \r\n")), error_kind::token_invalid,
                  "malformed bearer token");
    expect_reject(f.admit(req("/t/shop/", token("ann"), "Authorization: Bearer x\r\n")), error_kind::bad_request,
                  "more than one Authorization field");
}

TEST(Admission, AuthorisationAgainstTheNamesOwner) {
    shard_fixture f;
    auto d = f.admit(req("/t/shop/", token("bob")));
    expect_reject(d, error_kind::forbidden, "this token may not use this tunnel");
    EXPECT_TRUE(d.authenticated);  // a valid token, only not for this tunnel
    // A ferry_tunnels grant names it.
    EXPECT_EQ(f.admit(req("/t/shop/", token("bob", 3600, {}, {"shop"}))).what, kind::serve);
}

TEST(Admission, UnknownFreeAndEndedLeaseAreNotFound) {
    shard_fixture f;
    for (const char* t : {"/t/nope/", "/t/freed/", "/t/gone/"})
        expect_reject(f.admit(req(t, token("ann"))), error_kind::not_found, "no such tunnel");
}

TEST(Admission, RouteErrorsAreRefused) {
    shard_fixture f;
    auto d = f.admit(req("/elsewhere", token("ann")));
    EXPECT_EQ(d.what, kind::reject);
    EXPECT_EQ(ingress::info(d.error).status, 404);
    auto esc = f.admit(req("/t/shop/..%2f..%2fetc", token("ann")));
    EXPECT_EQ(esc.what, kind::reject);
    EXPECT_EQ(ingress::info(esc.error).status, 400);
}

TEST(Admission, PublicTunnelsNeedNoToken) {
    shard_fixture f;
    auto d = f.admit(req("/t/docs/"));
    ASSERT_EQ(d.what, kind::serve);
    EXPECT_FALSE(d.authenticated);
    EXPECT_EQ(d.rate_key, "ip:192.0.2.7");
    // An invalid token on a public tunnel is not ours to judge (it may be for the upstream).
    EXPECT_EQ(f.admit(req("/t/docs/", "e30.e30.c2ln")).what, kind::serve);
}

TEST(Admission, RateLimitPerSubjectCountedOnce) {
    shard_fixture f;
    f.limiter = rate_limiter(2, 60);
    EXPECT_EQ(f.admit(req("/t/shop/", token("ann"))).what, kind::serve);
    EXPECT_EQ(f.admit(req("/t/shop/", token("ann"))).what, kind::serve);
    // A re-dispatch of a request already counted (after waiting in the queue) is not counted again.
    EXPECT_EQ(f.admit(req("/t/shop/", token("ann")), 0, true).what, kind::serve);
    auto d = f.admit(req("/t/shop/", token("ann")));
    expect_reject(d, error_kind::rate_limited, "too many requests");
    EXPECT_GE(d.extra.retry_after_s, 1u);
    EXPECT_EQ(d.extra.rate_limit, 2u);
    EXPECT_EQ(d.extra.rate_remaining, 0u);
    // Another subject has its own bucket.
    EXPECT_EQ(f.admit(req("/t/shop/", token("bob", 3600, {}, {"shop"}))).what, kind::serve);
}

}  // namespace
}  // namespace ferry::relay
