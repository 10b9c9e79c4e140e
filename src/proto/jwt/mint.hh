#pragma once
// Minting HS256 development tokens (`ferry token`). Production tokens come from an identity
// provider; this exists so that a fresh install and the tests can make a valid token.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "proto/base/buffer.hh"
#include "proto/base/result.hh"
#include "proto/jwt/token.hh"

namespace ferry::jwt {

struct mint_request {
    std::string sub;                    // required, non-empty
    std::int64_t ttl = 3600;            // seconds until `exp`; 1 .. 10 years
    std::vector<std::string> tunnels;   // `ferry_tunnels`, omitted when empty
    std::string iss;                    // omitted when empty
    std::string aud;                    // omitted when empty
    std::string kid;                    // header `kid`, omitted when empty
    std::string scope;                  // `scope` (space-separated), omitted when empty
};

// Header {"alg":"HS256","typ":"JWT"[,"kid":...]}, claims {"sub","iat":now,"exp":now+ttl
// [,"iss"][,"aud"][,"ferry_tunnels"][,"scope"]}. Strings must be valid UTF-8 and within limits{} (so that
// verify() with default limits accepts the result). errc::invalid_argument with a static reason
// otherwise; errc::jwks_invalid for a secret shorter than 32 bytes.
result<std::string> mint_hs256(bytes secret, const mint_request& req, unix_time now);

}  // namespace ferry::jwt
