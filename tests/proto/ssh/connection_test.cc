// The connection protocol (RFC 4254) through `ssh::session`, both roles joined in memory (no
// sockets): authentication, channel opens, forwarding, global requests, flow control with many
// channels, rekeying under load, half-close, limits, and peer violations injected as raw
// (sealed) payloads. Helpers: session_harness.hh.
#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <vector>

#include "session_harness.hh"

using namespace ferry;
using namespace ferry::ssh;
using namespace ferry::ssh::test;

namespace {

using ce = conn_event_type;
using V = std::vector<std::vector<std::byte>>;  // payloads

std::vector<std::byte> str_bytes(std::string_view s) {
    return {reinterpret_cast<const std::byte*>(s.data()),
            reinterpret_cast<const std::byte*>(s.data()) + s.size()};
}

std::vector<std::byte> u8s(std::initializer_list<int> l) {
    std::vector<std::byte> v;
    for (int x : l) v.push_back(std::byte(x));
    return v;
}

// Seals `payload` on `from`'s transport as if its connection layer had sent it.
void inject(session_endpoint& from, std::vector<std::byte> payload) {
    ASSERT_TRUE(transport_test_access::write_raw(from.s->transport(), payload, from.out));
}

struct open_pair {
    std::uint32_t cid = 0;  // the client's id
    std::uint32_t sid = 0;  // the server's id for the same channel
};

// Client opens direct-tcpip, server confirms; returns both ids.
open_pair open_direct(session_pair& p, std::string_view host = "target", std::uint32_t port = 22) {
    open_pair o;
    auto id = p.c.conn().open_direct_tcpip(host, port, "198.51.100.7", 40001, p.c.out);
    EXPECT_TRUE(id) << to_string(id.code());
    if (!id) return o;
    o.cid = *id;
    std::size_t before = p.s.count(ce::open_request);
    p.pump();
    EXPECT_EQ(p.s.count(ce::open_request), before + 1);
    auto* rq = p.s.last(ce::open_request);
    if (!rq) return o;
    o.sid = rq->id;
    EXPECT_TRUE(p.s.conn().confirm_open(o.sid, p.s.out));
    p.pump();
    if (auto* op = p.c.last(ce::opened)) {
        EXPECT_EQ(op->id, o.cid);
    }
    return o;
}

// Sends all of `data` on `id` (the window must allow it).
void send_all(session_endpoint& e, std::uint32_t id, bytes data) {
    auto n = e.conn().send_data(id, data, e.out);
    ASSERT_TRUE(n) << to_string(n.code());
    ASSERT_EQ(*n, data.size());
}

stream_sum sum_of(bytes b) {
    stream_sum s;
    s.add(b);
    return s;
}
stream_sum pattern_sum(std::uint32_t stream, std::uint64_t n) {
    stream_sum s;
    s.add(pattern(stream, 0, n));
    return s;
}

// ---- authentication through session ------------------------------------------------------------

TEST(SshSession, PasswordAuthenticatesBothSides) {
    session_pair p;
    p.connect();
    auto* a = p.s.last(session_event_type::authenticated);
    ASSERT_TRUE(a);
    EXPECT_EQ(a->user, "agent");
    EXPECT_EQ(a->method, "password");
    EXPECT_EQ(p.s.s->user(), "agent");
    EXPECT_EQ(p.c.count(session_event_type::authenticated), 1u);
    EXPECT_EQ(p.s.count(session_event_type::authenticated), 1u);
    // A channel works right away.
    auto o = open_direct(p);
    EXPECT_TRUE(p.c.conn().is_open(o.cid));
}

TEST(SshSession, PublickeyAuthenticatesBothSides) {
    session_options o;
    o.password = false;
    o.publickey = true;
    session_pair p(o);
    p.connect();
    auto* a = p.s.last(session_event_type::authenticated);
    ASSERT_TRUE(a);
    EXPECT_EQ(a->method, "publickey");
    EXPECT_EQ(p.c.last(session_event_type::authenticated)->method, "publickey");
}

TEST(SshSession, WrongPasswordNeverAuthenticates) {
    session_pair p;
    p.s.auth.password = "other";
    p.c.start();
    p.s.start();
    p.pump();
    EXPECT_FALSE(p.s.s->authenticated());
    EXPECT_FALSE(p.c.s->authenticated());
    EXPECT_EQ(p.s.count(session_event_type::authenticated), 0u);
    // The client ran out of methods and said so.
    auto* d = p.s.last(session_event_type::disconnected);
    ASSERT_TRUE(d);
    EXPECT_EQ(d->dreason, disconnect_reason::no_more_auth_methods_available);
    EXPECT_TRUE(p.s.s->closed());
}

// A refused key is a counted failure whose answer is held back: authentication by password
// only completes after session::tick() at next_deadline().
TEST(SshSession, HeldBackFailureNeedsTick) {
    session_options o;
    o.publickey = true;
    o.failure_delay = 250;
    session_pair p(o);
    p.s.auth.keys.clear();  // the key is not authorised
    p.c.start();
    p.s.start();
    p.pump(/*advance_time=*/false);
    EXPECT_FALSE(p.s.s->authenticated());
    EXPECT_FALSE(p.c.s->authenticated());
    millis d = p.s.s->next_deadline();
    EXPECT_EQ(d, p.s.now + 250);
    p.pump();  // advances the clocks to the deadline and ticks
    ASSERT_TRUE(p.s.s->authenticated());
    ASSERT_TRUE(p.c.s->authenticated());
    EXPECT_EQ(p.s.last(session_event_type::authenticated)->method, "password");
    EXPECT_GE(p.s.now, 1000u + 250u);
}

// ---- direct-tcpip ------------------------------------------------------------------------------

TEST(SshConnection, DirectTcpipConfirmedCarriesDataBothWays) {
    session_pair p;
    p.connect();
    auto id = p.c.conn().open_direct_tcpip("db.internal", 5432, "10.0.0.9", 40001, p.c.out);
    ASSERT_TRUE(id);
    EXPECT_FALSE(p.c.conn().is_open(*id));  // opening
    p.pump();
    auto* rq = p.s.last(ce::open_request);
    ASSERT_TRUE(rq);
    EXPECT_EQ(rq->open_type, "direct-tcpip");
    EXPECT_EQ(rq->host, "db.internal");
    EXPECT_EQ(rq->port, 5432u);
    EXPECT_EQ(rq->origin_host, "10.0.0.9");
    EXPECT_EQ(rq->origin_port, 40001u);
    EXPECT_EQ(p.c.count(ce::opened), 0u);  // not before the server answers
    std::uint32_t sid = rq->id;
    ASSERT_TRUE(p.s.conn().confirm_open(sid, p.s.out));
    p.pump();
    ASSERT_EQ(p.c.count(ce::opened), 1u);
    EXPECT_EQ(p.c.last(ce::opened)->id, *id);
    EXPECT_TRUE(p.c.conn().is_open(*id));
    EXPECT_TRUE(p.s.conn().is_open(sid));
    EXPECT_EQ(p.c.conn().open_channels(), 1u);
    EXPECT_EQ(p.s.conn().open_channels(), 1u);

    auto up = pattern(1, 0, 5000), down = pattern(2, 0, 7000);
    send_all(p.c, *id, up);
    send_all(p.s, sid, down);
    p.pump();
    EXPECT_EQ(p.s.rx[sid].sum, sum_of(up));
    EXPECT_EQ(p.c.rx[*id].sum, sum_of(down));
    // Extended data is reported with its type code.
    auto err = str_bytes("warning");
    auto n = p.s.conn().send_extended(sid, 1, err, p.s.out);
    ASSERT_TRUE(n);
    EXPECT_EQ(*n, err.size());
    p.pump();
    EXPECT_EQ(p.c.last(ce::data)->ext, 1u);
    EXPECT_EQ(p.c.rx[*id].ext_sum, sum_of(err));
    EXPECT_EQ(p.c.rx[*id].sum, sum_of(down));  // not mixed into the normal stream
}

TEST(SshConnection, DirectTcpipRefusedReportsReasonAndFreesId) {
    session_pair p;
    p.connect();
    auto id = p.c.conn().open_direct_tcpip("nowhere", 9, "127.0.0.1", 1, p.c.out);
    ASSERT_TRUE(id);
    p.pump();
    auto* rq = p.s.last(ce::open_request);
    ASSERT_TRUE(rq);
    std::uint32_t sid = rq->id;
    ASSERT_TRUE(p.s.conn().refuse_open(sid, open_failure::connect_failed, "target said no",
                                       p.s.out));
    EXPECT_EQ(p.s.conn().open_channels(), 0u);
    p.pump();
    auto* f = p.c.last(ce::open_failed);
    ASSERT_TRUE(f);
    EXPECT_EQ(f->id, *id);
    EXPECT_EQ(f->reason, open_failure::connect_failed);
    EXPECT_EQ(f->text, "target said no");
    EXPECT_EQ(p.c.count(ce::opened), 0u);
    EXPECT_FALSE(p.c.conn().is_open(*id));
    EXPECT_EQ(p.c.conn().open_channels(), 0u);
    // Both ids are free again: the next open reuses them.
    auto id2 = p.c.conn().open_direct_tcpip("nowhere", 9, "127.0.0.1", 1, p.c.out);
    ASSERT_TRUE(id2);
    EXPECT_EQ(*id2, *id);
    p.pump();
    EXPECT_EQ(p.s.count(ce::open_request), 2u);
    EXPECT_EQ(p.s.last(ce::open_request)->id, sid);
    // And the reused channel works.
    ASSERT_TRUE(p.s.conn().confirm_open(sid, p.s.out));
    p.pump();
    EXPECT_EQ(p.c.last(ce::opened)->id, *id);
    send_all(p.c, *id, str_bytes("again"));
    p.pump();
    EXPECT_EQ(p.s.rx[sid].sum, sum_of(str_bytes("again")));
    EXPECT_FALSE(p.c.failed || p.s.failed);
}

TEST(SshConnection, EmbedderCallsWithBadIdsChangeNothing) {
    session_pair p;
    p.connect();
    auto o = open_direct(p);
    EXPECT_EQ(p.c.conn().send_data(o.cid + 100, str_bytes("x"), p.c.out).code(),
              errc::invalid_argument);
    EXPECT_EQ(p.s.conn().confirm_open(o.sid, p.s.out).code(), errc::invalid_argument);  // already
    EXPECT_EQ(p.s.conn().confirm_open(o.sid + 5, p.s.out).code(), errc::invalid_argument);
    EXPECT_EQ(p.c.conn().consumed(o.cid + 3, 1, p.c.out).code(), errc::invalid_argument);
    EXPECT_TRUE(p.c.out.empty());
    EXPECT_TRUE(p.s.out.empty());
    EXPECT_EQ(p.c.conn().send_window(o.cid + 100), 0u);
    EXPECT_TRUE(p.c.conn().is_open(o.cid));
}

// ---- tcpip-forward and forwarded-tcpip ---------------------------------------------------------

TEST(SshConnection, TcpipForwardPortZeroThenServerOpensForwardedChannel) {
    session_pair p;
    p.connect();
    ASSERT_TRUE(p.c.conn().request_tcpip_forward("tunnel-a", 0, p.c.out));
    EXPECT_EQ(p.c.conn().outstanding_requests(), 1u);
    p.pump();
    ASSERT_EQ(p.s.policy.forwards.size(), 1u);
    EXPECT_EQ(p.s.policy.forwards[0].address, "tunnel-a");
    EXPECT_EQ(p.s.policy.forwards[0].port, 0u);
    auto* r = p.c.last(ce::global_reply);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->request, global_kind::tcpip_forward);
    EXPECT_TRUE(r->ok);
    EXPECT_EQ(r->port, 40000u);  // the policy's bound port reached the client
    EXPECT_EQ(p.c.conn().outstanding_requests(), 0u);

