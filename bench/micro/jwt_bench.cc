// JWT verification per algorithm, with and without the per-shard verified-token cache
// (issue 5). items/s = tokens verified per second on one core.
//   jwt_verify/<alg>/uncached   jwt::verify(): base64url, both JSON documents, the signature,
//                               the claim checks (scratch buffers reused as a shard would).
//   jwt_verify/<alg>/cached     jwt::verifier::verify() on a token already in its cache: hash,
//                               constant-time compare, expiry check.
//   jwt_verify_cached_spread    hits spread over 5000 distinct cached HS256 tokens (the table and
//                               entries no longer sit in L1).
//   jwt_reject/<case>           the cost of refusing hostile tokens (alg none, bad signature).
//   jwt_mint_hs256              `ferry token`.
// The tokens are the PyJWT-made vectors of tests/proto/jwt/jwt_vectors.hh.
#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include "../../tests/proto/jwt/jwt_vectors.hh"
#include "proto/jwt/jwt.hh"

using namespace ferry;
using namespace ferry::jwt;

namespace {

std::string_view vector_token(std::string_view name) {
    for (const auto& v : jwt_vectors::kTokens)
        if (v.name == name) return v.token;
    return {};
}

std::shared_ptr<const key_set> bench_keys() {
    static std::shared_ptr<const key_set> ks = [] {
        key_set_builder b;
        (void)b.add_jwks(jwt_vectors::kJwks);
        (void)b.add_hs256_secret(as_bytes(jwt_vectors::kHs256Secret));
        return b.build();
    }();
    return ks;
}

struct alg_case {
    const char* label;
    const char* vector;
};
const alg_case kCases[] = {
    {"HS256", "hs256_ok"}, {"RS256-2048", "rs256_ok"}, {"RS256-4096", "rs256_4096_ok"},
    {"ES256", "es256_ok"}, {"EdDSA", "eddsa_ok"},
};

void BM_jwt_verify_uncached(benchmark::State& st) {
    const alg_case& c = kCases[st.range(0)];
    auto ks = bench_keys();
    std::string_view tok = vector_token(c.vector);
    verify_options o;
    scratch s;
    for (auto _ : st) {
        auto r = verify(tok, *ks, o, jwt_vectors::kNow, s);
        if (!r) st.SkipWithError(to_string(r.code()));
        benchmark::DoNotOptimize(r);
    }
    st.SetItemsProcessed(st.iterations());
    st.SetLabel(c.label);
}

void BM_jwt_verify_cached(benchmark::State& st) {
    const alg_case& c = kCases[st.range(0)];
    verifier v(bench_keys(), {});
    std::string_view tok = vector_token(c.vector);
    if (!v.verify(tok, jwt_vectors::kNow)) st.SkipWithError("vector does not verify");
    for (auto _ : st) {
        auto r = v.verify(tok, jwt_vectors::kNow);
        benchmark::DoNotOptimize(r);
    }
    if (v.cache().counters().hits < std::uint64_t(st.iterations())) st.SkipWithError("cache missed");
    st.SetItemsProcessed(st.iterations());
    st.SetLabel(c.label);
}

void BM_jwt_verify_cached_spread(benchmark::State& st) {
    verifier v(bench_keys(), {});
    std::vector<std::string> toks;
    for (int i = 0; i < 5000; ++i) {
        mint_request m;
        m.sub = "user-" + std::to_string(i);
        m.tunnels = {"llm"};
        toks.push_back(*mint_hs256(as_bytes(jwt_vectors::kHs256Secret), m, jwt_vectors::kNow));
        (void)v.verify(toks.back(), jwt_vectors::kNow);
    }
    std::size_t i = 0;
    for (auto _ : st) {
        auto r = v.verify(toks[i], jwt_vectors::kNow);
        benchmark::DoNotOptimize(r);
        i = (i + 7) % toks.size();
    }
    if (v.cache().counters().hits < std::uint64_t(st.iterations())) st.SkipWithError("cache missed");
    st.SetItemsProcessed(st.iterations());
}

void BM_jwt_reject(benchmark::State& st) {
    static const char* kReject[] = {"none_empty_sig", "hs256_wrong_secret", "rs256_wrong_key",
                                    "es256_wrong_key", "eddsa_wrong_key"};
    const char* name = kReject[st.range(0)];
    verifier v(bench_keys(), {});
    std::string_view tok = vector_token(name);
    for (auto _ : st) {
        auto r = v.verify(tok, jwt_vectors::kNow);
        benchmark::DoNotOptimize(r);
    }
    st.SetItemsProcessed(st.iterations());
    st.SetLabel(name);
}

void BM_jwt_mint_hs256(benchmark::State& st) {
    mint_request m;
    m.sub = "alice";
    m.tunnels = {"llm", "dev"};
    for (auto _ : st) {
        auto t = mint_hs256(as_bytes(jwt_vectors::kHs256Secret), m, jwt_vectors::kNow);
        benchmark::DoNotOptimize(t);
    }
    st.SetItemsProcessed(st.iterations());
}

}  // namespace

BENCHMARK(BM_jwt_verify_uncached)->Name("jwt_verify/uncached")->DenseRange(0, 4);
BENCHMARK(BM_jwt_verify_cached)->Name("jwt_verify/cached")->DenseRange(0, 4);
BENCHMARK(BM_jwt_verify_cached_spread)->Name("jwt_verify_cached_spread");
BENCHMARK(BM_jwt_reject)->Name("jwt_reject")->DenseRange(0, 4);
BENCHMARK(BM_jwt_mint_hs256)->Name("jwt_mint_hs256");
