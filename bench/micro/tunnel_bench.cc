// The relay's per-request lookups (no I/O): the per-user rate limiter, and routing a consumer
// request to its tunnel through the shard's directory replica, in items/s.
#include <benchmark/benchmark.h>

#include <cstdio>
#include <memory>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

#include "proto/http1/http1.hh"
#include "relay/ingress.hh"
#include "relay/rate_limit.hh"
#include "relay/registry.hh"

using namespace ferry;
using namespace ferry::relay;

namespace {

std::string numbered(const char* prefix, std::size_t i) {
    char b[64];
    std::snprintf(b, sizeof b, "%s%zu", prefix, i);
    return b;
}

// rate_limiter::take as the relay calls it per request: token subjects (IdP-style, 34
// characters: longer than std::string's inline buffer) drawn from `keys` active users, time
// advancing 10 us a request (a busy shard), buckets never empty (limit high).
void BM_rate_limiter_take(benchmark::State& st) {
    const auto n = static_cast<std::size_t>(st.range(0));
    std::vector<std::string> keys;
    for (std::size_t i = 0; i < n; ++i) keys.push_back(numbered("google-oauth2|1083745620983", 1'000'000 + i));
    rate_limiter lim(1'000'000'000, 60);
    std::mt19937 rng(1);
    std::vector<std::uint32_t> order(1 << 16);
    for (auto& o : order) o = static_cast<std::uint32_t>(rng() % n);
    double now = 1000;
    std::size_t i = 0;
    for (auto _ : st) {
        auto d = lim.take(keys[order[i++ & 0xffff]], now);
        now += 1e-5;
        benchmark::DoNotOptimize(d);
    }
    st.SetItemsProcessed(st.iterations());
    st.counters["keys"] = double(lim.keys());
}
BENCHMARK(BM_rate_limiter_take)->Arg(1)->Arg(1000)->Arg(100'000);

// A refused request costs the same lookup; this is the refusing path (limit 1 per minute).
void BM_rate_limiter_refuse(benchmark::State& st) {
    rate_limiter lim(1, 60);
    const std::string key = "google-oauth2|108374562098374650123";
    (void)lim.take(key, 0);
    double now = 1;
    for (auto _ : st) {
        auto d = lim.take(key, now);
        now += 1e-6;
        benchmark::DoNotOptimize(d);
        if (d.allowed) st.SkipWithError("not refused");
    }
    st.SetItemsProcessed(st.iterations());
}
BENCHMARK(BM_rate_limiter_refuse);

// Routing a parsed request head to its tunnel the way consumer_conn does: route_request (path
// "/t/<name>/..." or Host "<name>.<base domain>"), the name copied into the connection's string,
// then the shard's directory replica (`shard_state::directory`) looked up, with `tunnels`
// names registered.
void route_bench(benchmark::State& st, bool by_host) {
    const auto n = static_cast<std::size_t>(st.range(0));
    std::unordered_map<std::string, name_state> directory;
    for (std::size_t i = 0; i < n; ++i) {
        name_state s;
        s.state = name_state::kind::online;
        s.owner = numbered("user-", i);
        s.version = i + 1;
        directory.emplace(numbered("tunnel-", i), std::move(s));
    }
    constexpr std::size_t kHeads = 256;
    std::vector<std::string> msgs;
    std::mt19937 rng(2);
    for (std::size_t i = 0; i < kHeads; ++i) {
        const std::string name = numbered("tunnel-", rng() % n);
        msgs.push_back(by_host ? "GET /api/generate HTTP/1.1\r\nHost: " + name + ".tunnels.example.com\r\n\r\n"
                               : "GET /t/" + name + "/api/generate HTTP/1.1\r\nHost: relay.example.com\r\n\r\n");
    }
    std::vector<std::unique_ptr<http1::request_parser>> parsed;
    for (const auto& m : msgs) {
        auto p = std::make_unique<http1::request_parser>();
        if (!p->parse(as_bytes(m)).done()) {
            st.SkipWithError("parse failed");
            return;
        }
        parsed.push_back(std::move(p));
    }
    std::string scratch, tunnel;
    std::size_t i = 0, found = 0;
    for (auto _ : st) {
        auto r = ingress::route_request(parsed[i++ % kHeads]->head(), "tunnels.example.com", scratch);
        if (!r) {
            st.SkipWithError("route failed");
            break;
        }
        tunnel.assign(r->tunnel);
        auto it = directory.find(tunnel);
        found += it != directory.end();
        benchmark::DoNotOptimize(it);
    }
    if (found != std::size_t(st.iterations())) st.SkipWithError("a name was not found");
    st.SetItemsProcessed(st.iterations());
}
void BM_directory_route_path(benchmark::State& st) { route_bench(st, false); }
void BM_directory_route_host(benchmark::State& st) { route_bench(st, true); }
BENCHMARK(BM_directory_route_path)->Arg(10)->Arg(10'000);
BENCHMARK(BM_directory_route_host)->Arg(10)->Arg(10'000);

// The process-wide registry (mutex; agents' tcpip-forward and the replicas' source, never on a
// consumer request): get() of registered names.
void BM_registry_get(benchmark::State& st) {
    const auto n = static_cast<std::size_t>(st.range(0));
    registry reg;
    const auto now = steady::now();
    std::vector<std::string> names;
    for (std::size_t i = 0; i < n; ++i) {
        names.push_back(numbered("tunnel-", i));
        if (reg.claim(names.back(), "owner", 0, reg.next_session(), now).status != registry::claim_status::ok) {
            st.SkipWithError("claim failed");
            return;
        }
    }
    std::size_t i = 0;
    for (auto _ : st) {
        auto s = reg.get(names[(i++ * 7919) % n], now);
        benchmark::DoNotOptimize(s);
    }
    st.SetItemsProcessed(st.iterations());
}
BENCHMARK(BM_registry_get)->Arg(10'000);

}  // namespace