    auto sid = p.s.conn().open_forwarded_tcpip("tunnel-a", 40000, "203.0.113.5", 51000, p.s.out);
    ASSERT_TRUE(sid);
    p.pump();
    auto* rq = p.c.last(ce::open_request);
    ASSERT_TRUE(rq);
    EXPECT_EQ(rq->open_type, "forwarded-tcpip");
    EXPECT_EQ(rq->host, "tunnel-a");
    EXPECT_EQ(rq->port, 40000u);
    EXPECT_EQ(rq->origin_host, "203.0.113.5");
    EXPECT_EQ(rq->origin_port, 51000u);
    std::uint32_t cid = rq->id;
    ASSERT_TRUE(p.c.conn().confirm_open(cid, p.c.out));
    p.pump();
    ASSERT_EQ(p.s.count(ce::opened), 1u);
    EXPECT_EQ(p.s.last(ce::opened)->id, *sid);
    auto req = pattern(3, 0, 3000), resp = pattern(4, 0, 9000);
    send_all(p.s, *sid, req);
    p.pump();
    EXPECT_EQ(p.c.rx[cid].sum, sum_of(req));
    send_all(p.c, cid, resp);
    p.pump();
    EXPECT_EQ(p.s.rx[*sid].sum, sum_of(resp));
}

