#pragma once
// Shared by the fuzz targets `ssh_server` and `ssh_client` (and their seed generator
// fuzz/ssh_conn_seeds.cc): one `ssh::session` of the role under test (the victim) driven by
// arbitrary peer bytes, with no special mode in the library.
//
// Every input starts from a fresh pair (no state survives between inputs): the victim and a
// real `session` of the other role (the peer) run an in-memory handshake, and in mode 2 user
// authentication, with deterministic randomness and a fixed host key, so a finding replays
// exactly. Then the fuzz input speaks for the peer. Input layout:
//
//   byte 0: mode = (byte & 0x7f) % 3, flag in the top bit
//     0  raw: the chunks are wire bytes fed to a fresh victim before any handshake (version
//        line, plaintext KEX, ... the seeds carry a whole recorded client/server flight)
//     1  after the handshake, before user authentication: each chunk is a payload that the
//        peer's transport seals (transport_test_access::write_raw) and sends
//     2  the same once both sides are authenticated: connection-protocol payloads
//     bit 7: small limits (window 4096, max_packet 1024, 6 channels, rekey every 16 KiB and
//        every 5 s, 16 KiB rekey queue) so that windows, channel limits and rekeys are reached
//   byte 1: stride: the sealed bytes are fed to the victim in pieces of this many bytes
//     (0: all at once), so every split point of the victim's reassembly is exercised
//   then chunks (STYLE 12): the first byte of each chunk gives its length (0xff: the next two
//   bytes, big-endian). In modes 1 and 2 an empty chunk makes the peer start a real rekey
//   instead (at most 3 per input), and a chunk starting with 0x00 (no message has number 0)
//   seals the rest but holds it back until the next ordinary chunk, so that several messages
//   reach the victim in one feed (e.g. more data than a window before the victim can consume).
//
// The victim behaves like an embedder: it confirms most opens (refuses every third request),
// echoes received data back (bounded, resumed on `writable` and after a rekey), consumes at
// once on even ids and at the end of each step on odd ones, answers EOF with EOF + CLOSE;
// a client victim opens two direct-tcpip channels and a session channel, asks for a forward
// and sends a keepalive once authenticated; a server victim opens a forwarded-tcpip channel
// for each forward its policy accepted. The victim's output goes back to the peer's transport.
//
// Oracles (each a __builtin_trap, i.e. a crash for libFuzzer):
//   - an error from feed()/tick() must leave the session closed (DISCONNECT sent), and later
//     feeds must fail and later sends must write nothing (the same after the peer's DISCONNECT);
//   - feed() must make progress (bounded events per byte);
//   - no more channels than max_channels are ever live;
//   - while the peer only injected payloads the transport passes upward (and its own rekeys),
//     the peer's transport must accept everything the victim writes (a victim that seals a
//     bad packet, or breaks the key exchange, is caught here);
//   - ASan/UBSan/LeakSanitizer in the fuzz build.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "proto/ssh/session.hh"
#include "proto/ssh/wire.hh"
#include "ssh_fuzz_common.hh"

namespace ferry::ssh {
// Test-only raw access (see the friend declaration in transport.hh; tests/proto/ssh/harness.hh
// defines the same).
struct transport_test_access {
    static status write_raw(transport& t, bytes payload, buffer_chain& out) {
        return t.write_now(payload, {}, out);
    }
};
}  // namespace ferry::ssh

namespace ssh_conn_fuzz {

using namespace ferry;
using namespace ferry::ssh;

// -DSSH_CONN_FUZZ_TRACE prints the victim's events (to check what a seed reaches).
#ifdef SSH_CONN_FUZZ_TRACE
#include <cstdio>
#define SSH_FUZZ_TRACE(...) std::fprintf(stderr, __VA_ARGS__)
#else
#define SSH_FUZZ_TRACE(...) \
    do {                    \
    } while (0)
#endif

#define SSH_FUZZ_CHECK(cond) \
    do {                     \
        if (!(cond)) __builtin_trap(); \
    } while (0)

using ssh_fuzz_common::fuzz_rng;

using ssh_fuzz_common::chunks;

// Appends one chunk in the layout `chunks` reads.
inline void put_chunk(std::string& s, ferry::bytes b) {
    if (b.size() < 0xff) {
        s += char(b.size());
    } else {
        s += char(0xff);
        s += char(b.size() >> 8);
        s += char(b.size() & 0xff);
    }
    s.append(reinterpret_cast<const char*>(b.data()), b.size());
}

inline constexpr std::uint8_t kSmallLimits = 0x80;

inline std::array<std::byte, 32> host_seed() {
    std::array<std::byte, 32> s{};
    for (int i = 0; i < 32; ++i) s[i] = std::byte(0x50 + i);
    return s;
}

struct fuzz_auth : auth_policy {
    bool check_password(std::string_view u, std::string_view p) override {
        return u == "fuzz" && p == "pw";
    }
};

struct fuzz_conn_policy : connection_policy {
    struct binding {
        std::string address;
        std::uint32_t port;
        bool opened = false;
    };
    std::vector<binding> bindings;
    bool tcpip_forward(std::string_view address, std::uint32_t port,
                       std::uint32_t& bound_port) override {
        if (address == "deny" || bindings.size() >= 8) return false;
        if (port == 0) bound_port = 4242;
        bindings.push_back({std::string(address), port ? port : 4242});
        return true;
    }
    bool cancel_tcpip_forward(std::string_view address, std::uint32_t) override {
        return address != "deny";
    }
    bool channel_request(std::uint32_t, std::string_view type, bytes) override {
        return type == "exec";
    }
};

struct endpoint {
    fuzz_rng rng;
    std::optional<ed25519_private> host;
    pinned_host_keys verifier{pinned_host_keys::policy::trust_on_first_use};
    fuzz_auth auth;
    fuzz_conn_policy policy;
    connection_limits limits;
    std::optional<session> s;
    buffer_chain out;
    millis now = 1000;
    bool dead = false;    // an error was returned (victim) or the peer stopped
    bool raw = false;     // peer: input goes to the transport only

