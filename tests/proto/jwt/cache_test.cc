// The verified-token cache and the per-shard verifier: hits, expiry at min(exp, now + max_age),
// CLOCK eviction, bounds, collisions, snapshot updates.
#include <gtest/gtest.h>

#include <map>
#include <random>

#include "proto/jwt/jwt.hh"
#include "util.hh"

using namespace jwt_test;

namespace {

constexpr std::int64_t kNow = jwt_vectors::kNow;

claims make(std::string sub, std::optional<std::int64_t> exp) {
    claims c;
    c.sub = std::move(sub);
    c.exp = exp;
    return c;
}

const claims* put(token_cache& c, std::string_view tok, std::optional<std::int64_t> exp, std::int64_t now = kNow) {
    claims v = make(std::string(tok), exp);
    return c.insert(tok, std::move(v), now);
}

TEST(JwtCache, HitReturnsTheStoredClaims) {
    token_cache c;
    EXPECT_EQ(c.find("t1", kNow), nullptr);
    const claims* p = put(c, "t1", kNow + 100);
    ASSERT_NE(p, nullptr);
    const claims* q = c.find("t1", kNow + 1);
    EXPECT_EQ(p, q);
    EXPECT_EQ(q->sub, "t1");
    EXPECT_EQ(c.find("t2", kNow), nullptr);
    EXPECT_EQ(c.find("t", kNow), nullptr);
    EXPECT_EQ(c.find("t1x", kNow), nullptr);
    EXPECT_EQ(c.counters().hits, 1u);
    EXPECT_EQ(c.counters().misses, 4u);
    EXPECT_EQ(c.size(), 1u);
}

TEST(JwtCache, EntriesExpireAtTokenExp) {
    cache_options o;
    o.max_age = 300;
    token_cache c(o);
    put(c, "t", kNow + 100);
    EXPECT_NE(c.find("t", kNow + 99), nullptr);
    EXPECT_EQ(c.find("t", kNow + 100), nullptr);
    EXPECT_EQ(c.counters().expirations, 1u);
    EXPECT_EQ(c.size(), 0u);
}

TEST(JwtCache, EntriesExpireAfterMaxAge) {
    cache_options o;
    o.max_age = 300;
    token_cache c(o);
    put(c, "far", kNow + 100000);
    put(c, "noexp", std::nullopt);
    EXPECT_NE(c.find("far", kNow + 299), nullptr);
    EXPECT_NE(c.find("noexp", kNow + 299), nullptr);
    EXPECT_EQ(c.find("far", kNow + 300), nullptr);
    EXPECT_EQ(c.find("noexp", kNow + 300), nullptr);
}

TEST(JwtCache, UncacheableTokensAreNotStored) {
    cache_options o;
    o.max_token_bytes = 8;
    token_cache c(o);
    EXPECT_EQ(put(c, "expired", kNow), nullptr);        // expires <= now
    EXPECT_EQ(put(c, "123456789", kNow + 100), nullptr); // too long
    EXPECT_NE(put(c, "12345678", kNow + 100), nullptr);
    EXPECT_EQ(c.size(), 1u);
    // A failed insert leaves the caller's claims intact.
    claims v = make("keep", kNow);
    EXPECT_EQ(c.insert("expired", std::move(v), kNow), nullptr);
    EXPECT_EQ(v.sub, "keep");

    cache_options off;
    off.capacity = 0;
    token_cache d(off);
    EXPECT_EQ(put(d, "t", kNow + 100), nullptr);
    EXPECT_EQ(d.find("t", kNow), nullptr);
}

TEST(JwtCache, ClockEvictsUnreferencedEntriesFirst) {
    cache_options o;
    o.capacity = 3;
    token_cache c(o);
    put(c, "a", kNow + 1000);
    put(c, "b", kNow + 1000);
    put(c, "c", kNow + 1000);
    ASSERT_NE(c.find("a", kNow), nullptr);
    ASSERT_NE(c.find("c", kNow), nullptr);
    put(c, "d", kNow + 1000);
    EXPECT_EQ(c.size(), 3u);
    EXPECT_EQ(c.counters().evictions, 1u);
    EXPECT_EQ(c.find("b", kNow), nullptr);
    EXPECT_NE(c.find("a", kNow), nullptr);
    EXPECT_NE(c.find("c", kNow), nullptr);
    EXPECT_NE(c.find("d", kNow), nullptr);
}

TEST(JwtCache, ExpiredEntriesGoBeforeLiveOnes) {
    cache_options o;
    o.capacity = 3;
    token_cache c(o);
    put(c, "a", kNow + 1000);
    put(c, "short", kNow + 10);
    put(c, "c", kNow + 1000);
    put(c, "d", kNow + 1000, kNow + 20);  // "short" has expired by now
    EXPECT_EQ(c.counters().expirations, 1u);
    EXPECT_EQ(c.counters().evictions, 0u);
    EXPECT_NE(c.find("a", kNow + 20), nullptr);
    EXPECT_NE(c.find("c", kNow + 20), nullptr);
}

TEST(JwtCache, AllReferencedStillEvictsOne) {
    cache_options o;
    o.capacity = 2;
    token_cache c(o);
    put(c, "a", kNow + 1000);
    put(c, "b", kNow + 1000);
    c.find("a", kNow);
    c.find("b", kNow);
    put(c, "c", kNow + 1000);
    EXPECT_EQ(c.size(), 2u);
    EXPECT_NE(c.find("c", kNow), nullptr);
    EXPECT_EQ(c.counters().evictions, 1u);
}

std::uint64_t same_hash(std::string_view) { return 42; }

// Every token in one chain: lookups still answer by the token's bytes, and unlinking from the
// middle of a chain keeps the rest reachable.
TEST(JwtCache, CollisionsNeverMixTokens) {
    cache_options o;
    o.capacity = 8;
    o.hash = &same_hash;
    token_cache c(o);
    for (int i = 0; i < 8; ++i) put(c, "tok" + std::to_string(i), kNow + 10 + i);
    for (int i = 0; i < 8; ++i) {
        const claims* p = c.find("tok" + std::to_string(i), kNow);
        ASSERT_NE(p, nullptr);
        EXPECT_EQ(p->sub, "tok" + std::to_string(i));
    }
    EXPECT_EQ(c.find("tok8", kNow), nullptr);
    EXPECT_EQ(c.find("tok3", kNow + 13), nullptr);  // expired in the middle of the chain
    for (int i = 0; i < 8; ++i) {
        const claims* p = c.find("tok" + std::to_string(i), kNow);
        if (i == 3) {
            EXPECT_EQ(p, nullptr);
        } else {
            ASSERT_NE(p, nullptr) << i;
        }
    }
}

// Random operations against a reference model, with every token colliding.
TEST(JwtCache, BehavesLikeABoundedMap) {
    for (auto h : {static_cast<std::uint64_t (*)(std::string_view)>(nullptr), &same_hash}) {
        cache_options o;
        o.capacity = 16;
        o.max_age = 50;
        o.hash = h;
        token_cache c(o);
        std::map<std::string, std::int64_t> model;  // token -> expiry; may hold evicted ones
        std::mt19937 rng(3);
        std::int64_t now = kNow;
        for (int step = 0; step < 20000; ++step) {
            now += rng() % 3;
            std::string tok = "t" + std::to_string(rng() % 40);
            if (rng() % 2) {
                std::int64_t exp = now + 1 + std::int64_t(rng() % 100);
                if (put(c, tok, exp, now)) model[tok] = std::min(exp, now + o.max_age);
            } else {
                const claims* p = c.find(tok, now);
                auto it = model.find(tok);
                if (p) {
                    ASSERT_NE(it, model.end());
                    EXPECT_EQ(p->sub, tok);
                    EXPECT_LT(now, it->second);  // never returned after its expiry
                } else if (it != model.end() && now >= it->second) {
                    model.erase(it);
                }
            }
            ASSERT_LE(c.size(), 16u);
        }
        EXPECT_GT(c.counters().hits, 1000u);
        EXPECT_GT(c.counters().evictions, 100u);
    }
}

TEST(JwtCache, ClearEmptiesAndStaysUsable) {
    token_cache c;
    put(c, "a", kNow + 100);
    put(c, "b", kNow + 100);
    c.clear();
    EXPECT_EQ(c.size(), 0u);
    EXPECT_EQ(c.find("a", kNow), nullptr);
    put(c, "a", kNow + 100);
    EXPECT_NE(c.find("a", kNow), nullptr);
}

// ---- verifier -------------------------------------------------------------------------------

TEST(JwtVerifier, CachesOnlyGoodTokensAndReturnsTheirClaims) {
    verifier v(vector_keys("full"), {});
    const auto& rs = find_vector("rs256_ok");
    for (int i = 0; i < 3; ++i) {
        auto r = v.verify(rs.token, kNow + i);
        ASSERT_TRUE(r);
        EXPECT_EQ((*r)->sub, "alice");
        EXPECT_TRUE((*r)->grants("llm"));
    }
    EXPECT_EQ(v.cache().counters().hits, 2u);
    EXPECT_EQ(v.cache().size(), 1u);
    const auto& bad = find_vector("rs256_wrong_key");
    EXPECT_EQ(v.verify(bad.token, kNow).code(), errc::token_bad_signature);
    EXPECT_EQ(v.verify(bad.token, kNow).code(), errc::token_bad_signature);
    EXPECT_EQ(v.cache().size(), 1u);
}

TEST(JwtVerifier, CachedTokenStillExpires) {
    verifier v(vector_keys("full"), {});
    const auto& hs = find_vector("hs256_ok");  // exp = kNow + 3600
    ASSERT_TRUE(v.verify(hs.token, kNow));
    ASSERT_TRUE(v.verify(hs.token, kNow + 299));
    EXPECT_EQ(v.cache().counters().hits, 1u);
    // The entry's max_age ran out: verified afresh and cached again.
    ASSERT_TRUE(v.verify(hs.token, kNow + 3500));
    // At exp the cache has nothing; within leeway the token still verifies (not cached), past
    // exp + leeway it is expired.
    ASSERT_TRUE(v.verify(hs.token, kNow + 3600 + 59));
    EXPECT_EQ(v.verify(hs.token, kNow + 3600 + 60).code(), errc::token_expired);
}

TEST(JwtVerifier, UpdateDropsCachedTokens) {
    verifier v(vector_keys("full"), {});
    const auto& hs = find_vector("hs256_ok");
    ASSERT_TRUE(v.verify(hs.token, kNow));
    ASSERT_TRUE(v.verify(hs.token, kNow));
    // New snapshot without the HMAC secret: the cached entry must not keep the token alive.
    v.update(vector_keys("jwks"), {});
    EXPECT_EQ(v.verify(hs.token, kNow).code(), errc::token_unknown_key);
    // New options (an audience now required) also apply at once.
    v.update(vector_keys("full"), {});
    ASSERT_TRUE(v.verify(hs.token, kNow));
    verify_options o;
    o.audiences = {"relay"};
    v.update(vector_keys("full"), o);
    EXPECT_EQ(v.verify(hs.token, kNow).code(), errc::token_bad_audience);
}

TEST(JwtVerifier, WorksWithTheCacheOff) {
    cache_options off;
    off.capacity = 0;
    verifier v(vector_keys("full"), {}, off);
    const auto& ed = find_vector("eddsa_ok");
    auto a = v.verify(ed.token, kNow);
    ASSERT_TRUE(a);
    EXPECT_EQ((*a)->sub, "alice");
    auto b = v.verify(ed.token, kNow);
    ASSERT_TRUE(b);
    EXPECT_EQ(v.cache().counters().hits, 0u);
}

}  // namespace