TEST(SshConnection, TcpipForwardRefusedAndCancel) {
    session_pair p;
    p.connect();
    p.s.policy.allow_forward = false;
    ASSERT_TRUE(p.c.conn().request_tcpip_forward("forbidden", 8080, p.c.out));
    p.pump();
    auto* r = p.c.last(ce::global_reply);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->request, global_kind::tcpip_forward);
    EXPECT_FALSE(r->ok);
    EXPECT_FALSE(p.c.failed || p.s.failed);  // a refusal is no error

    // Three requests in flight: replies come in order and are matched to their kinds.
    p.s.policy.allow_forward = true;
    p.s.policy.allow_cancel = false;
    std::size_t before = p.c.count(ce::global_reply);
    ASSERT_TRUE(p.c.conn().request_tcpip_forward("tunnel-b", 8080, p.c.out));
    ASSERT_TRUE(p.c.conn().cancel_tcpip_forward("tunnel-x", 1, p.c.out));
    ASSERT_TRUE(p.c.conn().send_keepalive(p.c.out));
    EXPECT_EQ(p.c.conn().outstanding_requests(), 3u);
    p.pump();
    ASSERT_EQ(p.c.count(ce::global_reply), before + 3);
    std::vector<std::pair<global_kind, bool>> got;
    for (auto& e : p.c.events) {
        if (e.ctype == ce::global_reply) got.emplace_back(e.request, e.ok);
    }
    got.erase(got.begin(), got.begin() + before);
    EXPECT_EQ(got[0], std::make_pair(global_kind::tcpip_forward, true));
    EXPECT_EQ(got[1], std::make_pair(global_kind::cancel_tcpip_forward, false));
    EXPECT_EQ(got[2].first, global_kind::keepalive);
    // "tunnel-x" was never bound by this session: refused without asking the policy (a lenient
    // policy must not let a session free slots it never used).
    EXPECT_TRUE(p.s.policy.cancels.empty());

    // A binding of ours, but the policy refuses the cancel: it stays.
    ASSERT_TRUE(p.c.conn().cancel_tcpip_forward("tunnel-b", 8080, p.c.out));
    p.pump();
    r = p.c.last(ce::global_reply);
    EXPECT_EQ(r->request, global_kind::cancel_tcpip_forward);
    EXPECT_FALSE(r->ok);
    ASSERT_EQ(p.s.policy.cancels.size(), 1u);
    EXPECT_EQ(p.s.policy.cancels[0].address, "tunnel-b");
    EXPECT_EQ(p.s.policy.cancels[0].port, 8080u);

    p.s.policy.allow_cancel = true;
    ASSERT_TRUE(p.c.conn().cancel_tcpip_forward("tunnel-b", 8080, p.c.out));
    p.pump();
    r = p.c.last(ce::global_reply);
    EXPECT_EQ(r->request, global_kind::cancel_tcpip_forward);
    EXPECT_TRUE(r->ok);
    EXPECT_EQ(p.s.policy.cancels.back().address, "tunnel-b");
    EXPECT_EQ(p.c.conn().outstanding_requests(), 0u);

    // Cancelled: a second cancel of the same binding is refused without asking the policy.
    std::size_t asked = p.s.policy.cancels.size();
    ASSERT_TRUE(p.c.conn().cancel_tcpip_forward("tunnel-b", 8080, p.c.out));
    p.pump();
    EXPECT_FALSE(p.c.last(ce::global_reply)->ok);
    EXPECT_EQ(p.s.policy.cancels.size(), asked);
}

TEST(SshConnection, ClientRefusesSessionChannelsFromTheServer) {
    session_pair p;
    p.connect();
    auto id = p.s.conn().open("session", {}, p.s.out);
    ASSERT_TRUE(id);
    p.pump();
    auto* f = p.s.last(ce::open_failed);
    ASSERT_TRUE(f);
    EXPECT_EQ(f->id, *id);
    EXPECT_EQ(f->reason, open_failure::administratively_prohibited);
    EXPECT_FALSE(p.c.failed || p.s.failed);
    EXPECT_EQ(p.c.count(ce::open_request), 0u);
}

TEST(SshConnection, LibraryDefaultPolicyRefusesForwards) {
    session_options o;
    o.library_policy = true;  // no policy object at all
    session_pair p(o);
    p.connect();
    ASSERT_TRUE(p.c.conn().request_tcpip_forward("tunnel", 0, p.c.out));
    p.pump();
    auto* r = p.c.last(ce::global_reply);
    ASSERT_TRUE(r);
    EXPECT_FALSE(r->ok);
    EXPECT_TRUE(p.s.policy.forwards.empty());
}

// ---- keepalive ---------------------------------------------------------------------------------

TEST(SshConnection, KeepaliveBothDirections) {
    session_pair p;
    p.connect();
    ASSERT_TRUE(p.c.conn().send_keepalive(p.c.out));
    EXPECT_EQ(p.c.conn().outstanding_requests(), 1u);
    p.pump();
    auto* r = p.c.last(ce::global_reply);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->request, global_kind::keepalive);
    EXPECT_EQ(p.c.conn().outstanding_requests(), 0u);
    // The server's keepalive (ClientAliveInterval), answered by our client.
    ASSERT_TRUE(p.s.conn().send_keepalive(p.s.out));
    p.pump();
    EXPECT_EQ(p.s.last(ce::global_reply)->request, global_kind::keepalive);
    EXPECT_EQ(p.s.conn().outstanding_requests(), 0u);
}

TEST(SshConnection, KeepaliveOnTheWireAndUnansweredOnesPileUp) {
    session_pair p;
    p.connect();
    p.s.raw = true;  // a server that never answers
    for (int i = 0; i < 3; ++i) ASSERT_TRUE(p.c.conn().send_keepalive(p.c.out));
    p.pump();
    EXPECT_EQ(p.c.conn().outstanding_requests(), 3u);
    ASSERT_EQ(p.s.raw_msgs.size(), 3u);
    reader r(p.s.raw_msgs[0]);
    EXPECT_EQ(r.u8().value(), msg::global_request);
    EXPECT_EQ(r.text().value(), "keepalive@openssh.com");
    EXPECT_TRUE(r.boolean().value());  // want-reply
    // OpenSSH answers REQUEST_FAILURE; it counts as a reply.
    inject(p.s, {std::byte{msg::request_failure}});
    p.pump();
    EXPECT_EQ(p.c.conn().outstanding_requests(), 2u);
    EXPECT_EQ(p.c.last(ce::global_reply)->request, global_kind::keepalive);
}

// ---- many channels, windows exhausted and refilled --------------------------------------------

// A sender per (side, channel) that only sends when allowed to: at the start and after a
// `writable` event (or writable_after_kex). A missing event stalls the transfer.
struct flow {
    session_endpoint* e;
    std::uint32_t id;
    std::uint32_t stream;
    std::uint64_t total;
    std::uint64_t off = 0;
    bool blocked = false;
    // Sends what the window allows; returns false once blocked.
    void push() {
        while (off < total) {
            std::size_t k = std::min<std::uint64_t>(total - off, 48 * 1024);
            auto chunk = pattern(stream, off, k);
            auto n = e->conn().send_data(id, chunk, e->out);
            ASSERT_TRUE(n) << to_string(n.code());
            ASSERT_LE(*n, k);
            off += *n;
            if (*n < k) {
                blocked = true;
                return;
            }
        }
        blocked = false;
    }
};

