#pragma once
// In-memory SSH sessions for tests: a client and a server `ssh::session` joined by two byte
// streams, pumped until quiescent (ticking held-back auth answers on the way). No sockets.
//
//   session_pair p;                 // password auth by default; see session_options
//   p.connect();                    // handshake + authentication, both sides `authenticated`
//   auto id = p.c.conn().open_direct_tcpip("target", 22, "origin", 1, p.c.out).value();
//   p.pump();
//   p.s.last(conn_event_type::open_request) ...
//
// Each side records copies of its events (`recorded_session_event`) and per-channel receive
// statistics (bytes, checksum, eof, closed); data is acknowledged with consumed() at once
// unless `auto_consume` is false. A side can be switched to `raw` mode: its input then goes to
// its transport directly (key exchanges still answered) and upper-layer payloads are recorded
// unparsed, so a test sees exactly what the other side sent and can answer with anything
// (transport_test_access::write_raw seals any payload).
#include <gtest/gtest.h>

#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "harness.hh"
#include "proto/ssh/session.hh"

namespace ferry::ssh::test {

// FNV-1a 64, to compare streams without keeping them.
struct stream_sum {
    std::uint64_t h = 0xcbf29ce484222325ull;
    std::uint64_t n = 0;
    void add(bytes b) {
        for (std::byte x : b) {
            h ^= std::to_integer<std::uint8_t>(x);
            h *= 0x100000001b3ull;
        }
        n += b.size();
    }
    bool operator==(const stream_sum&) const = default;
};

// A reproducible byte pattern per (stream, offset): no two channels carry the same bytes.
inline std::byte pattern_byte(std::uint32_t stream, std::uint64_t off) {
    std::uint64_t x = (off + 1) * 0x9E3779B97F4A7C15ull ^ (std::uint64_t(stream) << 32 | stream);
    x ^= x >> 29;
    return std::byte(x & 0xff);
}
inline std::vector<std::byte> pattern(std::uint32_t stream, std::uint64_t off, std::size_t n) {
    std::vector<std::byte> v(n);
    for (std::size_t i = 0; i < n; ++i) v[i] = pattern_byte(stream, off + i);
    return v;
}

struct test_auth_policy : auth_policy {
    bool none_ok = false;
    std::string user = "agent";
    std::string password = "s3cret";
    std::vector<std::vector<std::byte>> keys;
    bool allow_none(std::string_view u) override { return none_ok && u == user; }
    bool check_password(std::string_view u, std::string_view pw) override {
        return u == user && pw == password;
    }
    bool check_publickey(std::string_view u, user_key_alg, bytes blob) override {
        if (u != user) return false;
        for (auto& k : keys) {
            if (std::equal(k.begin(), k.end(), blob.begin(), blob.end())) return true;
        }
        return false;
    }
};

// Records every call; answers from configurable fields.
struct test_conn_policy : connection_policy {
    struct forward_call {
        std::string address;
        std::uint32_t port;
    };
    struct request_call {
        std::uint32_t id;
        std::string type;
        std::vector<std::byte> data;
    };
    bool allow_forward = true;
    std::uint32_t port_for_zero = 40000;  // what a port-0 forward binds
    bool allow_cancel = true;
    std::vector<std::string> accepted_requests;  // channel request types answered "yes"
    std::vector<forward_call> forwards, cancels;
    std::vector<request_call> requests;

    bool tcpip_forward(std::string_view address, std::uint32_t port,
                       std::uint32_t& bound_port) override {
        forwards.push_back({std::string(address), port});
        if (!allow_forward) return false;
        if (port == 0) bound_port = port_for_zero;
        return true;
    }
    bool cancel_tcpip_forward(std::string_view address, std::uint32_t port) override {
        cancels.push_back({std::string(address), port});
        return allow_cancel;
    }
    bool channel_request(std::uint32_t id, std::string_view type, bytes data) override {
        requests.push_back({id, std::string(type), {data.begin(), data.end()}});
        for (auto& t : accepted_requests) {
            if (t == type) return true;
        }
        return false;
    }
};

// A copy of one session event (views in the original die at the next call).
struct recorded_session_event {
    session_event_type type{};
    conn_event_type ctype = conn_event_type::none;
    std::uint32_t id = 0;
    std::string open_type, host, origin_host;
    std::uint32_t port = 0, origin_port = 0;
    std::vector<std::byte> data;
    std::uint32_t ext = 0;
    open_failure reason{};
    std::string text;
    global_kind request{};
    bool ok = false;
    std::string user, method;
    disconnect_reason dreason = disconnect_reason::none;
};

struct channel_rx {
    stream_sum sum;          // normal data
    stream_sum ext_sum;      // extended data
    std::uint64_t unconsumed = 0;
    bool eof = false;
    bool closed = false;
    std::size_t writable = 0;  // `writable` events seen
};

struct session_options {
    bool password = true;                 // client offers the password
    bool publickey = false;               // client offers an ed25519 key (authorised)
    bool none = false;                    // server accepts "none"
    millis failure_delay = 0;             // server auth failure delay
    bool library_policy = false;          // connection_config::policy = null (library defaults)
    connection_limits client_limits, server_limits;
    transport_limits client_transport, server_transport;
};

struct session_endpoint {
    counting_rng rng;
    std::optional<ed25519_private> host;
    std::optional<ed25519_private> user_key;
    pinned_host_keys verifier{pinned_host_keys::policy::trust_on_first_use};
    test_auth_policy auth;
    test_conn_policy policy;
    std::unique_ptr<session> s;
    buffer_chain out;
    std::vector<recorded_session_event> events;
    std::map<std::uint32_t, channel_rx> rx;
    bool failed = false;
    error err;
    millis now = 1000;
    bool auto_consume = true;
    bool consume_failed = false;
    bool raw = false;  // input goes to the transport; payloads land in raw_msgs
    std::vector<std::vector<std::byte>> raw_msgs;
    // Called for every event after it was recorded (may call into the session).
    std::function<void(session_endpoint&, const session_event&)> on_event;

