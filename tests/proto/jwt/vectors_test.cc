// Known-answer tests from tests/proto/jwt/jwt_vectors.hh (generated with PyJWT by
// gen_vectors.py): every token vector through verify(), the verifier (cache on) and inspect();
// every JWK set vector through key_set_builder::add_jwks().
#include <gtest/gtest.h>

#include "proto/jwt/jwt.hh"
#include "util.hh"

using namespace jwt_test;

namespace jwt_vectors {
// Readable test names in failures instead of a byte dump.
void PrintTo(const token_vector& v, std::ostream* os) { *os << v.name; }
void PrintTo(const jwks_vector& v, std::ostream* os) { *os << v.name; }
}  // namespace jwt_vectors

namespace {

std::vector<std::string> split(std::string_view s) {
    std::vector<std::string> out;
    while (!s.empty()) {
        auto bar = s.find('|');
        out.emplace_back(s.substr(0, bar));
        if (bar == std::string_view::npos) break;
        s.remove_prefix(bar + 1);
    }
    return out;
}

verify_options options_of(const jwt_vectors::token_vector& v) {
    verify_options o;
    o.issuer = std::string(v.iss);
    o.audiences = split(v.aud);
    if (!v.allowed.empty()) {
        o.allowed = {};
        for (const auto& a : split(v.allowed)) o.allowed.add(*alg_by_name(a));
    }
    o.leeway = v.leeway;
    o.require_exp = v.require_exp;
    return o;
}

class TokenVectors : public ::testing::TestWithParam<jwt_vectors::token_vector> {};

TEST_P(TokenVectors, VerifyGivesTheExpectedVerdict) {
    const auto& v = GetParam();
    auto keys = vector_keys(v.keyset);
    auto r = verify(v.token, *keys, options_of(v), v.now);
    const std::string got = r ? "ok" : to_string(r.code());
    EXPECT_EQ(got, v.expect) << v.name << " (PyJWT: " << v.pyjwt << "; " << v.why << ") detail: "
                             << (r ? "" : r.err().detail);
    if (!r || v.expect != "ok") return;
    EXPECT_EQ(r->sub, v.sub);
    EXPECT_EQ(r->tunnels, split(v.tunnels));
    if (v.exp < 0) {
        EXPECT_FALSE(r->exp.has_value());
    } else {
        EXPECT_EQ(r->exp.value_or(-1), v.exp);
    }
}

TEST_P(TokenVectors, VerifierWithCacheAgreesTwice) {
    const auto& v = GetParam();
    verifier ver(vector_keys(v.keyset), options_of(v));
    for (int round = 0; round < 2; ++round) {
        auto r = ver.verify(v.token, v.now);
        const std::string got = r ? "ok" : to_string(r.code());
        EXPECT_EQ(got, v.expect) << v.name << " round " << round;
        if (r) {
            EXPECT_EQ((*r)->sub, v.sub);
        }
    }
    // Only good tokens are ever cached (and only while before their exp); the second round of
    // such a token is a hit.
    const bool cacheable = v.expect == "ok" && (v.exp < 0 || v.exp > v.now);
    EXPECT_EQ(ver.cache().counters().hits, cacheable ? 1u : 0u) << v.name;
}

TEST_P(TokenVectors, InspectReadsEveryWellFormedToken) {
    const auto& v = GetParam();
    auto r = inspect(v.token);
    if (v.expect == "ok") {
        ASSERT_TRUE(r) << v.name << ": " << r.err().detail;
        EXPECT_EQ(r->sub, v.sub);
    }
    // inspect() checks no signature, so it must accept the tokens that fail only on it.
    if (v.expect == "token_bad_signature" || v.expect == "token_unknown_key" || v.expect == "token_expired") {
        EXPECT_TRUE(r || r.code() == errc::token_alg_not_allowed) << v.name << ": " << to_string(r.code());
    }
}

std::string vector_name(const ::testing::TestParamInfo<jwt_vectors::token_vector>& i) {
    return std::string(i.param.name);
}

INSTANTIATE_TEST_SUITE_P(Jwt, TokenVectors, ::testing::ValuesIn(jwt_vectors::kTokens), vector_name);

class JwksVectors : public ::testing::TestWithParam<jwt_vectors::jwks_vector> {};

TEST_P(JwksVectors, LoadGivesTheExpectedVerdict) {
    const auto& v = GetParam();
    key_set_builder b;
    jwks_report rep;
    std::string why;
    auto s = b.add_jwks(v.json, {}, &rep, &why);
    const std::string got = s ? "ok" : to_string(s.code());
    EXPECT_EQ(got, v.expect) << v.name << ": " << why;
    if (s) {
        EXPECT_EQ(b.size(), std::size_t(v.keys)) << v.name;
        EXPECT_EQ(rep.skipped.size(), std::size_t(v.skipped)) << v.name;
    } else {
        EXPECT_EQ(b.size(), 0u) << "a rejected set adds nothing";
        EXPECT_FALSE(why.empty()) << v.name << ": the reason must be reported";
    }
}

TEST_P(JwksVectors, RejectModeTurnsSkipsIntoErrors) {
    const auto& v = GetParam();
    key_set_builder b;
    jwks_options o;
    o.unusable = unusable_keys::reject;
    auto s = b.add_jwks(v.json, o);
    if (v.expect == "ok" && v.skipped == 0) {
        EXPECT_TRUE(s) << v.name;
    } else {
        EXPECT_EQ(s.code(), errc::jwks_invalid) << v.name;
    }
}

std::string jwks_name(const ::testing::TestParamInfo<jwt_vectors::jwks_vector>& i) {
    return std::string(i.param.name);
}

INSTANTIATE_TEST_SUITE_P(Jwt, JwksVectors, ::testing::ValuesIn(jwt_vectors::kJwksVectors), jwks_name);

}  // namespace