TEST(SshConnection, TwoHundredChannelsExhaustAndRefillWindows) {
    constexpr std::uint32_t kChannels = 200;
    constexpr std::uint32_t kWindow = 16 * 1024;
    session_options o;
    o.client_limits.window = o.server_limits.window = kWindow;
    o.client_limits.max_packet = o.server_limits.max_packet = 4096;
    session_pair p(o);
    p.connect();
    p.c.auto_consume = p.s.auto_consume = false;
    p.s.on_event = [](session_endpoint& e, const session_event& ev) {
        if (ev.type == session_event_type::channel && ev.conn.type == ce::open_request) {
            ASSERT_TRUE(e.conn().confirm_open(ev.conn.id, e.out));
        }
    };
    std::vector<std::uint32_t> cids;
    for (std::uint32_t k = 0; k < kChannels; ++k) {
        auto id = p.c.conn().open_direct_tcpip("t", 1000 + k, "o", k, p.c.out);
        ASSERT_TRUE(id);
        cids.push_back(*id);
    }
    p.pump();
    ASSERT_EQ(p.c.count(ce::opened), kChannels);
    ASSERT_EQ(p.s.conn().open_channels(), kChannels);
    std::vector<std::uint32_t> sids;
    for (auto& e : p.s.events) {
        if (e.ctype == ce::open_request) sids.push_back(e.id);
    }
    ASSERT_EQ(sids.size(), kChannels);

    // Each channel carries more than 2.5 windows each way (sizes differ per channel).
    std::vector<flow> flows;
    for (std::uint32_t k = 0; k < kChannels; ++k) {
        std::uint64_t n = 2 * kWindow + 9000 + 37 * k;
        flows.push_back({&p.c, cids[k], 2 * k, n});
        flows.push_back({&p.s, sids[k], 2 * k + 1, n + 5});
    }
    for (auto& f : flows) f.push();
    for (auto& f : flows) {
        ASSERT_TRUE(f.blocked);
        EXPECT_EQ(f.off, kWindow);
        EXPECT_EQ(f.e->conn().send_window(f.id), 0u);
    }
    p.pump();
    // Everything sent arrived, but no window was returned: nothing is writable and a blocked
    // sender still gets nothing through.
    EXPECT_EQ(p.c.count(ce::writable), 0u);
    EXPECT_EQ(p.s.count(ce::writable), 0u);
    for (auto& f : flows) {
        auto n = f.e->conn().send_data(f.id, pattern(f.stream, f.off, 10), f.e->out);
        ASSERT_TRUE(n);
        EXPECT_EQ(*n, 0u);
    }
    EXPECT_TRUE(p.c.out.empty());
    EXPECT_TRUE(p.s.out.empty());
    for (std::uint32_t k = 0; k < kChannels; ++k) {
        EXPECT_EQ(p.s.rx[sids[k]].sum.n, kWindow);
        EXPECT_EQ(p.c.rx[cids[k]].sum.n, kWindow);
    }

    // Rounds: receivers consume, windows reopen, `writable` lets each sender go on.
    std::size_t seen_c = 0, seen_s = 0;
    for (int round = 0; round < 20; ++round) {
        p.pump();  // what the last round sent arrives
        p.c.consume_all();
        p.s.consume_all();
        p.pump();  // the window adjusts arrive
        ASSERT_FALSE(p.c.failed || p.s.failed);
        std::map<std::pair<session_endpoint*, std::uint32_t>, bool> writable;
        for (auto* e : {&p.c, &p.s}) {
            std::size_t& seen = e == &p.c ? seen_c : seen_s;
            for (; seen < e->events.size(); ++seen) {
                if (e->events[seen].ctype == ce::writable) writable[{e, e->events[seen].id}] = true;
            }
        }
        bool any = false;
        for (auto& f : flows) {
            if (f.blocked && writable.count({f.e, f.id})) {
                f.push();
                any = true;
            }
        }
        if (!any) break;
    }
    p.c.consume_all();
    p.s.consume_all();
    p.pump();
    for (auto& f : flows) {
        EXPECT_EQ(f.off, f.total) << "stalled: stream " << f.stream;
        EXPECT_FALSE(f.blocked);
    }
    for (std::uint32_t k = 0; k < kChannels; ++k) {
        EXPECT_EQ(p.s.rx[sids[k]].sum, pattern_sum(2 * k, flows[2 * k].total)) << k;
        EXPECT_EQ(p.c.rx[cids[k]].sum, pattern_sum(2 * k + 1, flows[2 * k + 1].total)) << k;
    }
    // Every channel was blocked at least twice per direction and released each time.
    EXPECT_GE(p.c.count(ce::writable), 2u * kChannels);
    EXPECT_GE(p.s.count(ce::writable), 2u * kChannels);
}

// A receiver that consumes less than half its window sends no WINDOW_ADJUST yet.
TEST(SshConnection, WindowReopensOnlyWhenHalfIsOwed) {
    session_options o;
    o.server_limits.window = 8192;
    session_pair p(o);
    p.connect();
    auto ch = open_direct(p);
    p.s.auto_consume = false;
    auto n = p.c.conn().send_data(ch.cid, pattern(9, 0, 10000), p.c.out);
    ASSERT_TRUE(n);
    EXPECT_EQ(*n, 8192u);
    p.pump();
    ASSERT_TRUE(p.s.conn().consumed(ch.sid, 1000, p.s.out));
    p.pump();
    EXPECT_EQ(p.c.conn().send_window(ch.cid), 0u);
    EXPECT_EQ(p.c.count(ce::writable), 0u);
    ASSERT_TRUE(p.s.conn().consumed(ch.sid, 3500, p.s.out));  // 4500 owed >= half
    p.pump();
    EXPECT_EQ(p.c.conn().send_window(ch.cid), 4500u);
    EXPECT_EQ(p.c.count(ce::writable), 1u);
}

// ---- rekeying during transfers ---------------------------------------------------------------

TEST(SshConnection, ExplicitRekeyMidTransferBlocksThenDrainsWritableAfterKex) {
    session_options o;
    o.client_transport.max_kex_queue_bytes = 64 * 1024;
    session_pair p(o);
    p.connect();
    auto a = open_direct(p, "a");
    auto b = open_direct(p, "b");
    std::vector<std::uint32_t> drained;
    p.c.on_event = [&](session_endpoint& e, const session_event& ev) {
        if (ev.type != session_event_type::rekey_done) return;
        while (auto id = e.conn().writable_after_kex()) drained.push_back(*id);
    };
    constexpr std::uint64_t kTotal = 1536 * 1024;
    flow fa{&p.c, a.cid, 100, 100 * 1024}, fb{&p.c, b.cid, 101, kTotal};
    fa.push();  // in flight when the rekey starts
    ASSERT_FALSE(fa.blocked);
    std::uint32_t kex_before = p.c.s->transport().kex_count();
    ASSERT_TRUE(p.c.s->transport().rekey(p.c.out, p.c.now));
    ASSERT_TRUE(p.c.s->transport().in_kex());
    // While our KEXINIT is out, the transport queues; the connection stops at its room.
    std::uint64_t before_a = fa.off;
    fa.total = fa.off + kTotal;  // more than the queue takes
    fa.push();
    ASSERT_TRUE(fa.blocked);
    EXPECT_LE(fa.off - before_a, 64u * 1024);
    fb.push();
    EXPECT_TRUE(fb.blocked);
    p.pump();
    ASSERT_FALSE(p.c.failed || p.s.failed) << p.c.err.detail << p.s.err.detail;
    EXPECT_EQ(p.c.s->transport().kex_count(), kex_before + 1);
    EXPECT_EQ(p.c.count(session_event_type::rekey_done), 1u);
    // Both channels blocked by the rekey queue are reported once.
    std::sort(drained.begin(), drained.end());
    EXPECT_EQ(drained, (std::vector<std::uint32_t>{std::min(a.cid, b.cid), std::max(a.cid, b.cid)}));
    EXPECT_FALSE(p.c.conn().writable_after_kex());
    // Finish: nothing lost, nothing duplicated.
    for (int i = 0; i < 200 && (fa.off < fa.total || fb.off < fb.total); ++i) {
        fa.push();
        fb.push();
        p.pump();
    }
    EXPECT_EQ(p.s.rx[a.sid].sum, pattern_sum(100, fa.total));
    EXPECT_EQ(p.s.rx[b.sid].sum, pattern_sum(101, fb.total));
}

