#pragma once
// Compact JWS tokens (RFC 7515 §7.1) carrying JWT claims (RFC 7519): parsing with limits,
// signature verification against a key_set, and claim checks. Sans-IO: the caller passes the
// current time; nothing here reads a clock, a file or a socket.
//
// Order of checks (each failure is final; the first one found is reported):
//   1. size limits, three base64url parts, header JSON;
//   2. `alg` is one of ours, in the allow-list, never "none"; no `crit`; not a JWE;
//   3. key selection (below) and the signature;
//   4. only then the claims: types, `sub`, `iss`, `aud`, then `exp`/`nbf`/`iat` with leeway.
// Claims are never interpreted before the signature holds, so an unsigned or forged token can
// only ever be reported as malformed, unsupported or badly signed, never as "expired".
//
// Key selection (RFC 8725 §3.1: the key decides the algorithm, never the token):
//   * with `kid`: the key with that kid; if it exists its algorithm must equal `alg`
//     (else errc::token_key_mismatch). If no key has that kid, the set's keys of that algorithm
//     that have no kid are tried (an HS256 secret file names no kid; tokens may still carry one).
//   * without `kid`: every key of the token's algorithm, at most limits::max_kidless_keys.
//   * the header's `jwk`, `jku`, `x5c`, `x5u` members are ignored: keys come only from the set.
//
// Error codes (ferry::errc, stable strings from to_string()); the relay answers all of them with
// 401 and `WWW-Authenticate: Bearer error="invalid_token"`, with the message "token expired" for
// token_expired and "invalid token" for the others (see is_expired()):
//   token_malformed        not three base64url parts, bad JSON, a claim of the wrong type, a JWE
//   token_too_large        over a `limits` bound (token, header, payload, claims, strings)
//   token_alg_not_allowed  alg "none", unknown, not in verify_options::allowed, or a `crit` header
//   token_unknown_key      no key for its kid/alg
//   token_key_mismatch     its kid names a key of another algorithm (algorithm confusion attempt)
//   token_bad_signature    the signature does not verify (wrong key, altered token, bad length)
//   token_invalid          `sub` missing or empty; `exp` missing while required
//   token_bad_issuer       `iss` differs from verify_options::issuer (or is missing)
//   token_bad_audience     no `aud` value matches verify_options::audiences, or `aud` present
//                          while no audience is configured (RFC 7519 §4.1.3)
//   token_expired          now >= exp + leeway
//   token_not_yet_valid    now + leeway < nbf, or now + leeway < iat
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "proto/base/result.hh"
#include "proto/jwt/json.hh"
#include "proto/jwt/keys.hh"

namespace ferry::jwt {

// Seconds since the Unix epoch, as the caller's clock reads it.
using unix_time = std::int64_t;

// Bounds on hostile input, checked before anything is decoded or stored. Defaults fit tokens
// from common identity providers with room to spare; HTTP heads are bounded more tightly anyway.
struct limits {
    std::size_t max_token = 8192;         // bytes of the compact token
    std::size_t max_header = 1024;        // bytes of the decoded header JSON
    std::size_t max_payload = 6144;       // bytes of the decoded claims JSON
    std::uint32_t max_depth = 4;          // JSON nesting in header and claims (root = 1)
    std::uint32_t max_claims = 64;        // members of one object / elements of one array
    std::uint32_t max_values = 512;       // JSON values in the claims (containers included)
    std::uint32_t max_string = 1024;      // bytes of one JSON string (unescaped)
    std::uint32_t max_sub = 256;          // bytes of `sub`
    std::uint32_t max_kid = 256;          // bytes of `kid`
    std::uint32_t max_audiences = 16;     // entries of an `aud` array
    std::uint32_t max_tunnels = 64;       // entries of `ferry_tunnels`
    std::uint32_t max_tunnel_name = 253;  // bytes of one `ferry_tunnels` entry
    std::uint32_t max_kidless_keys = 8;   // keys tried for a token without a usable kid
};

struct verify_options {
    alg_set allowed = alg_set::all();   // the algorithm allow-list
    std::string issuer;                 // required `iss`; empty: `iss` is not checked
    std::vector<std::string> audiences; // accepted `aud` values; empty: tokens with `aud` fail
    std::int64_t leeway = 60;           // seconds of clock skew tolerated (negative counts as 0)
    bool require_exp = true;            // tokens without `exp` are token_invalid
    bool reject_future_iat = true;      // `iat` later than now + leeway is token_not_yet_valid
    limits lim;
};

// What a verified token says. NumericDates are whole seconds: a fractional `exp` is rounded down
// and a fractional `nbf`/`iat` up (the stricter reading of each).
struct claims {
    std::string sub;
    std::optional<unix_time> exp, nbf, iat;
    std::optional<std::string> iss;
    std::vector<std::string> aud;       // a string `aud` becomes one entry
    std::vector<std::string> tunnels;   // `ferry_tunnels`: extra tunnels the bearer may use
    // `scope` (RFC 8693 4.2, RFC 9068 2.2.3): space-separated scope tokens; an array of strings
    // (as some identity providers write it) is joined with spaces. Empty when absent.
    std::string scope;
    alg algorithm = alg::hs256;         // the header's `alg` (equal to the verifying key's)
    std::string kid;                    // the header's `kid`, empty if none

    // True if `ferry_tunnels` names `tunnel` (exact match).
    bool grants(std::string_view tunnel) const noexcept;
    // True if `scope` holds `token` as one of its space-separated entries (exact match).
    bool has_scope(std::string_view token) const noexcept;
};

// True for the code the relay reports as "expired" rather than "invalid".
constexpr bool is_expired(errc e) noexcept { return e == errc::token_expired; }
// True for every code verify() can return except errc::crypto (a wolfCrypt failure: 500 rather
// than 401).
constexpr bool is_token_error(errc e) noexcept {
    return e >= errc::token_malformed && e <= errc::token_invalid;
}

// Reusable buffers for verify(); one per shard avoids allocating on every call.
struct scratch {
    std::string header, payload;
    std::vector<std::byte> sig;
    json::document hdoc, pdoc;
};

// Verifies `token` with `keys` at time `now`. See the top of this file for the checks and codes.
result<claims> verify(std::string_view token, const key_set& keys, const verify_options& opt,
                      unix_time now, scratch& s);
inline result<claims> verify(std::string_view token, const key_set& keys, const verify_options& opt,
                             unix_time now) {
    scratch s;
    return verify(token, keys, opt, now, s);
}

// Decodes header and claims WITHOUT checking the signature or any time/iss/aud rule, for
// `ferry token inspect` and diagnostics. Never use the result to authorise anything.
// Same limits and type rules as verify(); `sub` may be missing (empty).
result<claims> inspect(std::string_view token, const limits& lim = {});

}  // namespace ferry::jwt