    session_endpoint(role r, std::uint64_t seed, const session_options& o) : rng(seed) {
        session_config cfg;
        cfg.transport.self = r;
        cfg.transport.random = &rng;
        cfg.connection.policy = o.library_policy ? nullptr : &policy;
        if (r == role::server) {
            host.emplace(ed25519_private::from_seed(host_seed()).value());
            cfg.transport.host_key = &*host;
            cfg.transport.limits = o.server_transport;
            cfg.auth_server.policy = &auth;
            cfg.auth_server.limits.failure_delay = o.failure_delay;
            cfg.connection.limits = o.server_limits;
            auth.none_ok = o.none;
        } else {
            cfg.transport.verifier = &verifier;
            cfg.transport.limits = o.client_transport;
            cfg.auth_client.user = "agent";
            if (o.password) cfg.auth_client.password = "s3cret";
            if (o.publickey) {
                std::array<std::byte, 32> key_seed{};
                key_seed[0] = std::byte{7};
                user_key.emplace(ed25519_private::from_seed(key_seed).value());
                cfg.auth_client.key = &*user_key;
            }
            cfg.connection.limits = o.client_limits;
        }
        s = std::make_unique<session>(std::move(cfg));
    }

    connection& conn() { return s->conn(); }
    void start() { ASSERT_TRUE(s->start(out, now)); }

    void record(const session_event& ev) {
        recorded_session_event r;
        r.type = ev.type;
        r.user = ev.user;
        r.method = ev.method;
        r.text = ev.text;
        r.dreason = ev.reason;
        if (ev.type == session_event_type::channel) {
            const conn_event& c = ev.conn;
            r.ctype = c.type;
            r.id = c.id;
            r.open_type = c.open.type;
            r.host = c.open.host;
            r.port = c.open.port;
            r.origin_host = c.open.origin_host;
            r.origin_port = c.open.origin_port;
            r.data.assign(c.data.begin(), c.data.end());
            r.ext = c.ext;
            r.reason = c.reason;
            r.text = c.text;
            r.request = c.request;
            r.ok = c.ok;
            if (c.type == conn_event_type::global_reply) r.port = c.port;
            // A new channel on a reused id starts with fresh statistics.
            if (c.type == conn_event_type::open_request || c.type == conn_event_type::opened) {
                rx[c.id] = channel_rx{};
            }
            auto& ch = rx[c.id];
            switch (c.type) {
            case conn_event_type::data:
                (c.ext ? ch.ext_sum : ch.sum).add(c.data);
                ch.unconsumed += c.data.size();
                break;
            case conn_event_type::eof: ch.eof = true; break;
            case conn_event_type::closed: ch.closed = true; break;
            case conn_event_type::writable: ++ch.writable; break;
            default: break;
            }
        }
        events.push_back(std::move(r));
    }

    // Acknowledges every received byte not yet consumed on `id`.
    void consume(std::uint32_t id) {
        auto& ch = rx[id];
        if (ch.unconsumed == 0) return;
        auto st = conn().consumed(id, ch.unconsumed, out);
        if (!st) {
            // Reported once per side: a failing consumed() tends to fail for every message.
            if (!consume_failed) ADD_FAILURE() << "consumed(): " << to_string(st.code()) << " " << st.err().detail;
            consume_failed = true;
            return;
        }
        ch.unconsumed = 0;
    }
    void consume_all() {
        for (auto& [id, ch] : rx) {
            if (ch.unconsumed && conn().is_open(id)) consume(id);
        }
    }

