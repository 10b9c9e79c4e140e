#pragma once
// Helpers shared by the jwt tests: the vector key sets and an HS256 signer for hand-made tokens.
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <string_view>

#include "proto/jwt/base64url.hh"
#include "proto/jwt/keys.hh"
#include "proto/jwt/sig.hh"
#include "jwt_vectors.hh"

namespace jwt_test {

using namespace ferry;
using namespace ferry::jwt;

// keyset "jwks": the vectors' JWK set; "full": the same plus the HS256 secret without a kid.
inline std::shared_ptr<const key_set> vector_keys(std::string_view which) {
    key_set_builder b;
    std::string why;
    EXPECT_TRUE(b.add_jwks(jwt_vectors::kJwks, {}, nullptr, &why)) << why;
    if (which == "full") {
        EXPECT_TRUE(b.add_hs256_secret(as_bytes(jwt_vectors::kHs256Secret), {}, &why)) << why;
    }
    return b.build();
}

// A compact JWS over the given header and payload JSON texts, HMAC-SHA256 with `secret`.
inline std::string hs_token(std::string_view header, std::string_view payload,
                            std::string_view secret = jwt_vectors::kHs256Secret) {
    std::string t = base64url::encode(as_bytes(header));
    t += '.';
    t += base64url::encode(as_bytes(payload));
    detail::digest mac{};
    EXPECT_TRUE(detail::hmac_sha256(as_bytes(secret), as_bytes(t), mac));
    t += '.';
    t += base64url::encode(mac);
    return t;
}

inline std::string claims_json(std::int64_t exp, std::string_view extra = {}) {
    std::string s = R"({"sub":"alice","exp":)" + std::to_string(exp);
    if (!extra.empty()) {
        s += ',';
        s += extra;
    }
    s += '}';
    return s;
}

inline const jwt_vectors::token_vector& find_vector(std::string_view name) {
    for (const auto& v : jwt_vectors::kTokens)
        if (v.name == name) return v;
    ADD_FAILURE() << "no vector " << name;
    return jwt_vectors::kTokens[0];
}

}  // namespace jwt_test
