#pragma once
// In-memory SSH endpoints for tests: a client and a server transport joined by two byte
// streams, pumped until quiescent. No sockets.
#include <gtest/gtest.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "proto/ssh/transport.hh"
#include "test_util.hh"

namespace ferry::ssh {

// Test-only raw access (see the friend declaration in transport.hh).
struct transport_test_access {
    static status write_raw(transport& t, bytes payload, buffer_chain& out) {
        return t.write_now(payload, {}, out);
    }
};

namespace test {

struct recorded {
    event_type type;
    std::vector<std::byte> payload;
    std::uint32_t seq = 0;
    disconnect_reason reason = disconnect_reason::none;
    std::string text;
};

inline std::vector<std::byte> flatten(buffer_chain& c) {
    std::string s = c.to_string();
    c.clear();
    std::vector<std::byte> v(s.size());
    if (!s.empty()) std::memcpy(v.data(), s.data(), s.size());
    return v;
}

inline bytes host_seed() {
    static const std::array<std::byte, 32> seed = [] {
        std::array<std::byte, 32> s{};
        for (int i = 0; i < 32; ++i) s[i] = std::byte(0x40 + i);
        return s;
    }();
    return seed;
}

struct endpoint {
    counting_rng rng;
    std::optional<ed25519_private> host;
    pinned_host_keys verifier{pinned_host_keys::policy::trust_on_first_use};
    std::unique_ptr<transport> t;
    buffer_chain out;
    std::vector<recorded> events;
    bool failed = false;
    error err;
    millis now = 1000;

    endpoint(role r, std::uint64_t seed, transport_config cfg = {}) : rng(seed) {
        cfg.self = r;
        cfg.random = &rng;
        if (r == role::server) {
            host.emplace(ed25519_private::from_seed(host_seed()).value());
            cfg.host_key = &*host;
        } else {
            cfg.verifier = &verifier;
        }
        t = std::make_unique<transport>(std::move(cfg));
    }
    void start() { ASSERT_TRUE(t->start(out, now)); }

    // Feeds `wire` in chunks; records events (copies) until an error.
    void feed(std::vector<std::byte> wire, std::size_t chunk = 1 << 30) {
        mut_bytes all(wire);
        while (!all.empty() && !failed) {
            mut_bytes in = all.first(std::min(chunk, all.size()));
            all = all.subspan(in.size());
            for (;;) {
                auto ev = t->feed(in, out, now);
                if (!ev) {
                    failed = true;
                    err = ev.err();
                    break;
                }
                if (ev->type == event_type::need_more) break;
                recorded r{ev->type, {ev->payload.begin(), ev->payload.end()}, ev->seq,
                           ev->reason, std::string(ev->text)};
                events.push_back(std::move(r));
            }
        }
    }
    bool has(event_type ty) const {
        for (auto& e : events) {
            if (e.type == ty) return true;
        }
        return false;
    }
    std::size_t count(event_type ty) const {
        std::size_t n = 0;
        for (auto& e : events) n += e.type == ty;
        return n;
    }
    std::vector<std::vector<std::byte>> messages() const {
        std::vector<std::vector<std::byte>> m;
        for (auto& e : events) {
            if (e.type == event_type::message) m.push_back(e.payload);
        }
        return m;
    }
};

// Moves bytes both ways until neither side has output (or a side failed).
inline void pump(endpoint& a, endpoint& b, std::size_t chunk = 1 << 30) {
    for (int i = 0; i < 10000; ++i) {
        if (a.out.empty() && b.out.empty()) return;
        if (!a.out.empty() && !b.failed) b.feed(flatten(a.out), chunk);
        else a.out.clear();
        if (!b.out.empty() && !a.failed) a.feed(flatten(b.out), chunk);
        else b.out.clear();
    }
    ADD_FAILURE() << "pump did not converge";
}

inline std::vector<std::byte> app_payload(std::uint8_t m, std::size_t n, int seed) {
    std::vector<std::byte> p(n + 1);
    p[0] = std::byte(m);
    for (std::size_t i = 1; i <= n; ++i) p[i] = std::byte((i * 131 + seed) & 0xff);
    return p;
}

}  // namespace test
}  // namespace ferry::ssh
