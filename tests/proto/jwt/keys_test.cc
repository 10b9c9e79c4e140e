// Key sets: algorithm names, HS256 secrets and secret files, JWK set loading rules and messages,
// immutability and sharing between threads.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "proto/jwt/jwt.hh"
#include "util.hh"

using namespace jwt_test;

namespace {

TEST(JwtAlg, NamesAreExactAndNoneDoesNotExist) {
    for (alg a : {alg::hs256, alg::rs256, alg::es256, alg::eddsa}) EXPECT_EQ(alg_by_name(name(a)), a);
    for (const char* s : {"none", "None", "hs256", "HS256 ", "RS512", "PS256", "ES384", "Ed25519", "eddsa", ""})
        EXPECT_FALSE(alg_by_name(s)) << s;
    alg_set s{alg::rs256};
    EXPECT_TRUE(s.contains(alg::rs256));
    EXPECT_FALSE(s.contains(alg::hs256));
    EXPECT_TRUE(alg_set{}.empty());
}

TEST(JwtKeys, Hs256SecretNeeds32Bytes) {
    key_set_builder b;
    std::string why;
    std::string s31(31, 'x'), s32(32, 'x');
    EXPECT_EQ(b.add_hs256_secret(as_bytes(s31), {}, &why).code(), errc::jwks_invalid);
    EXPECT_NE(why.find("31 bytes"), std::string::npos) << why;
    EXPECT_TRUE(b.add_hs256_secret(as_bytes(s32), "k"));
    auto ks = b.build();
    ASSERT_EQ(ks->size(), 1u);
    EXPECT_EQ(ks->keys()[0].algorithm(), alg::hs256);
    EXPECT_EQ(ks->keys()[0].bits(), 256u);
    EXPECT_EQ(ks->find_kid("k"), &ks->keys()[0]);
}

TEST(JwtKeys, SecretFileTrimsOneTrailingNewline) {
    const std::string body(40, 's');
    auto a = hs256_secret_from_file(as_bytes(body + "\n"));
    ASSERT_TRUE(a);
    EXPECT_EQ(a->size(), 40u);
    auto b = hs256_secret_from_file(as_bytes(body + "\r\n"));
    ASSERT_TRUE(b);
    EXPECT_EQ(b->size(), 40u);
    auto c = hs256_secret_from_file(as_bytes(body + "\n\n"));
    ASSERT_TRUE(c);
    EXPECT_EQ(c->size(), 41u);  // only one newline is removed
    EXPECT_EQ(std::to_integer<char>(c->back()), '\n');
    auto d = hs256_secret_from_file(as_bytes(body));
    ASSERT_TRUE(d);
    EXPECT_EQ(d->size(), 40u);
    EXPECT_EQ(hs256_secret_from_file(as_bytes(std::string(32, 's') + "\n")).code(), errc::ok);
    EXPECT_EQ(hs256_secret_from_file(as_bytes(std::string(31, 's') + "\n")).code(), errc::jwks_invalid);
    // Binary secrets keep every byte.
    std::string bin("\0\1\2\n\r\xff", 6);
    bin += std::string(30, '\0');
    auto e = hs256_secret_from_file(as_bytes(bin));
    ASSERT_TRUE(e);
    EXPECT_EQ(e->size(), 36u);
}

TEST(JwtKeys, JwksKeysCarryTheirAlgorithmAndKid) {
    auto ks = vector_keys("full");
    ASSERT_EQ(ks->size(), 6u);
    EXPECT_EQ(ks->find_kid("rsa-1")->algorithm(), alg::rs256);
    EXPECT_EQ(ks->find_kid("rsa-1")->bits(), 2048u);
    EXPECT_EQ(ks->find_kid("rsa-4096")->bits(), 4096u);
    EXPECT_EQ(ks->find_kid("ec-1")->algorithm(), alg::es256);
    EXPECT_EQ(ks->find_kid("ed-1")->algorithm(), alg::eddsa);
    EXPECT_EQ(ks->find_kid("nope"), nullptr);
    EXPECT_EQ(ks->find_kid(""), nullptr);  // the unnamed HS256 key is never found by kid
    EXPECT_TRUE(ks->algorithms().contains(alg::hs256));
    EXPECT_FALSE(vector_keys("jwks")->algorithms().contains(alg::hs256));
}

TEST(JwtKeys, ErrorsNameTheKey) {
    key_set_builder b;
    std::string why;
    for (const auto& v : jwt_vectors::kJwksVectors) {
        if (v.name != "jwks_rsa_1024") continue;
        ASSERT_FALSE(b.add_jwks(v.json, {}, nullptr, &why));
        EXPECT_NE(why.find("keys[0]"), std::string::npos) << why;
        EXPECT_NE(why.find("\"small\""), std::string::npos) << why;
        EXPECT_NE(why.find("1024 bits"), std::string::npos) << why;
    }
    // A bad key in second place names index 1, and the good first key is not added either.
    std::string doc = R"({"keys":[{"kty":"oct","kid":"good","alg":"HS256","k":")" +
                      base64url::encode(as_bytes(std::string(32, 'k'))) +
                      R"("},{"kty":"EC","kid":"bad","crv":"P-256","x":"AAAA","y":"AAAA"}]})";
    EXPECT_EQ(b.add_jwks(doc, {}, nullptr, &why).code(), errc::jwks_invalid);
    EXPECT_NE(why.find("keys[1] (kid \"bad\")"), std::string::npos) << why;
    EXPECT_EQ(b.size(), 0u);
}