TEST(SshConnection, ByteTriggeredRekeysDuringBidirectionalTransfer) {
    session_options o;
    o.client_transport.rekey_bytes = 256 * 1024;
    o.server_transport.rekey_bytes = 384 * 1024;
    o.client_transport.max_kex_queue_bytes = o.server_transport.max_kex_queue_bytes = 40 * 1024;
    session_pair p(o);
    p.connect();
    std::vector<open_pair> ch;
    for (int i = 0; i < 4; ++i) ch.push_back(open_direct(p));
    std::vector<flow> flows;
    constexpr std::uint64_t kTotal = 1200 * 1024;
    for (std::uint32_t i = 0; i < ch.size(); ++i) {
        flows.push_back({&p.c, ch[i].cid, 200 + i, kTotal + i});
        flows.push_back({&p.s, ch[i].sid, 300 + i, kTotal + 7 * i});
    }
    std::size_t after_kex = 0;
    auto drain = [&](session_endpoint& e, const session_event& ev) {
        if (ev.type != session_event_type::rekey_done) return;
        // Collect first, then send: sending may start the next rekey at once (see
        // DrainWithSendsTerminatesWhenTheNextRekeyStarts).
        std::vector<std::uint32_t> ids;
        for (int guard = 0; guard < 100; ++guard) {
            auto id = e.conn().writable_after_kex();
            if (!id) break;
            ids.push_back(*id);
        }
        after_kex += ids.size();
        for (auto id : ids) {
            for (auto& f : flows) {
                if (f.e == &e && f.id == id) f.push();
            }
        }
    };
    p.c.on_event = drain;
    p.s.on_event = drain;
    for (int i = 0; i < 400; ++i) {
        bool done = true;
        for (auto& f : flows) {
            f.push();
            done = done && f.off == f.total;
        }
        p.pump();
        ASSERT_FALSE(p.c.failed || p.s.failed) << p.c.err.detail << p.s.err.detail;
        if (done) break;
    }
    EXPECT_GE(p.c.count(session_event_type::rekey_done) + p.s.count(session_event_type::rekey_done),
              6u);
    EXPECT_GE(p.c.s->transport().kex_count(), 5u);
    for (std::uint32_t i = 0; i < ch.size(); ++i) {
        EXPECT_EQ(p.s.rx[ch[i].sid].sum, pattern_sum(200 + i, kTotal + i)) << i;
        EXPECT_EQ(p.c.rx[ch[i].cid].sum, pattern_sum(300 + i, kTotal + 7 * i)) << i;
    }
    RecordProperty("writable_after_kex", int(after_kex));
}

// The documented drain loop ("call until nullopt"), sending on each id as it comes back, must
// end even when those sends cross rekey_bytes and start the next key exchange at once (the
// channel is blocked by the new rekey queue again: it belongs to the next rekey_done).
TEST(SshConnection, DrainWithSendsTerminatesWhenTheNextRekeyStarts) {
    session_options o;
    o.client_transport.rekey_bytes = 256 * 1024;
    o.client_transport.max_kex_queue_bytes = 40 * 1024;
    session_pair p(o);
    p.connect();
    auto ch = open_direct(p);
    flow f{&p.c, ch.cid, 400, 6 * 1024 * 1024};
    int drains = 0, longest = 0;
    p.c.on_event = [&](session_endpoint& e, const session_event& ev) {
        if (ev.type != session_event_type::rekey_done) return;
        ++drains;
        int n = 0;
        while (auto id = e.conn().writable_after_kex()) {
            if (++n > 50) break;  // a runaway loop: fail below instead of hanging
            if (*id == f.id) f.push();
        }
        longest = std::max(longest, n);
    };
    ASSERT_TRUE(p.c.s->transport().rekey(p.c.out, p.c.now));
    for (int i = 0; i < 300 && f.off < f.total && !p.c.failed; ++i) {
        f.push();
        p.pump();
    }
    EXPECT_GE(drains, 1);
    EXPECT_LE(longest, 1) << "writable_after_kex returned the same id again within one drain";
    EXPECT_EQ(f.off, f.total);
    EXPECT_EQ(p.s.rx[ch.sid].sum, pattern_sum(400, f.total));
}

// Data may fill our rekey queue to its limit; the small control messages that follow (window
// adjusts, EOF, CLOSE, replies to the peer's requests) must still go out, or a peer's keepalive
// arriving during our rekey ends the session.
TEST(SshConnection, ControlMessagesWhileTheRekeyQueueIsFull) {
    session_options o;
    o.client_transport.max_kex_queue_bytes = 96 * 1024;
    o.client_limits.kex_control_reserve = 32 * 1024;
    session_pair p(o);
    p.connect();
    auto a = open_direct(p, "a");
    auto b = open_direct(p, "b");
    p.c.auto_consume = false;
    flow down{&p.s, a.sid, 500, 1536 * 1024};
    down.push();
    p.pump();
    ASSERT_EQ(p.c.rx[a.cid].sum.n, down.total);
    std::uint32_t before = p.s.conn().send_window(a.sid);
    ASSERT_TRUE(p.s.conn().send_keepalive(p.s.out));  // arrives during the client's rekey
    ASSERT_TRUE(p.c.s->transport().rekey(p.c.out, p.c.now));
    flow up{&p.c, b.cid, 501, 1024 * 1024};
    up.push();
    ASSERT_TRUE(up.blocked);  // data filled the queue up to the reserve
    EXPECT_GT(up.off, 0u);
    auto st = p.c.conn().consumed(a.cid, down.total, p.c.out);
    EXPECT_TRUE(st) << to_string(st.code()) << " " << st.err().detail;
    p.c.rx[a.cid].unconsumed = 0;
    EXPECT_TRUE(p.c.conn().send_eof(a.cid, p.c.out));
    p.pump();
    EXPECT_FALSE(p.c.failed) << to_string(p.c.err.code) << " " << p.c.err.detail;
    EXPECT_FALSE(p.s.failed);
    EXPECT_EQ(p.s.count(ce::global_reply), 1u);      // the keepalive was answered
    EXPECT_GT(p.s.conn().send_window(a.sid), before);  // the window was returned
    EXPECT_TRUE(p.s.rx[a.sid].eof);
    // Whatever failed, a session that reported an error must have closed itself.
    if (p.c.failed) {
        EXPECT_TRUE(p.c.s->closed()) << "error without DISCONNECT";
    }
}

// A peer that floods requests needing answers while our rekey holds output back may exhaust
// the control reserve: the session may then end, but cleanly (DISCONNECT sent, closed()), never
// with a bare error that leaves the transport open.
TEST(SshConnection, RequestFloodDuringOurRekeyEndsCleanlyIfAtAll) {
    session_options o;
    o.client_transport.max_kex_queue_bytes = 4096;
    o.client_limits.kex_control_reserve = 2048;
    session_pair p(o);
    p.connect();
    p.s.raw = true;
    for (int i = 0; i < 6000; ++i) {
        inject(p.s, u8s({msg::global_request, 0, 0, 0, 21, 'k', 'e', 'e', 'p', 'a', 'l', 'i', 'v',
                         'e', '@', 'o', 'p', 'e', 'n', 's', 's', 'h', '.', 'c', 'o', 'm', 1}));
    }
    ASSERT_TRUE(p.c.s->transport().rekey(p.c.out, p.c.now));  // the flood arrives during it
    p.pump();
    if (p.c.failed) {
        EXPECT_TRUE(p.c.s->closed()) << "error without DISCONNECT: " << to_string(p.c.err.code)
                                     << " " << p.c.err.detail;
        EXPECT_NE(p.c.s->transport().close_reason(), disconnect_reason::none);
    } else {
        std::size_t replies = 0;
        for (auto t : p.s.raw_types()) replies += t == msg::request_success;
        EXPECT_EQ(replies, 6000u);
    }
}

// ---- half-close and close ----------------------------------------------------------------------