    endpoint(role r, std::uint64_t seed, bool small) : rng(seed) {
        session_config cfg;
        cfg.transport.self = r;
        cfg.transport.random = &rng;
        if (r == role::server) {
            host.emplace(ed25519_private::from_seed(host_seed()).value());
            cfg.transport.host_key = &*host;
        } else {
            cfg.transport.verifier = &verifier;
        }
        cfg.auth_server.policy = &auth;
        cfg.auth_server.banner = "fuzz";
        cfg.auth_server.limits.failure_delay = 300;
        cfg.auth_client.user = "fuzz";
        cfg.auth_client.password = "pw";
        cfg.connection.policy = &policy;
        if (small) {
            cfg.connection.limits.window = 4096;
            cfg.connection.limits.max_packet = 1024;
            cfg.connection.limits.max_channels = 6;
            cfg.connection.limits.max_outstanding_requests = 4;
            cfg.connection.limits.max_forwards = 2;
            cfg.transport.limits.rekey_bytes = 16 * 1024;
            cfg.transport.limits.rekey_interval = 5000;
            cfg.transport.limits.max_kex_queue_bytes = 16 * 1024;
        }
        limits = cfg.connection.limits;
        s.emplace(std::move(cfg));
        dead = !s->start(out, now);
    }

    std::vector<std::byte> take() {
        std::string str = out.to_string();
        out.clear();
        return {reinterpret_cast<const std::byte*>(str.data()),
                reinterpret_cast<const std::byte*>(str.data()) + str.size()};
    }
};

// The embedder around the victim session.
struct victim : endpoint {
    struct chan {
        std::vector<std::byte> echo;  // received, not yet sent back
        std::uint64_t unconsumed = 0;
    };
    std::vector<chan> chans;
    bool opened_own = false;
    int forwards_opened = 0;
    std::uint32_t open_requests = 0;
    std::uint64_t events = 0;

    victim(role r, bool small) : endpoint(r, 11, small) {}

    chan& ch(std::uint32_t id) {
        if (id >= chans.size()) chans.resize(id + 1);
        return chans[id];
    }

    // After an error: the session must be closed and stay inert.
    void check_dead() {
        SSH_FUZZ_CHECK(s->closed());
        out.clear();
        std::byte junk[40] = {};
        mut_bytes in(junk);
        SSH_FUZZ_CHECK(!s->feed(in, out, now));
        for (std::uint32_t id = 0; id < 4; ++id) {
            (void)s->conn().send_data(id, bytes(junk, 8), out);
            (void)s->conn().consumed(id, 1, out);
            (void)s->conn().close(id, out);
        }
        (void)s->conn().send_keepalive(out);
        (void)s->conn().open_direct_tcpip("x", 1, "y", 2, out);
        SSH_FUZZ_CHECK(out.empty());
    }
    void fatal(const error& e) {
        SSH_FUZZ_TRACE("  victim: error %s (%s), closed=%d reason=%u\n", to_string(e.code),
                       e.detail, int(s->closed()), unsigned(s->transport().close_reason()));
        (void)e;
        dead = true;
        check_dead();
    }

    void flush(std::uint32_t id) {
        chan& c = ch(id);
        if (c.echo.empty() || !s->conn().is_open(id)) return;
        auto n = s->conn().send_data(id, c.echo, out);
        if (!n) return;  // the embedder's call failed (closed channel, ...): nothing to do
        SSH_FUZZ_CHECK(*n <= c.echo.size());
        c.echo.erase(c.echo.begin(), c.echo.begin() + static_cast<std::ptrdiff_t>(*n));
    }

