// The relay's side of one agent: an SSH server session (link::ssh_endpoint) over the transport
// that carries it (agent_transport.hh). Channel data is linked into consumers' output without
// copying, and the agent's window reopens only once a consumer's socket took the bytes
// (link::channel_pipe, in consumer_conn).
#include "relay/agent_conn.hh"

#include <algorithm>
#include <chrono>
#include <cstdio>

#include "proto/base/log.hh"
#include "proto/jwt/verifier.hh"
#include "relay/consumer_conn.hh"
#include "relay/ingress.hh"
#include "relay/shard_state.hh"

namespace ferry::relay {

namespace {

std::int64_t unix_now() {
    return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
        .count();
}

}  // namespace

ssh::session_config agent_conn::make_config() {
    ssh::session_config c;
    c.transport.self = ssh::role::server;
    c.transport.random = st_.rng.get();
    c.transport.host_key = &*st_.host_key;
    if (cfg_->rekey_bytes) c.transport.limits.rekey_bytes = cfg_->rekey_bytes;
    c.auth_server.policy = this;
    c.auth_server.methods = "password";
    c.connection.policy = this;
    // The per-tunnel limit is counted here (forward::active); the session's own bound only has
    // to leave room for every tunnel it may serve, with their spares.
    const ssh::connection_limits d;
    c.connection.limits.max_channels = std::uint32_t(std::min<std::uint64_t>(
        std::uint64_t(cfg_->max_channels_per_tunnel + kMaxSpare) * d.max_forwards, 1u << 20));
    return c;
}

agent_conn::agent_conn(relay& r, reactor::shard& s, agent_transport& t, std::string sub, std::uint64_t id,
                       std::int64_t expires, conn_limits::slot slot)
    : r_(r),
      st_(r.state(s.id())),
      cfg_(st_.cfg),
      sh_(s),
      t_(t),
      slot_(std::move(slot)),
      sub_(std::move(sub)),
      id_(id),
      sub_from_password_(sub_.empty()),
      counted_(!sub_.empty()),  // the upgrade took one of the owner's agent slots
      ep_(s, t, *this),
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

void agent_conn::start() {
    started_ = true;
    FERRY_LOG_GATED(st_.session_log, st_.log_now(), info, "agent connected", {"session", id_},
                    {"sub", printable(sub_)}, {"shard", sh_.id()}, {"transport", sub_from_password_ ? "ssh" : "websocket"});
    if (auto st = ep_.start(make_config()); !st) return end("ssh start failed", false);
    // The SSH version, key exchange and authentication must be over in time: a connection that
    // says nothing would hold a connection slot (and, upgraded with a valid token, one of its
    // owner's agent slots) for ever (the real agent would then get 429).
    handshake_timer_.arm_after(cfg_->handshake_timeout);
    ping_timer_.arm_after(cfg_->ping_interval);
    // Its own deadline, not a check on the next ping tick: a dead agent is noticed
    // pong_timeout after its last pong, not up to a ping interval later.
    pong_timer_.arm_after(cfg_->pong_timeout);
    arm_expiry();
}

void agent_conn::arm_expiry() {
    if (expires_ <= 0) return;
    // Clamped to a year: a far-future `exp` must not overflow the timer's clock.
    const std::int64_t left = std::clamp<std::int64_t>(expires_ + cfg_->verify.leeway - unix_now(), 0,
                                                       365 * 24 * 3600);
    expiry_timer_.arm_after(std::chrono::seconds(left));
}

void agent_conn::feed(slice piece) {
    if (done_) return;
    ep_.feed(std::move(piece));
}

void agent_conn::pong() {
    if (!done_) pong_timer_.arm_after(cfg_->pong_timeout);
}

void agent_conn::on_pong_deadline() {
    if (done_) return;
    end("no pong from agent", false, ws::close_code::going_away);
}

void agent_conn::on_handshake_timeout() {
    if (done_ || ep_.up()) return;
    FERRY_LOG_GATED(st_.session_log, st_.log_now(), info,
                    "agent SSH handshake not finished in time: closing", {"session", id_},
                    {"sub", printable(sub_)},
                    {"timeout_ms", std::int64_t(cfg_->handshake_timeout.count())});
    end("ssh handshake timeout", false, ws::close_code::policy);
}

void agent_conn::on_expiry() {
    if (done_) return;
    // The token that authenticated this session has expired: say so in SSH, then end. The
    // names stay leased to the owner, so an agent that reconnects with a fresh token takes
    // them back at once and waiting consumers are served.
    ep_.disconnect(ssh::disconnect_reason::by_application, "token expired");
    end("token expired", false);
}

void agent_conn::on_ping_timer() {
    if (done_) return;
    if (!t_.ping() && ep_.up()) {
        // No transport ping (raw SSH): an SSH keepalive, whose reply (even a refusal) is the pong.
        (void)ep_.check(ep_.session().conn().send_keepalive(ep_.out()));
    }
    trim_spares();
    ping_timer_.arm_after(cfg_->ping_interval);
}

void agent_conn::on_authenticated(const ssh::session_event& ev) {
    handshake_timer_.cancel();
    t_.authenticated();
    FERRY_LOG_GATED(st_.session_log, st_.log_now(), info, "agent authenticated", {"session", id_},
                    {"sub", printable(sub_)}, {"method", printable(ev.method)});
}

void agent_conn::on_disconnected(const ssh::session_event& ev) {
    // The agent said goodbye (SIGTERM, config change): its names are free at once.
    end("agent disconnected", ev.reason == ssh::disconnect_reason::by_application);
}

void agent_conn::on_open_request(const ssh::conn_event& ev) {
    // The relay never lets an agent open anything (no session, no direct-tcpip).
    ep_.refuse(ev.id, ssh::open_failure::administratively_prohibited, "not allowed");
}

void agent_conn::on_global_reply(const ssh::conn_event& ev) {
    if (ev.request == ssh::global_kind::keepalive) pong();
}

void agent_conn::on_ssh_failed(const error& e) { end(std::string("ssh: ") + e.detail, false); }

void agent_conn::on_unowned(const ssh::conn_event& ev) {
    using ssh::conn_event_type;
    switch (ev.type) {
    case conn_event_type::opened:
        if (auto sp = spares_.find(ev.id); sp != spares_.end()) {
            forward* f = find_forward(sp->second);
            if (f) {
                if (f->opening) --f->opening;
                const auto now = sh_.now();
                f->spare.push_back({ev.id, now});
                if (!spare_timer_.armed()) spare_timer_.arm_at(now + kSpareTtl);
            } else {  // the name went away meanwhile
                spares_.erase(sp);
                ep_.close(ev.id);
            }
        } else {
            // The consumer gave up while the open was on its way: close what the agent opened.
            ep_.close(ev.id);
        }
        break;
    case conn_event_type::open_failed:
        if (auto sp = spares_.find(ev.id); sp != spares_.end()) {
            // The agent refused a spare (target down, draining): none until the next ping
            // interval (trim_spares), so a target that is down costs one refusal per interval.
            if (forward* f = find_forward(sp->second)) {
                if (f->opening) --f->opening;
                f->refused = true;
            }
            spares_.erase(sp);
        }
        break;
    case conn_event_type::data: drop_spare(ev.id, true); break;  // a spare that speaks first cannot carry a request
    case conn_event_type::eof: drop_spare(ev.id, true); break;   // e.g. the target closed its idle connection
    case conn_event_type::closed: drop_spare(ev.id, false); break;
    default: break;
    }
}

// ---- for consumers -----------------------------------------------------------------------

agent_conn::forward* agent_conn::find_forward(std::string_view name) {
    for (auto& f : forwards_)
        if (f.name == name) return &f;
    return nullptr;
}

result<agent_conn::channel_grant> agent_conn::open_channel(link::channel_handler& c, reactor::connection& keep,
                                                          std::string_view name, std::string_view origin_host,
                                                          std::uint32_t origin_port) {
    if (done_ || !ep_.up()) return fail(errc::closed, "agent session over");
    forward* f = find_forward(name);
    if (!f) return fail(errc::closed, "tunnel not served by this session");
    if (f->active >= cfg_->max_channels_per_tunnel)
        return fail(errc::limit_exceeded, "the tunnel has max_channels_per_tunnel channels in use");
    if (!f->spare.empty()) {
        f->low = std::min(f->low, unsigned(f->spare.size()));
        const std::uint32_t id = f->spare.back().id;
        f->spare.pop_back();
        spares_.erase(id);
        ep_.attach(id, c, keep);
        ++f->active;
        in_use_[id] = f->name;
        // Its replacement opens when this exchange ends (consumer_closed), not now: the open
        // and its confirmation would otherwise share the CPU with this request's own path.
        return channel_grant{id, true};
    }
    // None ready: this request pays the open round trip, and one more spare is kept from now on.
    f->low = 0;
    if (f->want < kMaxSpare) ++f->want;
    auto id = ep_.open_forwarded(name, f->port, origin_host, origin_port);
    if (!id) return fail(id.err());
    ep_.attach(*id, c, keep);
    ++f->active;
    in_use_[*id] = f->name;
    top_up(*f);
    // A spare's open that failed the whole session ended it (and told `c`, before it took the
    // channel): the consumer waits for the next session.
    if (done_) return fail(errc::closed, "agent session over");
    return channel_grant{*id, false};
}

void agent_conn::top_up(forward& f) {
    if (done_ || f.refused) return;
    while (f.spare.size() + f.opening < f.want) {
        // The originator of a spare is not known yet (X-Forwarded-For carries the consumer's).
        auto id = ep_.open_forwarded(f.name, f.port, "0.0.0.0", 0);
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
    if (close_it) ep_.close(id);
}

void agent_conn::close_oldest_spare(forward& f) {
    const std::uint32_t id = f.spare.front().id;
    f.spare.erase(f.spare.begin());
    spares_.erase(id);
    ep_.close(id);
}

void agent_conn::expire_spares() {
    if (done_) return;
    const auto now = sh_.now();
    reactor::shard::clock::time_point next{};
    for (auto& f : forwards_) {
        while (!f.spare.empty() && f.spare.front().since + kSpareTtl <= now) {
            close_oldest_spare(f);
            if (f.want > 1) --f.want;  // not needed this long: keep fewer
        }
        if (!f.spare.empty() && (next == decltype(next){} || f.spare.front().since < next)) next = f.spare.front().since;
    }
    if (next != decltype(next){}) spare_timer_.arm_at(next + kSpareTtl);
}

void agent_conn::close_spares(forward& f) {
    for (const spare_channel& c : f.spare) {
        spares_.erase(c.id);
        if (!done_) ep_.close(c.id);
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
}

void agent_conn::consumer_closed(std::uint32_t id, const link::channel_handler& c) {
    if (ep_.handler(id) != &c) return;
    ep_.close(id);
    channel_ended(id);
    if (done_) return;
    for (auto& f : forwards_) top_up(f);  // replacements for spares taken
}

void agent_conn::forget_in_use(const std::string& name) {
    // The forward is gone (cancelled, or taken over): its channels in use go on, but they no
    // longer count for a forward of the same name that may come back on this session.
    for (auto it = in_use_.begin(); it != in_use_.end();) {
        if (it->second == name) {
            it = in_use_.erase(it);
        } else {
            ++it;
        }
    }
}

void agent_conn::channel_ended(std::uint32_t id) {
    auto it = in_use_.find(id);
    if (it == in_use_.end()) return;
    const std::string name = std::move(it->second);
    in_use_.erase(it);
    forward* f = find_forward(name);
    if (f && f->active > 0) --f->active;
    // One waiting request of this tunnel may have the channel (on this shard: a tunnel's
    // consumers are served where its agent is).
    if (f && !done_) st_.channel_freed(name);
}

// ---- policies ----------------------------------------------------------------------------

bool agent_conn::allow_none(std::string_view) {
    // The WebSocket upgrade carried a verified JWT for sub_: the SSH session is bound to it.
    // Raw SSH carried none: the password (a JWT) is the only way in.
    return !sub_from_password_;
}

bool agent_conn::check_password(std::string_view user, std::string_view password) {
    // A JWT as password: valid, with the agent scope, and for the session's owner (the
    // upgrade's subject, or on raw SSH the SSH user name).
    auto c = st_.verifier->verify(password, unix_now());
    if (!c || !(*c)->has_scope(cfg_->agent_scope)) return false;
    if (!sub_from_password_) return (*c)->sub == sub_;
    if (counted_) return (*c)->sub == sub_;  // a second password on the same session
    if ((*c)->sub.empty() || (*c)->sub != user) return false;
    if (!r_.names().add_agent((*c)->sub, cfg_->max_agents_per_user)) {
        FERRY_LOG_GATED(st_.refused_forward_log, st_.log_now(), warn, "agent refused: too many agent connections for this user",
                        {"sub", printable((*c)->sub)}, {"session", id_});
        return false;
    }
    sub_ = (*c)->sub;
    counted_ = true;
    expires_ = (*c)->exp ? *(*c)->exp : 0;
    arm_expiry();
    return true;
}

bool agent_conn::tcpip_forward(std::string_view address, std::uint32_t port, std::uint32_t& bound) {
    if (done_ || port > 65535 || sub_.empty()) return false;
    std::string name(address);
    auto res = r_.names().claim(name, sub_, sh_.id(), id_, sh_.now());
    if (res.status != registry::claim_status::ok) {
        if (res.freed.version) publish(sh_, r_, name, res.freed);  // an ended lease went
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
        if (res.replaced_shard == sh_.id()) {
            if (auto it = st_.sessions.find(old); it != st_.sessions.end()) it->second->lose(name);
        } else {
            relay* rp = &r_;
            sh_.post(res.replaced_shard, [rp, old, name](reactor::shard& sh) {
                auto& ss = rp->state(sh.id());
                if (auto it = ss.sessions.find(old); it != ss.sessions.end()) it->second->lose(name);
            });
        }
    }
    publish(sh_, r_, name, res.now);
    FERRY_LOG_GATED(st_.session_log, st_.log_now(), info, "tunnel up", {"tunnel", name},
                    {"sub", printable(sub_)}, {"session", id_}, {"shard", sh_.id()},
                    {"replaced_session", res.replaced});
    return true;
}

bool agent_conn::cancel_tcpip_forward(std::string_view address, std::uint32_t port) {
    for (auto it = forwards_.begin(); it != forwards_.end(); ++it) {
        if (it->name == address && it->port == port) {
            std::string name = it->name;
            close_spares(*it);
            forwards_.erase(it);
            forget_in_use(name);
            if (auto l = st_.local.find(name); l != st_.local.end() && l->second == this) st_.local.erase(l);
            name_state s = r_.names().release(name, id_, true, cfg_->lease, sh_.now());
            if (s.version) publish(sh_, r_, name, s);
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
            forget_in_use(name);
            break;
        }
    }
    if (auto l = st_.local.find(name); l != st_.local.end() && l->second == this) st_.local.erase(l);
}

void agent_conn::release_names(bool clean) {
    for (auto& f : forwards_) {
        if (auto l = st_.local.find(f.name); l != st_.local.end() && l->second == this) st_.local.erase(l);
        name_state s = r_.names().release(f.name, id_, clean, cfg_->lease, sh_.now());
        if (s.version) publish(sh_, r_, f.name, s);
        if (s.state == name_state::kind::leased) st_.lease_until(sh_, s.until);
        FERRY_LOG_GATED(st_.session_log, st_.log_now(), info, "tunnel down", {"tunnel", f.name},
                        {"session", id_}, {"why", clean ? "released" : "leased to its owner"});
    }
    forwards_.clear();
}

void agent_conn::end(std::string why, bool clean, std::uint16_t ws_code) {
    if (done_) return;
    done_ = true;
    end_reason_ = std::move(why);
    release_names(clean);
    ping_timer_.cancel();
    pong_timer_.cancel();
    expiry_timer_.cancel();
    spare_timer_.cancel();
    handshake_timer_.cancel();
    ep_.end();  // consumers on its channels are told (ssh_gone)
    FERRY_LOG_GATED(st_.session_log, st_.log_now(), info, "agent gone", {"session", id_},
                    {"sub", printable(sub_)}, {"reason", end_reason_});
    t_.goodbye(ws_code, ws_code == ws::close_code::normal ? "" : end_reason_);
}

void agent_conn::on_close(const error& why) {
    slot_.release();
    if (!done_) end(why.code == errc::ok ? "closed" : std::string("connection: ") + why.detail, false);
}

}  // namespace ferry::relay
