// Fuzz target `jwt`: token parsing and verification, JWK set loading, and the strict codecs
// underneath, against the fixed key set of tests/proto/jwt/jwt_vectors.hh (RSA-2048/4096, P-256,
// Ed25519 JWKs plus an unnamed HS256 secret).
//
// Input layout: byte 0 picks the mode (low 2 bits) and a variant (the rest); then
//   mode 0  the rest is a token: verify() under one of four option sets, with invariants:
//           - the cached verifier (asked twice) gives the same verdict and claims as verify();
//           - a verified token is also readable by inspect(), with the same sub/exp/tunnels;
//           - success implies an allowed algorithm and a non-empty sub.
//   mode 1  two chunks (a length byte, then that many bytes): header JSON and claims JSON. They
//           are base64url-encoded and signed with the HS256 secret, so the fuzzer gets past the
//           signature into header rules, claim parsing and the time/iss/aud checks; same
//           invariants as mode 0.
//   mode 2  the rest is a JWK set: add_jwks(); if it loads, the built set verifies the vector
//           tokens without crashing, and its kids are unique.
//   mode 3  the rest goes to base64url::decode (an accepted text must be the canonical encoding
//           of its bytes) and json::parse under tight limits.
// Tokens arrive whole (one header value), so there is no streaming parser to split; chunks here
// delimit the two JSON documents of mode 1 (STYLE 12's length-byte convention).
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <set>
#include <string>
#include <string_view>

#include "../tests/proto/jwt/jwt_vectors.hh"
#include "proto/jwt/jwt.hh"
#include "proto/jwt/sig.hh"

using namespace ferry;
using namespace ferry::jwt;

namespace {

#define CHECK(c)                                                                       \
    do {                                                                               \
        if (!(c)) {                                                                    \
            std::fprintf(stderr, "jwt_fuzz invariant failed: %s (line %d)\n", #c, __LINE__); \
            std::abort();                                                              \
        }                                                                              \
    } while (0)

const std::shared_ptr<const key_set>& keys() {
    static const std::shared_ptr<const key_set> ks = [] {
        key_set_builder b;
        CHECK(b.add_jwks(jwt_vectors::kJwks));
        CHECK(b.add_hs256_secret(as_bytes(jwt_vectors::kHs256Secret)));
        return b.build();
    }();
    return ks;
}

verify_options options(unsigned variant) {
    verify_options o;
    switch (variant & 3) {
    case 0: break;
    case 1:
        o.issuer = "https://issuer.example";
        o.audiences = {"ferry-relay", "other"};
        break;
    case 2: o.allowed = {alg::rs256, alg::eddsa}; break;
    case 3:
        o.leeway = 0;
        o.require_exp = false;
        o.reject_future_iat = false;
        break;
    }
    if (variant & 4) {
        o.lim.max_token = 512;
        o.lim.max_claims = 4;
        o.lim.max_depth = 2;
        o.lim.max_kidless_keys = 1;
    }
    return o;
}

bool same_claims(const claims& a, const claims& b) {
    return a.sub == b.sub && a.exp == b.exp && a.nbf == b.nbf && a.iat == b.iat && a.iss == b.iss &&
           a.aud == b.aud && a.tunnels == b.tunnels && a.algorithm == b.algorithm && a.kid == b.kid;
}

void check_token(std::string_view token, unsigned variant) {
    const verify_options o = options(variant);
    const std::int64_t now = jwt_vectors::kNow + std::int64_t(variant >> 3) * 1000;
    auto r = verify(token, *keys(), o, now);
    cache_options small;
    small.capacity = 4;  // a fresh 10 000-entry table per input would dominate the run time
    verifier v(keys(), o, small);
    for (int round = 0; round < 2; ++round) {
        auto c = v.verify(token, now);
        CHECK(bool(c) == bool(r));
        if (r) CHECK(same_claims(**c, *r));
        else CHECK(c.code() == r.code());
    }
    if (!r) {
        CHECK(is_token_error(r.code()) || r.code() == errc::crypto);
        return;
    }
    CHECK(o.allowed.contains(r->algorithm));
    CHECK(!r->sub.empty());
    auto i = inspect(token, o.lim);
    CHECK(i);
    CHECK(i->sub == r->sub && i->exp == r->exp && i->tunnels == r->tunnels);
}

std::string hs_sign(std::string_view header, std::string_view payload) {
    std::string t = base64url::encode(as_bytes(header));
    t += '.';
    t += base64url::encode(as_bytes(payload));
    detail::digest mac{};
    CHECK(detail::hmac_sha256(as_bytes(jwt_vectors::kHs256Secret), as_bytes(t), mac));
    t += '.';
    t += base64url::encode(mac);
    return t;
}

void check_jwks(std::string_view text) {
    key_set_builder b;
    jwks_report rep;
    std::string why;
    auto s = b.add_jwks(text, {}, &rep, &why);
    if (!s) {
        CHECK(s.code() == errc::jwks_invalid && !why.empty() && b.size() == 0);
        return;
    }
    auto ks = b.build();
    std::set<std::string_view> kids;
    for (const key& k : ks->keys()) {
        if (!k.kid().empty()) CHECK(kids.insert(k.kid()).second);
    }
    for (std::string_view name : {"rs256_ok", "es256_ok", "eddsa_ok", "rs256_4096_ok"}) {
        for (const auto& v : jwt_vectors::kTokens) {
            if (v.name != name) continue;
            auto r = verify(v.token, *ks, {}, jwt_vectors::kNow);
            CHECK(r || is_token_error(r.code()));
        }
    }
}

void check_codecs(std::string_view text) {
    auto d = base64url::decode(text);
    if (d) CHECK(base64url::encode(as_bytes(*d)) == text);
    json::limits l;
    l.max_depth = 6;
    l.max_values = 64;
    l.max_members = 16;
    l.max_string = 64;
    json::document doc;
    if (json::parse(text, l, doc)) {
        CHECK(doc.size() >= 1 && doc.size() <= l.max_values);
        // Every object's members are distinct.
        for (std::uint32_t n = 0; n < doc.size(); ++n) {
            const auto& node = doc.at(n);
            if (node.k != json::kind::object) continue;
            std::set<std::string_view> names;
            for (auto i = node.first; i != json::npos; i = doc.at(i).next) CHECK(names.insert(doc.key(doc.at(i))).second);
        }
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    const unsigned mode = data[0] & 3, variant = data[0] >> 2;
    std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);
    switch (mode) {
    case 0: check_token(rest, variant); break;
    case 1: {
        std::string_view parts[2];
        for (auto& p : parts) {
            if (rest.empty()) break;
            std::size_t n = std::min<std::size_t>(std::uint8_t(rest[0]), rest.size() - 1);
            p = rest.substr(1, n);
            rest.remove_prefix(1 + n);
        }
        check_token(hs_sign(parts[0], parts[1]), variant);
        break;
    }
    case 2: check_jwks(rest); break;
    case 3: check_codecs(rest); break;
    }
    return 0;
}
