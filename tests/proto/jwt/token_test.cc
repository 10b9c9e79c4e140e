// verify() beyond the vectors: every limit at its boundary, key selection rules, the order of
// checks, rounding of NumericDates, options; inspect(); minting.
#include <gtest/gtest.h>

#include "proto/jwt/jwt.hh"
#include "util.hh"

using namespace jwt_test;

namespace {

constexpr std::int64_t kNow = jwt_vectors::kNow;
const std::string kHs = R"({"alg":"HS256"})";

std::shared_ptr<const key_set> hs_keys(std::initializer_list<std::pair<std::string, std::string>> keys) {
    key_set_builder b;
    for (const auto& [kid, secret] : keys) EXPECT_TRUE(b.add_hs256_secret(as_bytes(secret), kid));
    return b.build();
}

errc code_of(std::string_view token, const verify_options& o = {}, std::shared_ptr<const key_set> ks = nullptr,
             std::int64_t now = kNow) {
    if (!ks) ks = vector_keys("full");
    auto r = verify(token, *ks, o, now);
    return r ? errc::ok : r.code();
}

TEST(JwtLimits, TokenHeaderAndPayloadSizes) {
    verify_options o;
    std::string tok = hs_token(kHs, claims_json(kNow + 100));
    o.lim.max_token = tok.size();
    EXPECT_EQ(code_of(tok, o), errc::ok);
    o.lim.max_token = tok.size() - 1;
    EXPECT_EQ(code_of(tok, o), errc::token_too_large);

    o = {};
    o.lim.max_header = kHs.size();
    EXPECT_EQ(code_of(tok, o), errc::ok);
    o.lim.max_header = kHs.size() - 1;
    EXPECT_EQ(code_of(tok, o), errc::token_too_large);

    o = {};
    o.lim.max_payload = claims_json(kNow + 100).size();
    EXPECT_EQ(code_of(tok, o), errc::ok);
    o.lim.max_payload -= 1;
    EXPECT_EQ(code_of(tok, o), errc::token_too_large);
}

TEST(JwtLimits, ClaimShapes) {
    verify_options o;
    auto with = [&](std::string_view extra) { return hs_token(kHs, claims_json(kNow + 100, extra)); };
    o.lim.max_claims = 3;  // sub, exp + one
    EXPECT_EQ(code_of(with(R"("x":1)"), o), errc::ok);
    EXPECT_EQ(code_of(with(R"("x":1,"y":2)"), o), errc::token_too_large);
    o = {};
    o.lim.max_values = 5;  // root, sub, exp, x, [1]... 
    EXPECT_EQ(code_of(with(R"("x":[1])"), o), errc::ok);
    EXPECT_EQ(code_of(with(R"("x":[1,2])"), o), errc::token_too_large);
    o = {};
    o.lim.max_string = 8;
    EXPECT_EQ(code_of(with(R"("x":"12345678")"), o), errc::ok);
    EXPECT_EQ(code_of(with(R"("x":"123456789")"), o), errc::token_too_large);
    o = {};
    o.lim.max_depth = 2;
    EXPECT_EQ(code_of(with(R"("x":[1])"), o), errc::ok);
    EXPECT_EQ(code_of(with(R"("x":[[1]])"), o), errc::token_too_large);
}

TEST(JwtLimits, SubKidAudiencesTunnels) {
    verify_options o;
    o.lim.max_sub = 5;
    EXPECT_EQ(code_of(hs_token(kHs, claims_json(kNow + 100)), o), errc::ok);  // "alice"
    o.lim.max_sub = 4;
    EXPECT_EQ(code_of(hs_token(kHs, claims_json(kNow + 100)), o), errc::token_too_large);

    o = {};
    o.lim.max_kid = 3;
    EXPECT_EQ(code_of(hs_token(R"({"alg":"HS256","kid":"abc"})", claims_json(kNow + 100)), o), errc::ok);
    EXPECT_EQ(code_of(hs_token(R"({"alg":"HS256","kid":"abcd"})", claims_json(kNow + 100)), o), errc::token_too_large);

    o = {};
    o.audiences = {"r"};
    o.lim.max_audiences = 2;
    EXPECT_EQ(code_of(hs_token(kHs, claims_json(kNow + 100, R"("aud":["a","r"])")), o), errc::ok);
    EXPECT_EQ(code_of(hs_token(kHs, claims_json(kNow + 100, R"("aud":["a","b","r"])")), o), errc::token_too_large);

    o = {};
    o.lim.max_tunnels = 2;
    o.lim.max_tunnel_name = 3;
    EXPECT_EQ(code_of(hs_token(kHs, claims_json(kNow + 100, R"("ferry_tunnels":["abc","d"])")), o), errc::ok);
    EXPECT_EQ(code_of(hs_token(kHs, claims_json(kNow + 100, R"("ferry_tunnels":["a","b","c"])")), o),
              errc::token_too_large);
    EXPECT_EQ(code_of(hs_token(kHs, claims_json(kNow + 100, R"("ferry_tunnels":["abcd"])")), o),
              errc::token_too_large);
    EXPECT_EQ(code_of(hs_token(kHs, claims_json(kNow + 100, R"("ferry_tunnels":[""])")), o), errc::token_malformed);
}

TEST(JwtKeySelection, KidPicksExactlyOneKey) {
    auto ks = hs_keys({{"a", std::string(32, 'A')}, {"b", std::string(32, 'B')}});
    const std::string body = claims_json(kNow + 100);
    EXPECT_EQ(code_of(hs_token(R"({"alg":"HS256","kid":"b"})", body, std::string(32, 'B')), {}, ks), errc::ok);
    // kid "a" with b's signature: no fallback to other named keys.
    EXPECT_EQ(code_of(hs_token(R"({"alg":"HS256","kid":"a"})", body, std::string(32, 'B')), {}, ks),
              errc::token_bad_signature);
    // Unknown kid and no unnamed key.
    EXPECT_EQ(code_of(hs_token(R"({"alg":"HS256","kid":"c"})", body, std::string(32, 'B')), {}, ks),
              errc::token_unknown_key);
    // No kid: every key of the algorithm is tried.
    EXPECT_EQ(code_of(hs_token(kHs, body, std::string(32, 'B')), {}, ks), errc::ok);
}

TEST(JwtKeySelection, KidlessAttemptsAreBounded) {
    auto ks = hs_keys({{"", std::string(32, '1')}, {"", std::string(32, '2')}, {"", std::string(32, '3')}});
    const std::string tok = hs_token(kHs, claims_json(kNow + 100), std::string(32, '3'));
    verify_options o;
    o.lim.max_kidless_keys = 3;
    EXPECT_EQ(code_of(tok, o, ks), errc::ok);
    o.lim.max_kidless_keys = 2;
    EXPECT_EQ(code_of(tok, o, ks), errc::token_bad_signature);
}

TEST(JwtKeySelection, UnknownKidFallsBackOnlyToUnnamedKeysOfTheSameAlg) {
    auto jwks_only = vector_keys("jwks");
    // An RS256 token whose kid no key carries, signed with rsa-1: every RSA key is named, so no
    // fallback happens even though rsa-1 would verify it.
    const auto& rs = find_vector("rs256_unknown_kid");
    EXPECT_EQ(code_of(rs.token, {}, jwks_only), errc::token_unknown_key);
    // An HS256 token with a kid, against a set whose only HMAC key is named differently.
    auto named = hs_keys({{"x", std::string(jwt_vectors::kHs256Secret)}});
    EXPECT_EQ(code_of(find_vector("hs256_unnamed_key_any_kid_ok").token, {}, named), errc::token_unknown_key);
}

TEST(JwtKeySelection, HeaderKeyMaterialIsIgnored) {
    // An attacker embeds their own key in the header (jwk / jku / x5c); it must not be used.
    const std::string evil(32, 'E');
    std::string hdr = R"({"alg":"HS256","jwk":{"kty":"oct","k":")" + base64url::encode(as_bytes(evil)) +
                      R"("},"jku":"https://evil.example/jwks","x5c":["AAAA"]})";
    EXPECT_EQ(code_of(hs_token(hdr, claims_json(kNow + 100), evil)), errc::token_bad_signature);
    EXPECT_EQ(code_of(hs_token(hdr, claims_json(kNow + 100))), errc::ok);  // ignored, not refused
}