TEST(SshConnection, HalfCloseThenCloseBothWays) {
    session_pair p;
    p.connect();
    auto o = open_direct(p);
    send_all(p.c, o.cid, str_bytes("request"));
    ASSERT_TRUE(p.c.conn().send_eof(o.cid, p.c.out));
    p.pump();
    EXPECT_TRUE(p.s.rx[o.sid].eof);
    EXPECT_EQ(p.s.rx[o.sid].sum, sum_of(str_bytes("request")));
    EXPECT_FALSE(p.s.rx[o.sid].closed);
    EXPECT_FALSE(p.c.rx[o.cid].eof);
    // The other direction still flows after our EOF.
    auto resp = pattern(11, 0, 100000);
    flow f{&p.s, o.sid, 11, resp.size()};
    for (int i = 0; i < 20 && f.off < f.total; ++i) {
        f.push();
        p.pump();
    }
    EXPECT_EQ(p.c.rx[o.cid].sum, sum_of(resp));
    // Data from us after our EOF would be a violation at the peer: it must not leave.
    auto late = p.c.conn().send_data(o.cid, str_bytes("late"), p.c.out);
    EXPECT_TRUE(!late || *late == 0u);
    EXPECT_TRUE(p.c.out.empty());
    ASSERT_TRUE(p.s.conn().send_eof(o.sid, p.s.out));
    ASSERT_TRUE(p.s.conn().close(o.sid, p.s.out));
    p.pump();
    EXPECT_TRUE(p.c.rx[o.cid].eof);
    // The client answered CLOSE with CLOSE (RFC 4254 §5.3): closed on both sides.
    EXPECT_TRUE(p.c.rx[o.cid].closed);
    EXPECT_TRUE(p.s.rx[o.sid].closed);
    EXPECT_EQ(p.c.count(ce::closed), 1u);
    EXPECT_EQ(p.s.count(ce::closed), 1u);
    EXPECT_FALSE(p.c.conn().is_open(o.cid));
    EXPECT_EQ(p.c.conn().open_channels(), 0u);
    EXPECT_EQ(p.s.conn().open_channels(), 0u);
    EXPECT_FALSE(p.c.failed || p.s.failed);
    // Both ids are reused by the next channel.
    auto o2 = open_direct(p);
    EXPECT_EQ(o2.cid, o.cid);
    EXPECT_EQ(o2.sid, o.sid);
    send_all(p.c, o2.cid, str_bytes("new"));
    p.pump();
    EXPECT_EQ(p.s.rx[o2.sid].sum, sum_of(str_bytes("new")));
    EXPECT_FALSE(p.s.rx[o2.sid].eof);
}

TEST(SshConnection, SimultaneousCloseAndCloseWithoutEof) {
    session_pair p;
    p.connect();
    auto o = open_direct(p);
    ASSERT_TRUE(p.c.conn().close(o.cid, p.c.out));
    ASSERT_TRUE(p.s.conn().close(o.sid, p.s.out));
    // A second close() sends nothing more.
    std::size_t before = p.c.out.size();
    (void)p.c.conn().close(o.cid, p.c.out);
    EXPECT_EQ(p.c.out.size(), before);
    p.pump();
    EXPECT_EQ(p.c.count(ce::closed), 1u);
    EXPECT_EQ(p.s.count(ce::closed), 1u);
    EXPECT_FALSE(p.c.failed || p.s.failed);
    EXPECT_EQ(p.c.conn().open_channels(), 0u);
    EXPECT_EQ(p.s.conn().open_channels(), 0u);
    // The client closes alone: the id stays reserved until the server's CLOSE comes back.
    auto o2 = open_direct(p);
    ASSERT_TRUE(p.c.conn().close(o2.cid, p.c.out));
    EXPECT_EQ(p.c.conn().open_channels(), 1u);
    p.pump();
    EXPECT_EQ(p.c.count(ce::closed), 2u);
    EXPECT_EQ(p.s.count(ce::closed), 2u);
    EXPECT_EQ(p.c.conn().open_channels(), 0u);
}

// ---- limits ------------------------------------------------------------------------------------

TEST(SshConnection, ChannelLimitRefusesWithResourceShortage) {
    session_options o;
    o.server_limits.max_channels = 3;
    session_pair p(o);
    p.connect();
    p.s.on_event = [](session_endpoint& e, const session_event& ev) {
        if (ev.type == session_event_type::channel && ev.conn.type == ce::open_request) {
            ASSERT_TRUE(e.conn().confirm_open(ev.conn.id, e.out));
        }
    };
    std::vector<std::uint32_t> ids;
    for (int i = 0; i < 4; ++i) {
        auto id = p.c.conn().open_direct_tcpip("t", 1, "o", 2, p.c.out);
        ASSERT_TRUE(id);
        ids.push_back(*id);
    }
    p.pump();
    EXPECT_EQ(p.s.count(ce::open_request), 3u);  // the fourth never reached the embedder
    EXPECT_EQ(p.c.count(ce::opened), 3u);
    auto* f = p.c.last(ce::open_failed);
    ASSERT_TRUE(f);
    EXPECT_EQ(f->id, ids[3]);
    EXPECT_EQ(f->reason, open_failure::resource_shortage);
    EXPECT_FALSE(p.c.failed || p.s.failed);  // not a disconnect
    EXPECT_FALSE(p.s.s->closed());
    // After one closes, a new open succeeds.
    ASSERT_TRUE(p.c.conn().close(ids[0], p.c.out));
    p.pump();
    auto id = p.c.conn().open_direct_tcpip("t", 1, "o", 2, p.c.out);
    ASSERT_TRUE(id);
    p.pump();
    EXPECT_EQ(p.c.count(ce::opened), 4u);
    EXPECT_EQ(p.s.conn().open_channels(), 3u);
}

TEST(SshConnection, LocalChannelLimitFailsTheCallWithoutSending) {
    session_options o;
    o.client_limits.max_channels = 2;
    session_pair p(o);
    p.connect();
    ASSERT_TRUE(p.c.conn().open_direct_tcpip("t", 1, "o", 2, p.c.out));
    ASSERT_TRUE(p.c.conn().open_direct_tcpip("t", 1, "o", 2, p.c.out));
    std::size_t before = p.c.out.size();
    auto third = p.c.conn().open_direct_tcpip("t", 1, "o", 2, p.c.out);
    EXPECT_FALSE(third);
    EXPECT_EQ(p.c.out.size(), before);
}

// ---- channel requests --------------------------------------------------------------------------

struct request_fixture {
    session_pair p;
    std::uint32_t cid = 0, sid = 0;
    explicit request_fixture(session_options o = {}) : p(o) {}
    void open_session() {
        p.connect();
        auto id = p.c.conn().open("session", {}, p.c.out);
        ASSERT_TRUE(id);
        cid = *id;
        p.pump();
        auto* rq = p.s.last(ce::open_request);
        ASSERT_TRUE(rq);
        EXPECT_EQ(rq->open_type, "session");
        sid = rq->id;
        ASSERT_TRUE(p.s.conn().confirm_open(sid, p.s.out));
        p.pump();
        ASSERT_TRUE(p.c.conn().is_open(cid));
        p.c.raw = true;  // from now on the client speaks raw payloads
    }
    // Sends a channel request from the client; returns the server's reply payloads.
    std::vector<std::vector<std::byte>> request(std::string_view type, bool want_reply,
                                                std::vector<std::byte> extra = {}) {
        std::vector<std::byte> m;
        writer(m).u8(msg::channel_request).u32(sid).string(type).boolean(want_reply).raw(extra);
        inject(p.c, m);
        std::size_t before = p.c.raw_msgs.size();
        p.pump();
        return {p.c.raw_msgs.begin() + before, p.c.raw_msgs.end()};
    }
};