TEST(JwtKeys, KidsAreUniqueAcrossSources) {
    key_set_builder b;
    std::string why;
    ASSERT_TRUE(b.add_hs256_secret(as_bytes(std::string(32, 'a')), "rsa-1"));
    EXPECT_EQ(b.add_jwks(jwt_vectors::kJwks, {}, nullptr, &why).code(), errc::jwks_invalid);
    EXPECT_NE(why.find("duplicate kid"), std::string::npos) << why;
    EXPECT_EQ(b.size(), 1u);
    // Unnamed keys may be many.
    EXPECT_TRUE(b.add_hs256_secret(as_bytes(std::string(32, 'b'))));
    EXPECT_TRUE(b.add_hs256_secret(as_bytes(std::string(32, 'c'))));
    EXPECT_EQ(b.size(), 3u);
}

TEST(JwtKeys, LimitsApply) {
    key_set_builder b;
    std::string why;
    jwks_options o;
    o.lim.max_rsa_bits = 2048;
    EXPECT_EQ(b.add_jwks(jwt_vectors::kJwks, o, nullptr, &why).code(), errc::jwks_invalid);
    EXPECT_NE(why.find("rsa-4096"), std::string::npos) << why;
    o = {};
    o.lim.max_keys = 4;
    EXPECT_EQ(b.add_jwks(jwt_vectors::kJwks, o, nullptr, &why).code(), errc::jwks_invalid);
    o = {};
    o.lim.max_text = 100;
    EXPECT_EQ(b.add_jwks(jwt_vectors::kJwks, o, nullptr, &why).code(), errc::jwks_invalid);
    o = {};
    o.lim.max_kid = 3;
    EXPECT_EQ(b.add_jwks(jwt_vectors::kJwks, o, nullptr, &why).code(), errc::jwks_invalid);
    EXPECT_EQ(b.size(), 0u);
}

TEST(JwtKeys, BuildFreezesAndEmptiesTheBuilder) {
    key_set_builder b;
    ASSERT_TRUE(b.add_jwks(jwt_vectors::kJwks));
    auto ks = b.build();
    EXPECT_EQ(ks->size(), 5u);
    EXPECT_EQ(b.size(), 0u);
    EXPECT_TRUE(b.build()->empty());
    static_assert(std::is_same_v<decltype(ks), std::shared_ptr<const key_set>>);
}

// The snapshot is read concurrently by shards: verification must only read it.
TEST(JwtKeys, OneKeySetServesManyThreads) {
    auto ks = vector_keys("full");
    const auto& hs = find_vector("hs256_ok");
    const auto& es = find_vector("es256_ok");
    const auto& ed = find_vector("eddsa_ok");
    const auto& rs = find_vector("rs256_ok");
    std::atomic<int> good{0};
    auto work = [&] {
        verify_options o;
        for (int i = 0; i < 25; ++i)
            for (const auto* v : {&hs, &es, &ed, &rs})
                if (verify(v->token, *ks, o, jwt_vectors::kNow)) ++good;
    };
    std::thread t1(work), t2(work), t3(work);
    t1.join();
    t2.join();
    t3.join();
    EXPECT_EQ(good.load(), 3 * 25 * 4);
}

}  // namespace