TEST(JwtOrder, SignatureIsCheckedBeforeAnyClaim) {
    // Expired, wrong audience, no sub: all invisible when the signature is wrong.
    const std::string body = R"({"exp":1,"aud":"x"})";
    EXPECT_EQ(code_of(hs_token(kHs, body, std::string(jwt_vectors::kOtherSecret))), errc::token_bad_signature);
    EXPECT_EQ(code_of(hs_token(kHs, "not json", std::string(jwt_vectors::kOtherSecret))), errc::token_bad_signature);
    // With the right key the claims speak.
    EXPECT_EQ(code_of(hs_token(kHs, R"({"sub":"a","exp":1})")), errc::token_expired);
}

TEST(JwtOrder, AllowListIsCheckedBeforeKeys) {
    verify_options o;
    o.allowed = {};
    EXPECT_EQ(code_of(find_vector("hs256_ok").token, o), errc::token_alg_not_allowed);
    EXPECT_EQ(code_of(find_vector("rs256_ok").token, o), errc::token_alg_not_allowed);
    o.allowed = {alg::eddsa};
    EXPECT_EQ(code_of(find_vector("eddsa_ok").token, o), errc::ok);
    EXPECT_EQ(code_of(find_vector("es256_ok").token, o), errc::token_alg_not_allowed);
}