std::vector<std::byte> channel_reply(std::uint8_t m, std::uint32_t recipient) {
    std::vector<std::byte> v;
    writer(v).u8(m).u32(recipient);
    return v;
}

TEST(SshConnection, ShellExecPtyRefusedByDefault) {
    for (bool library : {true, false}) {
        session_options o;
        o.library_policy = library;
        request_fixture f(o);
        f.open_session();
        std::vector<std::byte> pty;
        writer(pty).string("xterm").u32(80).u32(24).u32(0).u32(0).string("");
        std::vector<std::byte> cmd;
        writer(cmd).string("id");
        auto fail = channel_reply(msg::channel_failure, f.cid);
        EXPECT_EQ(f.request("pty-req", true, pty), V{fail});
        EXPECT_EQ(f.request("shell", true), V{fail});
        EXPECT_EQ(f.request("exec", true, cmd), V{fail});
        EXPECT_EQ(f.request("subsystem", true, cmd), V{fail});
        // Without want-reply: silence, and the channel stays usable.
        EXPECT_TRUE(f.request("shell", false).empty());
        EXPECT_FALSE(f.p.s.failed);
        EXPECT_TRUE(f.p.s.conn().is_open(f.sid));
    }
}

TEST(SshConnection, PolicyMayAcceptChannelRequests) {
    request_fixture f;
    f.p.s.policy.accepted_requests = {"exec"};
    f.open_session();
    std::vector<std::byte> cmd;
    writer(cmd).string("uptime");
    EXPECT_EQ(f.request("exec", true, cmd),
              V{channel_reply(msg::channel_success, f.cid)});
    ASSERT_EQ(f.p.s.policy.requests.size(), 1u);
    EXPECT_EQ(f.p.s.policy.requests[0].id, f.sid);
    EXPECT_EQ(f.p.s.policy.requests[0].type, "exec");
    EXPECT_EQ(f.p.s.policy.requests[0].data, cmd);  // what follows want-reply
    EXPECT_EQ(f.request("shell", true),
              V{channel_reply(msg::channel_failure, f.cid)});
}

TEST(SshConnection, ExitStatusAcceptedSilently) {
    session_pair p;
    p.connect();
    auto o = open_direct(p);
    std::vector<std::byte> st;
    writer(st).u32(0);
    ASSERT_TRUE(p.s.conn().send_request(o.sid, "exit-status", st, p.s.out));
    p.pump();
    EXPECT_FALSE(p.c.failed);
    EXPECT_TRUE(p.c.policy.requests.empty());  // handled by the library, not the policy
    EXPECT_TRUE(p.c.conn().is_open(o.cid));
}

// ---- peer violations ---------------------------------------------------------------------------

struct violation_case {
    const char* name;
    // Builds the payloads the peer injects, given the victim's and the peer's channel ids.
    std::function<std::vector<std::vector<std::byte>>(std::uint32_t victim_id, std::uint32_t peer_id)>
        payloads;
};

std::vector<std::byte> data_msg(std::uint32_t id, std::size_t n, std::uint8_t m = msg::channel_data) {
    std::vector<std::byte> v;
    writer w(v);
    w.u8(m).u32(id);
    if (m == msg::channel_extended_data) w.u32(1);
    w.string(bytes(pattern(77, 0, n)));
    return v;
}

V msg1(std::vector<std::byte> v) { return V{std::move(v)}; }

constexpr std::uint32_t kVictimWindow = 4096;
constexpr std::uint32_t kVictimPacket = 2048;

std::vector<violation_case> violations() {
    return {
        {"data_unknown_channel", [](auto vid, auto) { return msg1(data_msg(vid + 57, 3)); }},
        {"data_huge_channel_number", [](auto, auto) { return msg1(data_msg(0xfffffff0u, 3)); }},
        {"window_overrun",
         [](auto vid, auto) {
             return V{data_msg(vid, kVictimPacket), data_msg(vid, kVictimPacket), data_msg(vid, 1)};
         }},
        {"extended_window_overrun",
         [](auto vid, auto) {
             return V{data_msg(vid, kVictimPacket), data_msg(vid, kVictimPacket),
                      data_msg(vid, 1, msg::channel_extended_data)};
         }},
        {"data_over_max_packet", [](auto vid, auto) { return msg1(data_msg(vid, kVictimPacket + 1)); }},
        {"data_after_eof",
         [](auto vid, auto) {
             std::vector<std::byte> eof;
             writer(eof).u8(msg::channel_eof).u32(vid);
             return V{eof, data_msg(vid, 3)};
         }},
        {"extended_data_after_eof",
         [](auto vid, auto) {
             std::vector<std::byte> eof;
             writer(eof).u8(msg::channel_eof).u32(vid);
             return V{eof, data_msg(vid, 3, msg::channel_extended_data)};
         }},
        {"window_adjust_overflow",
         [](auto vid, auto) {
             std::vector<std::byte> m;
             writer(m).u8(msg::channel_window_adjust).u32(vid).u32(0xffffffffu);
             return msg1(m);
         }},
        {"confirmation_never_opened",
         [](auto vid, auto) {
             std::vector<std::byte> m;
             writer(m).u8(msg::channel_open_confirmation).u32(vid + 9).u32(3).u32(65536).u32(32768);
             return msg1(m);
         }},
        {"confirmation_of_open_channel",
         [](auto vid, auto pid) {
             std::vector<std::byte> m;
             writer(m).u8(msg::channel_open_confirmation).u32(vid).u32(pid).u32(65536).u32(32768);
             return msg1(m);
         }},
        {"open_failure_never_opened",
         [](auto vid, auto) {
             std::vector<std::byte> m;
             writer(m).u8(msg::channel_open_failure).u32(vid + 4).u32(2).string("x").string("");
             return msg1(m);
         }},
        {"truncated_data_header", [](auto, auto) { return msg1(u8s({msg::channel_data, 0, 0})); }},
        {"data_length_past_end",
         [](auto vid, auto) {
             std::vector<std::byte> m;
             writer(m).u8(msg::channel_data).u32(vid).u32(100).raw(bytes(pattern(1, 0, 3)));
             return msg1(m);
         }},
        {"truncated_window_adjust",
         [](auto vid, auto) {
             std::vector<std::byte> m;
             writer(m).u8(msg::channel_window_adjust).u32(vid).u8(0);
             return msg1(m);
         }},
        {"empty_channel_open", [](auto, auto) { return msg1(u8s({msg::channel_open})); }},
        {"truncated_channel_open",
         [](auto, auto) {
             std::vector<std::byte> m;
             writer(m).u8(msg::channel_open).string("direct-tcpip").u32(1);
             return msg1(m);
         }},
        {"truncated_channel_request",
         [](auto vid, auto) {
             std::vector<std::byte> m;
             writer(m).u8(msg::channel_request).u32(vid).string("exec");  // no want-reply
             return msg1(m);
         }},
        {"truncated_global_request", [](auto, auto) { return msg1(u8s({msg::global_request, 0, 0})); }},
        {"truncated_eof", [](auto, auto) { return msg1(u8s({msg::channel_eof, 0})); }},
        {"truncated_close", [](auto, auto) { return msg1(u8s({msg::channel_close})); }},
        {"service_request_after_auth",
         [](auto, auto) {
             std::vector<std::byte> m;
             writer(m).u8(msg::service_request).string("ssh-userauth");
             return msg1(m);
         }},
        {"channel_reply_without_request",
         [](auto vid, auto) {
             std::vector<std::byte> m;
             writer(m).u8(msg::channel_success).u32(vid);
             return msg1(m);
         }},
        {"global_reply_without_request", [](auto, auto) { return msg1(u8s({msg::request_success})); }},
        {"truncated_open_confirmation",
         [](auto vid, auto) {
             std::vector<std::byte> m;
             writer(m).u8(msg::channel_open_confirmation).u32(vid).u32(1);
             return msg1(m);
         }},
    };
}

