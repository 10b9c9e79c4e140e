// The relay's side of one agent: a WebSocket (binary messages carry the SSH byte stream) with
// an SSH server session inside. Patterns from tests/ssh/ssh_test_server.cc (the interop
// server): the session writes into ssh_out_, after_io() wraps it into WebSocket messages on
// the socket's output, channel data is linked into consumers' output without copying, and
// consumed() reopens the agent's window only once a consumer's socket took the bytes.
#include <algorithm>
#include <chrono>
#include <cstdio>

#include "proto/base/log.hh"
#include "proto/jwt/verifier.hh"
#include "relay/ingress.hh"
#include "relay/agent_conn.hh"
#include "relay/consumer_conn.hh"
#include "relay/shard_state.hh"

namespace ferry::relay {

namespace {

ssh::millis to_ms(reactor::shard::clock::time_point t) {
    return ssh::millis(std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count());
}

// Larger SSH output slices are cut into messages of at most this size (a peer's frame limit
// is 1 MiB by default; our packets are far smaller).
constexpr std::size_t kMaxMessage = 256 * 1024;

link::ws_server_options ws_opts(const relay_options& o) {
    link::ws_server_options w;
    w.limits = o.ws_limits;
    w.head_limits = o.head_limits;
    w.head_timeout = o.head_timeout;
    w.close_timeout = o.close_timeout;
    return w;
}

}  // namespace

ssh::session_config agent_conn::make_config(agent_conn* self, relay& r, reactor::shard& s) {
    shard_state& st = r.state(s.id());
    ssh::session_config c;
    c.transport.self = ssh::role::server;
    c.transport.random = st.rng.get();
    c.transport.host_key = &*st.host_key;
    if (r.options().rekey_bytes) c.transport.limits.rekey_bytes = r.options().rekey_bytes;
    c.auth_server.policy = self;
    c.auth_server.methods = "password";
    c.connection.policy = self;
    c.connection.limits.max_channels = r.options().max_channels_per_tunnel;
    return c;
}

agent_conn::agent_conn(relay& r, reactor::shard& s, std::string sub, std::uint64_t id,
                             std::int64_t expires, conn_limits::slot slot)
    : link::ws_server_connection(s, ws_opts(r.options())),
      r_(r),
      st_(r.state(s.id())),
      slot_(std::move(slot)),
      sub_(std::move(sub)),
      id_(id),
      sess_(make_config(this, r, s)),
      ssh_timer_(s, [this] { on_ssh_timer(); }),
      ping_timer_(s, [this] { on_ping_timer(); }),
      pong_timer_(s, [this] { on_pong_deadline(); }),
      expiry_timer_(s, [this] { on_expiry(); }),
      spare_timer_(s, [this] { expire_spares(); }),
      handshake_timer_(s, [this] { on_handshake_timeout(); }),
      expires_(expires) {
    st_.sessions[id_] = this;
}

agent_conn::~agent_conn() {
    auto it = st_.sessions.find(id_);
    if (it != st_.sessions.end() && it->second == this) st_.sessions.erase(it);
    if (counted_) r_.names().remove_agent(sub_);
}

ssh::millis agent_conn::now() const { return to_ms(owner().now()); }

void agent_conn::on_ws_open() {
    started_ = true;
    FERRY_LOG_GATED(st_.session_log, st_.log_now(), info, "agent connected", {"session", id_},
                    {"sub", printable(sub_)}, {"shard", owner().id()});
    if (auto st = sess_.start(ssh_out_, now()); !st) return end("ssh start failed", false);
    // The SSH version, key exchange and authentication must be over in time: a connection that
    // upgraded with a valid token and then says nothing would hold one of its owner's agent
    // slots for ever (the real agent would then get 429).
    handshake_timer_.arm_after(r_.options().handshake_timeout);
    ping_timer_.arm_after(r_.options().ping_interval);
    // Its own deadline, not a check on the next ping tick: a dead agent is noticed
    // pong_timeout after its last pong, not up to a ping interval later.
    pong_timer_.arm_after(r_.options().pong_timeout);
    if (expires_ > 0) {
        const std::int64_t now_s = std::chrono::duration_cast<std::chrono::seconds>(
                                       std::chrono::system_clock::now().time_since_epoch())
                                       .count();
        // Clamped to a year: a far-future `exp` must not overflow the timer's clock.
        const std::int64_t left = std::clamp<std::int64_t>(expires_ + r_.options().verify.leeway - now_s, 0,
                                                           365 * 24 * 3600);
        expiry_timer_.arm_after(std::chrono::seconds(left));
    }
    after_io();
}

void agent_conn::on_handshake_timeout() {
    if (done_ || sess_.authenticated()) return;
    FERRY_LOG_GATED(st_.session_log, st_.log_now(), info,
                    "agent SSH handshake not finished in time: closing", {"session", id_},
                    {"sub", printable(sub_)},
                    {"timeout_ms", std::int64_t(r_.options().handshake_timeout.count())});
    ws_close(ws::close_code::policy, "SSH handshake timeout");
    end("ssh handshake timeout", false);
}

void agent_conn::on_expiry() {
    if (done_) return;
    // The token that authenticated this WebSocket has expired: say so in SSH, then end. The
    // names stay leased to the owner, so an agent that reconnects with a fresh token takes
    // them back at once and waiting consumers are served.
    sess_.disconnect(ssh::disconnect_reason::by_application, "token expired", ssh_out_);
    after_io();
    end("token expired", false);
}

void agent_conn::on_ws_data(const ws::event& ev, slice payload) {
    if (done_) return;
    if (ev.op == ws::opcode::text) {
        ws_close(ws::close_code::unsupported_data, "binary messages only");
        return end("text message", false);
    }
    // The payload was unmasked in place in our receive buffer; the transport decrypts in place.
    mut_bytes in = payload.mut_view();
    const ssh::millis t = now();
    while (!done_) {
        auto e = sess_.feed(in, ssh_out_, t);
        if (!e) {
            after_io();  // the DISCONNECT the session wrote
            return end(std::string("ssh: ") + e.err().detail, false);
        }
        if (e->type == ssh::session_event_type::need_more) break;
        on_event(*e, &payload);
    }
    after_io();
}

void agent_conn::on_ws_pong(bytes) {
    if (!done_) pong_timer_.arm_after(r_.options().pong_timeout);
}

void agent_conn::on_pong_deadline() {
    if (done_) return;
    ws_close(ws::close_code::going_away, "no pong");
    end("no pong from agent", false);
}

void agent_conn::on_ws_closed(std::uint16_t code) {
    char why[64];
    std::snprintf(why, sizeof why, "websocket closed (%u)", code);
    // 1000 after an SSH DISCONNECT from the agent is clean; anything else is a drop.
    end(why, false);
}

void agent_conn::on_ssh_timer() {
    if (done_) return;
    auto ev = sess_.tick(ssh_out_, now());
    if (!ev) {
        after_io();
        return end("ssh tick failed", false);
    }
    on_event(*ev, nullptr);
    after_io();
}

void agent_conn::on_ping_timer() {
    if (done_) return;
    if (buffer_chain* out = output()) {
        (void)codec().ping(*out, {});
        commit_output();
    }
    trim_spares();
    ping_timer_.arm_after(r_.options().ping_interval);
}

void agent_conn::after_io() {
    if (!ssh_out_.empty()) {
        buffer_chain* out = output();
        while (!ssh_out_.empty()) {
            slice s = ssh_out_.pop_front();
            if (!out) continue;  // the socket takes no more: drop
            while (s.size() > kMaxMessage) {
                (void)codec().send(*out, ws::opcode::binary, s.sub(0, kMaxMessage));
                s = s.sub(kMaxMessage, s.size() - kMaxMessage);
            }
            (void)codec().send(*out, ws::opcode::binary, std::move(s));
        }
        commit_output();
    }
    if (done_) return;
    ssh::millis d = sess_.next_deadline();
    if (d == 0) {
        ssh_timer_.cancel();
        return;
    }
    const ssh::millis t = now();
    if (d <= t) d = t + 20;
    ssh_timer_.arm_at(reactor::shard::clock::time_point(std::chrono::milliseconds(d)));
}

void agent_conn::on_event(const ssh::session_event& ev, const slice* in) {
    switch (ev.type) {
    case ssh::session_event_type::need_more:
    case ssh::session_event_type::banner: break;
    case ssh::session_event_type::authenticated: {
        handshake_timer_.cancel();
        FERRY_LOG_GATED(st_.session_log, st_.log_now(), info, "agent authenticated",
                        {"session", id_}, {"sub", printable(sub_)},
                        {"method", printable(ev.method)});
        break;
    }
    case ssh::session_event_type::channel: on_channel_event(ev.conn, in); break;
    case ssh::session_event_type::rekey_done:
        while (auto id = sess_.conn().writable_after_kex()) {
            if (consumer_conn* c = find(*id)) c->ssh_writable();
        }
        break;
    case ssh::session_event_type::disconnected:
        // The agent said goodbye (SIGTERM, config change): its names are free at once.
        end("agent disconnected", ev.reason == ssh::disconnect_reason::by_application);
        break;
    }
}

consumer_conn* agent_conn::find(std::uint32_t id) {
    auto it = chans_.find(id);
    return it == chans_.end() ? nullptr : it->second.get();
}

void agent_conn::on_channel_event(const ssh::conn_event& ev, const slice* in) {
    using ssh::conn_event_type;
    switch (ev.type) {
    case conn_event_type::none:
    case conn_event_type::global_reply: break;
    case conn_event_type::open_request:
        // The relay never lets an agent open anything (no session, no direct-tcpip).
        (void)sess_.conn().refuse_open(ev.id, ssh::open_failure::administratively_prohibited,
                                       "not allowed", ssh_out_);
        break;
    case conn_event_type::opened:
        if (consumer_conn* c = find(ev.id)) {
            c->channel_opened();
        } else if (auto sp = spares_.find(ev.id); sp != spares_.end()) {
            forward* f = find_forward(sp->second);
            if (f) {
                if (f->opening) --f->opening;
                f->spare.push_back({ev.id, owner().now()});
                if (!spare_timer_.armed()) spare_timer_.arm_at(owner().now() + kSpareTtl);
            } else {  // the name went away meanwhile
                spares_.erase(sp);
                (void)sess_.conn().close(ev.id, ssh_out_);
            }
        } else {
            // The consumer gave up while the open was on its way: close what the agent opened.
            (void)sess_.conn().close(ev.id, ssh_out_);
        }
        break;
    case conn_event_type::open_failed:
        if (auto it = chans_.find(ev.id); it != chans_.end()) {
            auto c = std::move(it->second);
            chans_.erase(it);
            c->channel_failed(ev.reason);
        } else if (auto sp = spares_.find(ev.id); sp != spares_.end()) {
            // The agent refused a spare (target down, draining): none until the next ping
            // interval (trim_spares), so a target that is down costs one refusal per interval.
            if (forward* f = find_forward(sp->second)) {
                if (f->opening) --f->opening;
                f->refused = true;
            }
            spares_.erase(sp);
        }
        break;
    case conn_event_type::data: {
        const std::size_t n = ev.data.size();
        consumer_conn* c = ev.ext == 0 ? find(ev.id) : nullptr;
        if (!c) {
            (void)sess_.conn().consumed(ev.id, n, ssh_out_);
            drop_spare(ev.id, true);  // a spare that speaks first cannot carry a request
            break;
        }
        // Zero copy when the payload was decrypted in place in the receive buffer.
        c->ssh_data(slice::part_or_copy(in, ev.data));
        break;
    }
    case conn_event_type::eof:
        if (consumer_conn* c = find(ev.id)) {
            c->ssh_eof();
        } else {
            drop_spare(ev.id, true);  // e.g. the target closed its idle connection
        }
        break;
    case conn_event_type::closed:
        if (auto it = chans_.find(ev.id); it != chans_.end()) {
            auto c = std::move(it->second);
            chans_.erase(it);
            c->channel_closed();
        } else {
            drop_spare(ev.id, false);
        }
        break;
    case conn_event_type::writable:
        if (consumer_conn* c = find(ev.id)) c->ssh_writable();
        break;
    }
}

// ---- for consumers -----------------------------------------------------------------------

agent_conn::forward* agent_conn::find_forward(std::string_view name) {
    for (auto& f : forwards_)
        if (f.name == name) return &f;
    return nullptr;
}

result<agent_conn::channel_grant> agent_conn::open_channel(consumer_conn* c, std::string_view name,
                                                                 std::string_view origin_host,
                                                                 std::uint32_t origin_port) {
    if (done_ || !sess_.authenticated()) return fail(errc::closed, "agent session over");
    forward* f = find_forward(name);
    if (!f) return fail(errc::closed, "tunnel not served by this session");
    if (!f->spare.empty()) {
        f->low = std::min(f->low, unsigned(f->spare.size()));
        const std::uint32_t id = f->spare.back().id;
        f->spare.pop_back();
        spares_.erase(id);
        chans_[id] = reactor::ref_ptr<consumer_conn>(c);
        // Its replacement opens when this exchange ends (consumer_closed), not now: the open
        // and its confirmation would otherwise share the CPU with this request's own path.
        after_io();
        return channel_grant{id, true};
    }
    // None ready: this request pays the open round trip, and one more spare is kept from now on.
    f->low = 0;
    if (f->want < kMaxSpare) ++f->want;
    auto id = sess_.conn().open_forwarded_tcpip(name, f->port, origin_host, origin_port, ssh_out_);
    if (id) chans_[*id] = reactor::ref_ptr<consumer_conn>(c);
    top_up(*f);
    after_io();
    if (!id) return fail(id.err());
    return channel_grant{*id, false};
}

void agent_conn::top_up(forward& f) {
    if (done_ || f.refused) return;
    while (f.spare.size() + f.opening < f.want) {
        // The originator of a spare is not known yet (X-Forwarded-For carries the consumer's).
        auto id = sess_.conn().open_forwarded_tcpip(f.name, f.port, "0.0.0.0", 0, ssh_out_);
        if (!id) return;  // the channel limit: requests open their own
        spares_[*id] = f.name;
        ++f.opening;
    }
}

void agent_conn::drop_spare(std::uint32_t id, bool close_it) {
    auto it = spares_.find(id);
    if (it == spares_.end()) return;
    if (forward* f = find_forward(it->second)) {
        auto& v = f->spare;
        v.erase(std::remove_if(v.begin(), v.end(), [id](const spare_channel& c) { return c.id == id; }), v.end());
        // The agent gave it up unused (its idle timeout, the target closed): one fewer wanted,
        // so sparse traffic does not keep re-opening spares that expire.
        if (f->want > 1) --f->want;
    }
    spares_.erase(it);
    if (close_it) (void)sess_.conn().close(id, ssh_out_);
}

void agent_conn::close_oldest_spare(forward& f) {
    const std::uint32_t id = f.spare.front().id;
    f.spare.erase(f.spare.begin());
    spares_.erase(id);
    (void)sess_.conn().close(id, ssh_out_);
}

void agent_conn::expire_spares() {
    if (done_) return;
    const auto now = owner().now();
    reactor::shard::clock::time_point next{};
    for (auto& f : forwards_) {
        while (!f.spare.empty() && f.spare.front().since + kSpareTtl <= now) {
            close_oldest_spare(f);
            if (f.want > 1) --f.want;  // not needed this long: keep fewer
        }
        if (!f.spare.empty() && (next == decltype(next){} || f.spare.front().since < next)) next = f.spare.front().since;
    }
    if (next != decltype(next){}) spare_timer_.arm_at(next + kSpareTtl);
    after_io();
}

void agent_conn::close_spares(forward& f) {
    for (const spare_channel& c : f.spare) {
        spares_.erase(c.id);
        if (!done_) (void)sess_.conn().close(c.id, ssh_out_);
    }
    f.spare.clear();
    // Spares still opening are closed when they open (their name is gone by then).
}

void agent_conn::trim_spares() {
    // Spares that stayed unused for a whole ping interval: half of the surplus goes.
    for (auto& f : forwards_) {
        const unsigned low = f.low == ~0u ? unsigned(f.spare.size()) : f.low;
        f.low = ~0u;
        f.refused = false;  // try spares again
        if (low < 2) continue;
        const unsigned drop = low / 2;
        f.want = std::max(1u, f.want > drop ? f.want - drop : 1u);
        for (unsigned i = 0; i < drop && !f.spare.empty(); ++i) close_oldest_spare(f);
    }
    after_io();
}

result<std::size_t> agent_conn::send_data(std::uint32_t id, bytes data) {
    if (done_) return fail(errc::closed, "agent session over");
    if (data.empty()) return std::size_t(0);
    auto n = sess_.conn().send_data(id, data, ssh_out_);
    after_io();
    if (!n && sess_.closed()) end("ssh send failed", false);
    return n;
}

void agent_conn::consumed(std::uint32_t id, std::size_t n) {
    if (done_) return;
    if (auto st = sess_.conn().consumed(id, n, ssh_out_); !st && sess_.closed()) end("ssh failed", false);
    after_io();
}

void agent_conn::send_eof(std::uint32_t id) {
    if (done_) return;
    if (auto st = sess_.conn().send_eof(id, ssh_out_); !st && sess_.closed()) end("ssh failed", false);
    after_io();
}

void agent_conn::consumer_closed(std::uint32_t id, consumer_conn* c) {
    auto it = chans_.find(id);
    if (it == chans_.end() || it->second.get() != c) return;
    chans_.erase(it);
    if (done_) return;
    if (auto st = sess_.conn().close(id, ssh_out_); !st && sess_.closed()) return end("ssh failed", false);
    for (auto& f : forwards_) top_up(f);  // replacements for spares taken
    after_io();
}

void agent_conn::on_output_high() {
    link::ws_server_connection::on_output_high();
    out_high_ = true;
    for (auto& [id, c] : chans_) c->ssh_backpressure(true);
}

void agent_conn::on_output_low() {
    link::ws_server_connection::on_output_low();
    out_high_ = false;
    for (auto& [id, c] : chans_) c->ssh_backpressure(false);
}

// ---- policies ----------------------------------------------------------------------------

bool agent_conn::allow_none(std::string_view) {
    // The WebSocket upgrade carried a verified JWT for sub_: the SSH session is bound to it.
    return true;
}

bool agent_conn::check_password(std::string_view, std::string_view password) {
    // A JWT as password (plain SSH clients as agents): valid and for the same subject.
    auto c = st_.verifier->verify(password, std::chrono::duration_cast<std::chrono::seconds>(
                                                std::chrono::system_clock::now().time_since_epoch())
                                                .count());
    return c && (*c)->sub == sub_ && (*c)->has_scope(r_.options().agent_scope);
}

bool agent_conn::tcpip_forward(std::string_view address, std::uint32_t port, std::uint32_t& bound) {
    if (done_ || port > 65535) return false;
    std::string name(address);
    auto res = r_.names().claim(name, sub_, owner().id(), id_, owner().now());
    if (res.status != registry::claim_status::ok) {
        if (res.freed.version) publish(owner(), r_, name, res.freed);  // an ended lease went
        const char* why = res.status == registry::claim_status::invalid     ? "invalid name"
                          : res.status == registry::claim_status::duplicate ? "already forwarded"
                          : res.status == registry::claim_status::limit
                              ? "this user holds max_names_per_user names (online or leased)"
                              : "owned by another user";
        // An agent can ask again and again: the log says so in bounded lines.
        FERRY_LOG_GATED(st_.refused_forward_log, st_.log_now(), warn, "tunnel refused",
                        {"tunnel", printable(name)}, {"sub", printable(sub_)}, {"session", id_},
                        {"reason", why});
        return false;
    }
    bound = port != 0 ? port : 80;
    forwards_.push_back({name, bound});
    st_.local[name] = this;
    if (res.replaced != 0) {
        // A stale session of the same owner held it: it forgets the name (its shard may be
        // another one; messages from here run there in order).
        const std::uint64_t old = res.replaced;
        if (res.replaced_shard == owner().id()) {
            if (auto it = st_.sessions.find(old); it != st_.sessions.end()) it->second->lose(name);
        } else {
            relay* rp = &r_;
            owner().post(res.replaced_shard, [rp, old, name](reactor::shard& sh) {
                auto& ss = rp->state(sh.id());
                if (auto it = ss.sessions.find(old); it != ss.sessions.end()) it->second->lose(name);
            });
        }
    }
    publish(owner(), r_, name, res.now);
    FERRY_LOG_GATED(st_.session_log, st_.log_now(), info, "tunnel up", {"tunnel", name},
                    {"sub", printable(sub_)}, {"session", id_}, {"shard", owner().id()},
                    {"replaced_session", res.replaced});
    return true;
}

bool agent_conn::cancel_tcpip_forward(std::string_view address, std::uint32_t port) {
    for (auto it = forwards_.begin(); it != forwards_.end(); ++it) {
        if (it->name == address && it->port == port) {
            std::string name = it->name;
            close_spares(*it);
            forwards_.erase(it);
            if (auto l = st_.local.find(name); l != st_.local.end() && l->second == this) st_.local.erase(l);
            name_state s = r_.names().release(name, id_, true, r_.options().lease, owner().now());
            if (s.version) publish(owner(), r_, name, s);
            FERRY_LOG_GATED(st_.session_log, st_.log_now(), info, "tunnel down", {"tunnel", name},
                            {"session", id_}, {"why", "cancelled"});
            return true;
        }
    }
    return false;
}

void agent_conn::lose(const std::string& name) {
    for (auto it = forwards_.begin(); it != forwards_.end(); ++it) {
        if (it->name == name) {
            close_spares(*it);
            forwards_.erase(it);
            after_io();
            break;
        }
    }
    if (auto l = st_.local.find(name); l != st_.local.end() && l->second == this) st_.local.erase(l);
}

void agent_conn::release_names(bool clean) {
    for (auto& f : forwards_) {
        if (auto l = st_.local.find(f.name); l != st_.local.end() && l->second == this) st_.local.erase(l);
        name_state s = r_.names().release(f.name, id_, clean, r_.options().lease, owner().now());
        if (s.version) publish(owner(), r_, f.name, s);
        if (s.state == name_state::kind::leased) st_.lease_until(owner(), s.until);
        FERRY_LOG_GATED(st_.session_log, st_.log_now(), info, "tunnel down", {"tunnel", f.name},
                        {"session", id_}, {"why", clean ? "released" : "leased to its owner"});
    }
    forwards_.clear();
}

void agent_conn::end(std::string why, bool clean) {
    if (done_) return;
    done_ = true;
    end_reason_ = std::move(why);
    release_names(clean);
    ssh_timer_.cancel();
    ping_timer_.cancel();
    pong_timer_.cancel();
    expiry_timer_.cancel();
    spare_timer_.cancel();
    handshake_timer_.cancel();
    auto chans = std::move(chans_);
    chans_.clear();
    for (auto& [id, c] : chans) c->ssh_gone();
    FERRY_LOG_GATED(st_.session_log, st_.log_now(), info, "agent gone", {"session", id_},
                    {"sub", printable(sub_)}, {"reason", end_reason_});
    // The close handshake closes TCP when answered (or at its timeout); without a WebSocket
    // there is nothing to say goodbye with.
    if (started_ && codec().state() == ws::close_state::open) {
        ws_close(ws::close_code::normal, "");
    } else {
        close();
    }
}

void agent_conn::on_close(const error& why) {
    link::ws_server_connection::on_close(why);
    slot_.release();
    if (!done_) end(why.code == errc::ok ? "closed" : std::string("connection: ") + why.detail, false);
}

}  // namespace ferry::relay