    void on_event(const session_event& ev) {
        SSH_FUZZ_TRACE("  victim: %s %s id=%u n=%zu ok=%d reason=%u\n", to_string(ev.type),
                       ev.type == session_event_type::channel ? to_string(ev.conn.type) : "",
                       ev.conn.id, ev.conn.data.size(), int(ev.conn.ok), unsigned(ev.reason));
        if (ev.type == session_event_type::disconnected) {
            dead = true;
            check_dead();  // the peer ended it: the session is just as inert
            return;
        }
        if (ev.type == session_event_type::authenticated && s->transport().self() == role::client &&
            !opened_own) {
            opened_own = true;
            (void)s->conn().open_direct_tcpip("fuzz-target", 80, "127.0.0.1", 5000, out);
            (void)s->conn().open_direct_tcpip("fuzz-target", 443, "127.0.0.1", 5001, out);
            (void)s->conn().open("session", {}, out);
            (void)s->conn().request_tcpip_forward("fuzz", 0, out);
            (void)s->conn().send_keepalive(out);
            return;
        }
        if (ev.type == session_event_type::rekey_done) {
            // Collect first: sending may start the next rekey and block a channel again.
            std::vector<std::uint32_t> ids;
            while (auto id = s->conn().writable_after_kex()) {
                ids.push_back(*id);
                SSH_FUZZ_CHECK(ids.size() <= limits.max_channels);
            }
            for (auto id : ids) flush(id);
            return;
        }
        if (ev.type != session_event_type::channel) return;
        const conn_event& c = ev.conn;
        switch (c.type) {
        case conn_event_type::open_request:
            if (++open_requests % 3 == 0) {
                (void)s->conn().refuse_open(c.id, open_failure::connect_failed, "no", out);
            } else {
                ch(c.id) = chan{};
                (void)s->conn().confirm_open(c.id, out);
            }
            break;
        case conn_event_type::opened: {
            ch(c.id) = chan{};
            static const char hello[] = "hello";
            (void)s->conn().send_data(c.id, as_bytes(std::string_view(hello, 5)), out);
            break;
        }
        case conn_event_type::data: {
            chan& k = ch(c.id);
            std::size_t room = 65536 - std::min<std::size_t>(k.echo.size(), 65536);
            std::size_t n = std::min(room, c.data.size());
            k.echo.insert(k.echo.end(), c.data.begin(), c.data.begin() + static_cast<std::ptrdiff_t>(n));
            if (c.id % 2 == 0) {
                (void)s->conn().consumed(c.id, c.data.size(), out);
            } else {
                k.unconsumed += c.data.size();
            }
            flush(c.id);
            break;
        }
        case conn_event_type::eof:
            flush(c.id);
            (void)s->conn().send_eof(c.id, out);
            (void)s->conn().close(c.id, out);
            break;
        case conn_event_type::writable: flush(c.id); break;
        case conn_event_type::closed: ch(c.id) = chan{}; break;
        default: break;
        }
        SSH_FUZZ_CHECK(s->conn().open_channels() <= limits.max_channels);
    }

    // Feeds peer bytes in pieces of `stride` (0: at once).
    void feed(std::vector<std::byte> wire, std::size_t stride) {
        mut_bytes all(wire);
        while (!all.empty() && !dead) {
            std::size_t k = stride ? std::min(stride, all.size()) : all.size();
            mut_bytes in = all.first(k);
            all = all.subspan(k);
            // One event per message; a message takes at least one packet of >= 16 bytes
            // (the version line and banners are bounded too).
            std::uint64_t budget = in.size() + 64;
            while (!dead) {
                SSH_FUZZ_CHECK(budget-- > 0);
                auto ev = s->feed(in, out, now);
                if (!ev) {
                    fatal(ev.err());
                    return;
                }
                ++events;
                if (ev->type == session_event_type::need_more) break;
                on_event(*ev);
            }
        }
    }

    // The end of a step: deferred consumption, time, forwarded channels.
    void step() {
        if (dead) return;
        for (std::uint32_t id = 0; id < chans.size(); ++id) {
            if (chans[id].unconsumed && s->conn().is_open(id)) {
                (void)s->conn().consumed(id, chans[id].unconsumed, out);
                chans[id].unconsumed = 0;
            }
        }
        now += 100;
        if (millis d = s->next_deadline(); d && d <= now) {
            auto ev = s->tick(out, now);
            if (!ev) return fatal(ev.err());
            on_event(*ev);
        }
        if (s->transport().self() == role::server && s->authenticated()) {
            for (auto& b : policy.bindings) {
                if (b.opened || forwards_opened >= 4) continue;
                b.opened = true;
                ++forwards_opened;
                (void)s->conn().open_forwarded_tcpip(b.address, b.port, "192.0.2.1", 6000, out);
            }
        }
    }
};

// The other role: a real session for the handshake (and authentication), then raw.
struct peer : endpoint {
    bool trusted = true;  // only payloads the transport passes upward were injected
    int rekeys = 0;

