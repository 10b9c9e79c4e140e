#pragma once
// ferry::jwt — JSON Web Tokens for agent and consumer authentication (SPEC §4, R4).
//
//   keys.hh      alg, key, key_set (immutable, shared between shards), key_set_builder (HS256
//                secrets, JWK sets), hs256_secret_from_file
//   token.hh     limits, verify_options, claims, verify(), inspect(); the error codes
//   cache.hh     token_cache: per-shard verified-token cache
//   verifier.hh  verifier: per-shard key set snapshot + options + cache
//   mint.hh      mint_hs256() for `ferry token`
//   base64url.hh, json.hh: the strict codecs underneath
#include "proto/jwt/base64url.hh"
#include "proto/jwt/cache.hh"
#include "proto/jwt/json.hh"
#include "proto/jwt/keys.hh"
#include "proto/jwt/mint.hh"
#include "proto/jwt/token.hh"
#include "proto/jwt/verifier.hh"