// The victim (server or client) has one open channel with the peer; the peer injects the case's
// payloads. The victim must end the session with DISCONNECT(PROTOCOL_ERROR), return an error,
// and refuse any further work without sending anything.
void run_violation(role victim_role, const violation_case& vc) {
    SCOPED_TRACE(vc.name);
    session_options o;
    auto& lim = victim_role == role::server ? o.server_limits : o.client_limits;
    lim.window = kVictimWindow;
    lim.max_packet = kVictimPacket;
    session_pair p(o);
    p.connect();
    auto ch = open_direct(p);
    session_endpoint& victim = victim_role == role::server ? p.s : p.c;
    session_endpoint& peer = victim_role == role::server ? p.c : p.s;
    std::uint32_t vid = victim_role == role::server ? ch.sid : ch.cid;
    std::uint32_t pid = victim_role == role::server ? ch.cid : ch.sid;
    peer.raw = true;
    victim.auto_consume = false;  // the window must not reopen under the peer
    auto msgs = vc.payloads(vid, pid);
    for (std::size_t i = 0; i < msgs.size(); ++i) {
        inject(peer, msgs[i]);
        p.pump();
        if (i + 1 < msgs.size()) {
            ASSERT_FALSE(victim.failed) << "message " << i << " was valid";
        }
    }
    ASSERT_TRUE(victim.failed);
    EXPECT_NE(victim.err.code, errc::ok);
    EXPECT_TRUE(victim.s->closed());
    EXPECT_EQ(victim.s->transport().close_reason(), disconnect_reason::protocol_error);
    // The DISCONNECT reached the peer with that reason.
    auto* d = peer.last(session_event_type::disconnected);
    ASSERT_TRUE(d);
    EXPECT_EQ(d->dreason, disconnect_reason::protocol_error);
    // Afterwards: feeding fails, sending sends nothing.
    std::vector<std::byte> more = pattern(5, 0, 64);
    mut_bytes in(more);
    EXPECT_FALSE(victim.s->feed(in, victim.out, victim.now));
    (void)victim.conn().send_data(vid, str_bytes("x"), victim.out);
    (void)victim.conn().send_keepalive(victim.out);
    EXPECT_TRUE(victim.out.empty());
}

TEST(SshConnection, ServerViolationsEndTheSession) {
    for (auto& vc : violations()) run_violation(role::server, vc);
}

TEST(SshConnection, ClientViolationsEndTheSession) {
    for (auto& vc : violations()) run_violation(role::client, vc);
}

// The limits themselves are allowed: exactly the window, exactly max_packet, and a window
// raised to exactly 2^32-1.
TEST(SshConnection, ExactLimitsAreNotViolations) {
    session_options o;
    o.server_limits.window = kVictimWindow;
    o.server_limits.max_packet = kVictimPacket;
    session_pair p(o);
    p.connect();
    auto ch = open_direct(p);
    p.s.auto_consume = false;
    p.c.raw = true;
    inject(p.c, data_msg(ch.sid, kVictimPacket));
    inject(p.c, data_msg(ch.sid, kVictimPacket));
    p.pump();
    EXPECT_FALSE(p.s.failed);
    EXPECT_EQ(p.s.rx[ch.sid].sum.n, kVictimWindow);
    std::uint32_t w = p.s.conn().send_window(ch.sid);
    ASSERT_GT(w, 0u);
    std::vector<std::byte> adj;
    writer(adj).u8(msg::channel_window_adjust).u32(ch.sid).u32(0xffffffffu - w);
    inject(p.c, adj);
    p.pump();
    EXPECT_FALSE(p.s.failed);
    EXPECT_EQ(p.s.conn().send_window(ch.sid), 0xffffffffu);
    // One more byte of window is one too many.
    std::vector<std::byte> adj1;
    writer(adj1).u8(msg::channel_window_adjust).u32(ch.sid).u32(1);
    inject(p.c, adj1);
    p.pump();
    EXPECT_TRUE(p.s.failed);
    EXPECT_EQ(p.s.s->transport().close_reason(), disconnect_reason::protocol_error);
}

// Not violations: late authentication messages are ignored (RFC 4252 §5.1) and unknown message
// numbers get UNIMPLEMENTED (RFC 4253 §11.4); the session goes on.
TEST(SshConnection, LateAuthAndUnknownMessagesAreNotFatal) {
    session_pair p;
    p.connect();
    auto ch = open_direct(p);
    p.c.raw = true;
    std::vector<std::byte> late;
    writer(late).u8(msg::userauth_request).string("agent").string("ssh-connection").string("none");
    inject(p.c, late);
    std::uint32_t seq = p.c.s->transport().send_seq();
    inject(p.c, u8s({120, 1, 2, 3}));
    p.pump();
    EXPECT_FALSE(p.s.failed) << p.s.err.detail;
    ASSERT_EQ(p.c.raw_types(), std::vector<std::uint8_t>{msg::unimplemented});
    reader r(p.c.raw_msgs[0]);
    (void)r.u8();
    EXPECT_EQ(r.u32().value(), seq);  // names the packet it did not understand
    inject(p.c, data_msg(ch.sid, 10));
    p.pump();
    EXPECT_EQ(p.s.rx[ch.sid].sum.n, 10u);
}

// Data before the victim confirmed the peer's open is a violation too (the channel is not open).
TEST(SshConnection, DataBeforeConfirmationEndsTheSession) {
    session_pair p;
    p.connect();
    p.c.raw = true;
    std::vector<std::byte> open;
    writer(open).u8(msg::channel_open).string("direct-tcpip").u32(7).u32(65536).u32(32768)
        .string("h").u32(1).string("o").u32(2);
    inject(p.c, open);
    p.pump();
    auto* rq = p.s.last(ce::open_request);
    ASSERT_TRUE(rq);
    EXPECT_EQ(rq->host, "h");
    inject(p.c, data_msg(rq->id, 5));
    p.pump();
    EXPECT_TRUE(p.s.failed);
    EXPECT_EQ(p.s.s->transport().close_reason(), disconnect_reason::protocol_error);
}

// Peers announcing a maximum packet below min_peer_packet get their open refused (not a
// disconnect): we could not send them anything useful.
TEST(SshConnection, TinyPeerPacketSizeIsRefused) {
    session_pair p;
    p.connect();
    p.c.raw = true;
    std::vector<std::byte> open;
    writer(open).u8(msg::channel_open).string("direct-tcpip").u32(7).u32(65536).u32(16)
        .string("h").u32(1).string("o").u32(2);
    inject(p.c, open);
    p.pump();
    EXPECT_FALSE(p.s.failed);
    EXPECT_EQ(p.s.count(ce::open_request), 0u);
    ASSERT_EQ(p.c.raw_types(), std::vector<std::uint8_t>{msg::channel_open_failure});
    reader r(p.c.raw_msgs[0]);
    (void)r.u8();
    EXPECT_EQ(r.u32().value(), 7u);  // addressed to the peer's number
}

}  // namespace