    explicit peer(role r, bool small) : endpoint(r, 12, small) {}

    void feed(std::vector<std::byte> wire) {
        mut_bytes in(wire);
        while (!dead) {
            if (raw) {
                auto ev = s->transport().feed(in, out, now);
                if (!ev) {
                    // Our own transport refused what the victim wrote.
                    SSH_FUZZ_CHECK(!trusted);
                    dead = true;
                    return;
                }
                if (ev->type == event_type::need_more) return;
                if (ev->type == event_type::disconnected) dead = true;
                continue;
            }
            auto ev = s->feed(in, out, now);
            if (!ev) {
                dead = true;
                return;
            }
            if (ev->type == session_event_type::need_more) return;
            if (ev->type == session_event_type::disconnected) dead = true;
        }
    }
    // Seals one payload for the victim (empty: start a rekey instead). Returns false when the
    // payload is to be held back with the next one (leading 0x00).
    bool inject(std::vector<std::byte> payload) {
        if (dead) return true;
        if (payload.empty()) {
            if (++rekeys <= 3 && !s->transport().in_kex()) {
                if (!s->transport().rekey(out, now)) dead = true;
            }
            return true;
        }
        bool hold = false;
        if (payload[0] == std::byte{0} && payload.size() > 1) {
            payload.erase(payload.begin());
            hold = true;
        }
        auto m = std::to_integer<std::uint8_t>(payload[0]);
        // Anything the transport handles itself (KEX messages, NEWKEYS, EXT_INFO, ...) may
        // desynchronise our transport from the victim's: stop judging the victim's output.
        if (m < msg::userauth_first && m != msg::ignore && m != msg::debug &&
            m != msg::service_request && m != msg::service_accept) {
            trusted = false;
        }
        // While our rekey runs the victim may only see KEX messages (strict KEX): those
        // injected now are expected violations, not victim bugs.
        if (s->transport().in_kex()) trusted = false;
        if (!transport_test_access::write_raw(s->transport(), payload, out)) dead = true;
        return !hold;
    }
};

inline role other(role r) { return r == role::server ? role::client : role::server; }

// Brings a fresh victim and peer to the state `mode` asks for (1: handshake done; 2: both
// authenticated, the victim's own opening moves answered). Traps if the pair cannot get there:
// that would be a harness bug, or a regression the fuzzer must not hide.
inline void establish(victim& v, peer& p, int mode) {
    p.raw = mode == 1;
    for (int i = 0; i < 32; ++i) {
        bool ready = v.s->transport().established() && p.s->transport().established() &&
                     (mode == 1 || (v.s->authenticated() && p.s->authenticated()));
        if (ready && v.out.empty() && p.out.empty()) break;
        v.feed(p.take(), 0);
        v.step();
        p.feed(v.take());
        SSH_FUZZ_CHECK(!v.dead && !p.dead);
    }
    SSH_FUZZ_CHECK(v.s->transport().established());
    if (mode == 2) SSH_FUZZ_CHECK(v.s->authenticated() && p.s->authenticated());
    p.raw = true;
}

// One input against a victim of role `r` (see the layout at the top of this file).
inline void run(role r, const std::uint8_t* data, std::size_t size) {
    if (size < 2) return;
    const int mode = (data[0] & 0x7f) % 3;
    const bool small = data[0] & kSmallLimits;
    const std::size_t stride = data[1];
    chunks in(data + 2, size - 2);
    victim v(r, small);
    SSH_FUZZ_CHECK(!v.dead);
    if (mode == 0) {
        v.out.clear();
        while (!in.done() && !v.dead) {
            v.feed(in.next(), stride);
            v.step();
            v.out.clear();
        }
        return;
    }
    peer p(other(r), small);
    SSH_FUZZ_CHECK(!p.dead);
    establish(v, p, mode);
    while (!in.done() && !v.dead && !p.dead) {
        if (!p.inject(in.next())) continue;
        // Deliver; let both answer (rekeys need a few round trips).
        for (int i = 0; i < 6 && !v.dead && !p.dead; ++i) {
            auto w = p.take();
            // Idle, unless an authentication answer is being held back (its delay passes
            // with the steps; before authentication next_deadline() is only that).
            bool held = !v.s->authenticated() && v.s->next_deadline() != 0;
            if (w.empty() && v.out.empty() && !held) break;
            v.feed(std::move(w), stride);
            v.step();
            p.feed(v.take());
        }
    }
}

}  // namespace ssh_conn_fuzz