TEST(JwtHeader, TypeAndExtensionRules) {
    const std::string body = claims_json(kNow + 100);
    EXPECT_EQ(code_of(hs_token(R"({"alg":"HS256","typ":"JWT"})", body)), errc::ok);
    EXPECT_EQ(code_of(hs_token(R"({"alg":"HS256","typ":"at+jwt"})", body)), errc::ok);
    EXPECT_EQ(code_of(hs_token(R"({"alg":"HS256","typ":1})", body)), errc::token_malformed);
    EXPECT_EQ(code_of(hs_token(R"({"alg":"HS256","kid":7})", body)), errc::token_malformed);
    EXPECT_EQ(code_of(hs_token(R"({"alg":7})", body)), errc::token_malformed);
    EXPECT_EQ(code_of(hs_token(R"({"alg":"HS256","enc":"A256GCM"})", body)), errc::token_malformed);
    EXPECT_EQ(code_of(hs_token(R"({"alg":"HS256","zip":"DEF"})", body)), errc::token_malformed);
    EXPECT_EQ(code_of(hs_token(R"({"alg":"HS256","crit":[]})", body)), errc::token_alg_not_allowed);
    EXPECT_EQ(code_of(hs_token(R"({"alg":"HS256","b64":false})", body)), errc::ok);  // meaningless without crit
}

TEST(JwtTime, LeewayEdges) {
    verify_options o;
    o.leeway = 30;
    auto tok = [](std::string_view extra) { return hs_token(kHs, claims_json(kNow + 1000, extra)); };
    EXPECT_EQ(code_of(hs_token(kHs, claims_json(kNow - 29)), o), errc::ok);
    EXPECT_EQ(code_of(hs_token(kHs, claims_json(kNow - 30)), o), errc::token_expired);
    EXPECT_EQ(code_of(tok(R"("nbf":)" + std::to_string(kNow + 30)), o), errc::ok);
    EXPECT_EQ(code_of(tok(R"("nbf":)" + std::to_string(kNow + 31)), o), errc::token_not_yet_valid);
    EXPECT_EQ(code_of(tok(R"("iat":)" + std::to_string(kNow + 31)), o), errc::token_not_yet_valid);
    o.reject_future_iat = false;
    EXPECT_EQ(code_of(tok(R"("iat":)" + std::to_string(kNow + 31)), o), errc::ok);
    o = {};
    o.leeway = -100;  // treated as 0
    EXPECT_EQ(code_of(hs_token(kHs, claims_json(kNow)), o), errc::token_expired);
    EXPECT_EQ(code_of(hs_token(kHs, claims_json(kNow + 1)), o), errc::ok);
}

TEST(JwtTime, FractionsRoundTheStrictWay) {
    verify_options o;
    o.leeway = 0;
    // exp rounds down: exp = now + 0.5 is already expired.
    EXPECT_EQ(code_of(hs_token(kHs, R"({"sub":"a","exp":)" + std::to_string(kNow) + ".5}"), o), errc::token_expired);
    // nbf rounds up: nbf = now - 0.5 counts as now: valid; nbf = now + 0.25 counts as now + 1.
    const std::string exp = R"({"sub":"a","exp":)" + std::to_string(kNow + 100);
    EXPECT_EQ(code_of(hs_token(kHs, exp + R"(,"nbf":)" + std::to_string(kNow - 1) + ".5}"), o), errc::ok);
    EXPECT_EQ(code_of(hs_token(kHs, exp + R"(,"nbf":)" + std::to_string(kNow) + ".25}"), o),
              errc::token_not_yet_valid);
    // Exponent notation is a number like any other.
    EXPECT_EQ(code_of(hs_token(kHs, R"({"sub":"a","exp":1.8e9})")), errc::ok);
    EXPECT_EQ(code_of(hs_token(kHs, R"({"sub":"a","exp":1e300})")), errc::token_malformed);
    EXPECT_EQ(code_of(hs_token(kHs, R"({"sub":"a","exp":253402300799})")), errc::ok);
    EXPECT_EQ(code_of(hs_token(kHs, R"({"sub":"a","exp":253402300800})")), errc::token_malformed);
    EXPECT_EQ(code_of(hs_token(kHs, R"({"sub":"a","exp":true})")), errc::token_malformed);
    EXPECT_EQ(code_of(hs_token(kHs, R"({"sub":"a","exp":null})")), errc::token_malformed);
}