    void feed(std::vector<std::byte> wire) {
        mut_bytes in(wire);
        for (int guard = 0; !failed; ++guard) {
            ASSERT_LT(guard, 1000000) << "feed does not converge";
            if (raw) {
                auto ev = s->transport().feed(in, out, now);
                if (!ev) {
                    failed = true;
                    err = ev.err();
                    return;
                }
                if (ev->type == event_type::need_more) return;
                if (ev->type == event_type::message) {
                    raw_msgs.emplace_back(ev->payload.begin(), ev->payload.end());
                }
                if (ev->type == event_type::unimplemented) {
                    // The transport consumes UNIMPLEMENTED itself; record it as on the wire.
                    std::vector<std::byte> m;
                    writer(m).u8(msg::unimplemented).u32(ev->seq);
                    raw_msgs.push_back(std::move(m));
                }
                if (ev->type == event_type::disconnected) {
                    recorded_session_event r;
                    r.type = session_event_type::disconnected;
                    r.dreason = ev->reason;
                    r.text = ev->text;
                    events.push_back(std::move(r));
                }
                continue;
            }
            auto ev = s->feed(in, out, now);
            if (!ev) {
                failed = true;
                err = ev.err();
                return;
            }
            if (ev->type == session_event_type::need_more) return;
            handle(*ev);
        }
    }
    void handle(const session_event& ev) {
        record(ev);
        if (ev.type == session_event_type::channel && ev.conn.type == conn_event_type::data &&
            auto_consume) {
            consume(ev.conn.id);
        }
        if (on_event) on_event(*this, ev);
    }
    // Runs tick() when its deadline has come.
    void tick() {
        if (failed || raw) return;
        millis d = s->next_deadline();
        if (d == 0 || d > now) return;
        auto ev = s->tick(out, now);
        if (!ev) {
            failed = true;
            err = ev.err();
            return;
        }
        if (ev->type != session_event_type::need_more) handle(*ev);
    }

    // ---- queries on recorded events -----------------------------------------------------
    std::size_t count(conn_event_type t) const {
        std::size_t n = 0;
        for (auto& e : events) n += e.type == session_event_type::channel && e.ctype == t;
        return n;
    }
    std::size_t count(session_event_type t) const {
        std::size_t n = 0;
        for (auto& e : events) n += e.type == t;
        return n;
    }
    // The last event of that type (fails the test when there is none).
    const recorded_session_event* last(conn_event_type t) const {
        for (auto it = events.rbegin(); it != events.rend(); ++it) {
            if (it->type == session_event_type::channel && it->ctype == t) return &*it;
        }
        ADD_FAILURE() << "no event " << to_string(t);
        return nullptr;
    }
    const recorded_session_event* last(session_event_type t) const {
        for (auto it = events.rbegin(); it != events.rend(); ++it) {
            if (it->type == t) return &*it;
        }
        ADD_FAILURE() << "no session event " << to_string(t);
        return nullptr;
    }
    std::vector<std::uint8_t> raw_types() const {
        std::vector<std::uint8_t> v;
        for (auto& m : raw_msgs) v.push_back(m.empty() ? 0 : std::to_integer<std::uint8_t>(m[0]));
        return v;
    }
};

struct session_pair {
    session_options opt;
    session_endpoint c, s;

    explicit session_pair(session_options o = {})
        : opt(o), c(role::client, 71, opt), s(role::server, 72, opt) {
        if (o.publickey) s.auth.keys.push_back(ed25519_key_blob(c.user_key->public_key()));
    }

    // Moves bytes both ways until neither side has output; runs due ticks; when both are idle
    // and a tick is pending, advances both clocks to it (auth failure delays).
    void pump(bool advance_time = true) {
        for (int i = 0; i < 100000; ++i) {
            c.tick();
            s.tick();
            if (c.out.empty() && s.out.empty()) {
                if (!advance_time) return;
                millis d = 0;
                for (auto* e : {&c, &s}) {
                    if (e->failed || e->raw) continue;
                    millis x = e->s->next_deadline();
                    // Only auth delays: the rekey interval is an hour away.
                    if (x != 0 && x > e->now && x < e->now + 60000 && (d == 0 || x < d)) d = x;
                }
                if (d == 0) return;
                c.now = s.now = d;
                continue;
            }
            if (!c.out.empty() && !s.failed) s.feed(flatten(c.out));
            else c.out.clear();
            if (!s.out.empty() && !c.failed) c.feed(flatten(s.out));
            else s.out.clear();
        }
        ADD_FAILURE() << "pump did not converge";
    }
    void connect() {
        c.start();
        s.start();
        pump();
        ASSERT_FALSE(c.failed) << c.err.detail;
        ASSERT_FALSE(s.failed) << s.err.detail;
        ASSERT_TRUE(c.s->authenticated());
        ASSERT_TRUE(s.s->authenticated());
    }
};

}  // namespace ferry::ssh::test