TEST(JwtClaims, ReadsEverythingAndGrants) {
    verify_options o;
    o.issuer = "iss-1";
    o.audiences = {"relay", "other"};
    auto r = verify(hs_token(R"({"alg":"HS256","kid":"k9"})",
                             claims_json(kNow + 100, R"("iss":"iss-1","aud":"relay","nbf":1,"iat":2,)"
                                                     R"("ferry_tunnels":["llm","dev"])")),
                    *vector_keys("full"), o, kNow);
    ASSERT_TRUE(r) << r.err().detail;
    EXPECT_EQ(r->sub, "alice");
    EXPECT_EQ(r->iss.value_or(""), "iss-1");
    EXPECT_EQ(r->aud, std::vector<std::string>{"relay"});
    EXPECT_EQ(r->nbf.value_or(0), 1);
    EXPECT_EQ(r->iat.value_or(0), 2);
    EXPECT_EQ(r->exp.value_or(0), kNow + 100);
    EXPECT_EQ(r->algorithm, alg::hs256);
    EXPECT_EQ(r->kid, "k9");
    EXPECT_TRUE(r->grants("llm"));
    EXPECT_TRUE(r->grants("dev"));
    EXPECT_FALSE(r->grants("LLM"));
    EXPECT_FALSE(r->grants("ll"));
    EXPECT_FALSE(r->grants(""));
}

// The agent scope (issue 11 item 5): `scope` as a space-separated string or an array of strings.
TEST(JwtClaims, ScopeStringOrArray) {
    auto one = [](std::string_view extra) {
        return verify(hs_token(kHs, claims_json(kNow + 100, std::string(extra))), *vector_keys("full"), {}, kNow);
    };
    auto r = one(R"("scope":"read ferry:agent write")");
    ASSERT_TRUE(r) << r.err().detail;
    EXPECT_TRUE(r->has_scope("ferry:agent"));
    EXPECT_TRUE(r->has_scope("read"));
    EXPECT_TRUE(r->has_scope("write"));
    EXPECT_FALSE(r->has_scope("ferry"));        // whole entries only
    EXPECT_FALSE(r->has_scope("ferry:agentx"));
    EXPECT_FALSE(r->has_scope(""));
    r = one(R"("scope":["ferry:agent","x"])");
    ASSERT_TRUE(r) << r.err().detail;
    EXPECT_EQ(r->scope, "ferry:agent x");
    EXPECT_TRUE(r->has_scope("x"));
    r = one("");
    ASSERT_TRUE(r);
    EXPECT_FALSE(r->has_scope("ferry:agent"));
    r = one(R"("ferry_tunnels":["ferry:agent"])");  // a grant is not a scope
    ASSERT_TRUE(r);
    EXPECT_FALSE(r->has_scope("ferry:agent"));
    // Shapes we do not read grant nothing, and the token stays valid for what else it is.
    for (std::string_view odd : {R"("scope":1)", R"("scope":null)", R"("scope":{"a":1})", R"("scope":[1,"ferry:agent"])",
                                 R"("scope":["ferry:agent","a b"])", R"("scope":[""])"}) {
        auto o = one(odd);
        ASSERT_TRUE(o) << odd;
        EXPECT_FALSE(o->has_scope("ferry:agent")) << odd;
        EXPECT_EQ(o->scope, "") << odd;
    }
}

TEST(JwtErrors, CodesHaveStableNames) {
    EXPECT_STREQ(to_string(errc::token_expired), "token_expired");
    EXPECT_STREQ(to_string(errc::token_invalid), "token_invalid");
    EXPECT_STREQ(to_string(errc::token_not_yet_valid), "token_not_yet_valid");
    EXPECT_STREQ(to_string(errc::token_bad_signature), "token_bad_signature");
    EXPECT_STREQ(to_string(errc::token_bad_audience), "token_bad_audience");
    EXPECT_STREQ(to_string(errc::token_bad_issuer), "token_bad_issuer");
    EXPECT_STREQ(to_string(errc::token_malformed), "token_malformed");
    EXPECT_STREQ(to_string(errc::token_too_large), "token_too_large");
    EXPECT_STREQ(to_string(errc::token_alg_not_allowed), "token_alg_not_allowed");
    EXPECT_STREQ(to_string(errc::token_unknown_key), "token_unknown_key");
    EXPECT_STREQ(to_string(errc::token_key_mismatch), "token_key_mismatch");
    EXPECT_STREQ(to_string(errc::jwks_invalid), "jwks_invalid");
    EXPECT_TRUE(is_expired(errc::token_expired));
    EXPECT_FALSE(is_expired(errc::token_not_yet_valid));
    for (auto e : {errc::token_malformed, errc::token_key_mismatch, errc::token_invalid, errc::token_expired})
        EXPECT_TRUE(is_token_error(e));
    for (auto e : {errc::jwks_invalid, errc::crypto, errc::malformed, errc::ok}) EXPECT_FALSE(is_token_error(e));
}

TEST(JwtInspect, ReadsWithoutTrustingAndStillChecksShape) {
    auto r = inspect(hs_token(R"({"alg":"HS256","kid":"q"})", R"({"exp":5,"ferry_tunnels":["x"]})", "wrong key"));
    ASSERT_TRUE(r) << r.err().detail;
    EXPECT_TRUE(r->sub.empty());
    EXPECT_EQ(r->exp.value_or(0), 5);
    EXPECT_EQ(r->kid, "q");
    EXPECT_EQ(r->tunnels, std::vector<std::string>{"x"});
    EXPECT_EQ(inspect(find_vector("none_empty_sig").token).code(), errc::token_alg_not_allowed);
    EXPECT_EQ(inspect(find_vector("dup_claim_sub").token).code(), errc::token_malformed);
    EXPECT_EQ(inspect("a.b").code(), errc::token_malformed);
}

// ---- minting --------------------------------------------------------------------------------

TEST(JwtMint, MatchesPyJwtByteForByte) {
    // hs256_ok was made by PyJWT from {"sub":"alice","iat":now-10,"exp":now+3600,
    // "ferry_tunnels":["llm","dev"]}: the same claims minted here give the same token.
    mint_request m;
    m.sub = "alice";
    m.ttl = 3610;
    m.tunnels = {"llm", "dev"};
    auto t = mint_hs256(as_bytes(jwt_vectors::kHs256Secret), m, kNow - 10);
    ASSERT_TRUE(t);
    EXPECT_EQ(*t, find_vector("hs256_ok").token);
}

TEST(JwtMint, RoundTripsThroughVerify) {
    mint_request m;
    m.sub = "bob \"the\" builder\n\xc3\xa9";
    m.ttl = 600;
    m.tunnels = {"a", "b-c"};
    m.iss = "ferry-dev";
    m.aud = "relay";
    m.kid = "dev-1";
    key_set_builder b;
    ASSERT_TRUE(b.add_hs256_secret(as_bytes(std::string(32, 'z')), "dev-1"));
    auto ks = b.build();
    auto t = mint_hs256(as_bytes(std::string(32, 'z')), m, kNow);
    ASSERT_TRUE(t);
    verify_options o;
    o.issuer = "ferry-dev";
    o.audiences = {"relay"};
    auto r = verify(*t, *ks, o, kNow + 599);
    ASSERT_TRUE(r) << r.err().detail;
    EXPECT_EQ(r->sub, m.sub);
    EXPECT_EQ(r->tunnels, m.tunnels);
    EXPECT_EQ(r->iat.value_or(0), kNow);
    EXPECT_EQ(r->exp.value_or(0), kNow + 600);
    EXPECT_EQ(r->kid, "dev-1");
    EXPECT_EQ(verify(*t, *ks, o, kNow + 600 + 60).code(), errc::token_expired);
}

TEST(JwtMint, RefusesBadRequests) {
    const std::string secret(32, 's');
    mint_request m;
    m.sub = "a";
    EXPECT_TRUE(mint_hs256(as_bytes(secret), m, kNow));
    EXPECT_EQ(mint_hs256(as_bytes(std::string(31, 's')), m, kNow).code(), errc::jwks_invalid);
    auto bad = m;
    bad.sub = "";
    EXPECT_EQ(mint_hs256(as_bytes(secret), bad, kNow).code(), errc::invalid_argument);
    bad.sub = "\xff";
    EXPECT_EQ(mint_hs256(as_bytes(secret), bad, kNow).code(), errc::invalid_argument);
    bad = m;
    bad.ttl = 0;
    EXPECT_EQ(mint_hs256(as_bytes(secret), bad, kNow).code(), errc::invalid_argument);
    bad = m;
    bad.tunnels = {""};
    EXPECT_EQ(mint_hs256(as_bytes(secret), bad, kNow).code(), errc::invalid_argument);
    bad = m;
    bad.tunnels.assign(65, "t");
    EXPECT_EQ(mint_hs256(as_bytes(secret), bad, kNow).code(), errc::invalid_argument);
}

}  // namespace
