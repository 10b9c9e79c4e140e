#include "agent/agent_link.hh"

#include "agent/detail.hh"
#include "agent/target_pool.hh"
#include "link/tls_transform.hh"
#include "proto/base/log.hh"
#include "proto/jwt/token.hh"
#include "reactor/shard.hh"

namespace ferry::agent {

using detail::printable;
using detail::set_nodelay;
using reactor::close_mode;
using reactor::ref_ptr;

agent_link::agent_link(reactor::shard& s, agent& a, link::ws_client_options wo, ssh::rng& rng, std::string token,
                       std::string user)
    : link::ws_client_connection(s, std::move(wo), rng), agent_(&a), shard_(s), opt_(a.opt_), rng_(rng),
      token_(std::move(token)), user_(std::move(user)), pool_(a.pool_), ep_(s, *this, *this),
      ping_timer_(s, [this] {
          if (ending_) return;
          ping_sent_ = shard_.now();
          (void)send_ping({});
          ping_timer_.arm_after(opt_.timings.ws_ping_interval);
      }),
      pong_timer_(s, [this] { fail_link("no WebSocket pong within the pong timeout", true); }),
      keepalive_timer_(s, [this] {
          if (!ssh_up()) return;
          if (keepalives_out_ >= opt_.timings.keepalive_max_outstanding) {
              fail_link("SSH keepalives unanswered", true);
              return;
          }
          if (!ep_.check(ep_.session().conn().send_keepalive(ep_.out()))) return;
          ++keepalives_out_;
          keepalive_timer_.arm_after(opt_.timings.keepalive_interval);
      }),
      setup_timer_(s, [this] { fail_link("SSH session not up within the SSH timeout", true); }),
      drain_timer_(s, [this] {
          if (ep_.handlers() > 0) {
              FERRY_LOG(warn, "drain timeout: abandoning channels", {"channels", std::uint64_t(ep_.handlers())});
          }
          finish_drain();
      }) {}

agent_link::~agent_link() { ssh::wipe(mut_bytes(reinterpret_cast<std::byte*>(token_.data()), token_.size())); }

void agent_link::on_open() {
    set_nodelay(fd());
    FERRY_LOG(debug, "relay tcp connected");
    link::ws_client_connection::on_open();
}

void agent_link::on_ws_open() {
    if (const tls::session* t = link::tls_of(*this)) {
        FERRY_LOG(info, "relay tls established", {"version", t->version_name()}, {"cipher", t->cipher_name()},
                  {"alpn", t->alpn()});
    }
    FERRY_LOG(info, "websocket upgraded", {"path", opt_.relay_path});
    if (agent_) agent_->state_ = agent_state::handshaking;

    ssh::session_config c;
    c.transport.self = ssh::role::client;
    c.transport.random = &rng_;
    c.transport.verifier = agent_ ? &agent_->verifier_ : nullptr;
    c.auth_client.user = user_;
    c.auth_client.password = token_;
    c.connection.limits.max_channels = opt_.max_channels;
    if (!c.transport.verifier) {
        fail_link("agent gone", true);
        return;
    }
    if (auto st = ep_.start(std::move(c)); !st) return on_ssh_failed(st.err());
    setup_timer_.arm_after(opt_.timings.ssh_timeout);
    ping_timer_.arm_after(opt_.timings.ws_ping_interval);
    pong_timer_.arm_after(opt_.timings.ws_pong_timeout);
}

void agent_link::on_ws_data(const ws::event& ev, slice payload) {
    if (ending_ || !ep_.started()) return;
    if (ev.op != ws::opcode::binary) {
        fail_link("relay sent a text message (SSH travels in binary messages)", false,
                  ws::close_code::unsupported_data);
        return;
    }
    ep_.feed(std::move(payload));
}

void agent_link::on_ws_pong(bytes) {
    const auto t = shard_.now();
    if (agent_ && ping_sent_.time_since_epoch().count() != 0) {
        agent_->stats_.last_rtt_ms =
            std::uint32_t(std::chrono::duration_cast<milliseconds>(t - ping_sent_).count());
    }
    if (!ending_) pong_timer_.arm_after(opt_.timings.ws_pong_timeout);
}

void agent_link::on_ws_closed(std::uint16_t code) {
    if (drain_finished_) return;  // our own close 1000 completing
    if (reason_.empty()) reason_ = "WebSocket closed by the relay (code " + std::to_string(code) + ")";
    ending_ = true;
    ep_.end();
}

void agent_link::on_ws_refused(const link::ws_refusal& r) {
    ending_ = true;
    if (r.status != 0) {
        reason_ = "relay refused the upgrade: HTTP " + std::to_string(r.status);
        if (!r.code.empty()) reason_ += " " + r.code;
        if (!r.message.empty()) reason_ += ": " + r.message;
        retry_after_ = r.retry_after;
        if (r.status == 401 || r.status == 403) {
            at_cap_ = true;
            FERRY_LOG(error, "relay refused the agent's token: check --token/--token-file (not retried soon)",
                      {"status", r.status}, {"code", r.code}, {"message", r.message});
        } else {
            FERRY_LOG(warn, "relay refused the upgrade", {"status", r.status}, {"code", r.code},
                      {"message", r.message}, {"retry_after", r.retry_after});
        }
    } else {
        reason_ = std::string(to_string(r.err.code)) + ": " + r.err.detail;
        if (r.err.code == errc::io && r.err.sys != 0) reason_ += std::string(" (") + std::strerror(r.err.sys) + ")";
    }
}

void agent_link::carry(buffer_chain& b) {
    if (ws_is_open()) {
        (void)send_binary(b);  // errc::closed: the socket is going; nothing to save
    }
    b.clear();
}

void agent_link::on_banner(std::string_view text) { FERRY_LOG(info, "relay banner", {"text", printable(text, 512)}); }

void agent_link::on_disconnected(const ssh::session_event& ev) {
    fail_link("relay sent DISCONNECT (" + std::string(ssh::to_string(ev.reason)) + "): " + printable(ev.text), false);
}

void agent_link::on_authenticated(const ssh::session_event& ev) {
    setup_timer_.cancel();
    // The JWT is not needed any more on this link.
    ssh::wipe(mut_bytes(reinterpret_cast<std::byte*>(token_.data()), token_.size()));
    token_.clear();
    const ssh::algorithms& a = ep_.session().transport().negotiated();
    const std::string fp = ssh::fingerprint_sha256(ep_.session().transport().peer_host_key());
    FERRY_LOG(info, "ssh up", {"user", user_}, {"method", ev.method}, {"cipher", ssh::info(a.enc[0]).name},
              {"host_key", fp}, {"strict_kex", ep_.session().transport().strict_kex() ? "yes" : "no"});
    if (agent_) {
        const known_hosts_verifier& v = agent_->verifier_;
        if (v.last() == known_hosts_verifier::outcome::learned) {
            FERRY_LOG(warn, "relay host key trusted on first use (pinned from now on)", {"relay", v.name()},
                      {"fingerprint", v.offered_fingerprint()}, {"known_hosts", opt_.known_hosts});
            if (!v.detail().empty()) FERRY_LOG(warn, "known_hosts not saved", {"detail", v.detail()});
        }
        agent_->link_up();
    }
    if (draining_) {
        begin_drain(false);
        return;
    }
    send_forwards();
    keepalive_timer_.arm_after(opt_.timings.keepalive_interval);
    return;
}

void agent_link::on_global_reply(const ssh::conn_event& ev) {
    if (ev.request == ssh::global_kind::keepalive) {
        if (keepalives_out_ > 0) --keepalives_out_;
    } else if (ev.request == ssh::global_kind::cancel_tcpip_forward) {
        if (pending_cancels_ > 0) --pending_cancels_;
    } else if (!pending_forwards_.empty()) {
        std::string name = std::move(pending_forwards_.front());
        pending_forwards_.pop_front();
        if (ev.ok) {
            FERRY_LOG(info, "forward ok", {"tunnel", name});
            forwards_ok_.push_back(name);
            if (agent_) {
                if (forwards_ok_.size() == 1) agent_->link_serving();
                ++agent_->stats_.forwards_ok;
            }
        } else {
            FERRY_LOG(warn, "forward refused by the relay", {"tunnel", name});
            if (agent_) ++agent_->stats_.forwards_refused;
        }
        send_forwards();
    }
}

void agent_link::on_open_request(const ssh::conn_event& ev) {
    const ssh::open_info& o = ev.open;
    auto refuse = [&](ssh::open_failure why, const char* text) {
        if (agent_) ++agent_->stats_.channels_refused;
        ep_.refuse(ev.id, why, text);
    };
    if (o.type != "forwarded-tcpip") {
        FERRY_LOG(warn, "channel refused: not forwarded-tcpip", {"type", printable(o.type, 64)});
        return refuse(ssh::open_failure::unknown_channel_type, "only forwarded-tcpip channels are served");
    }
    const agent_tunnel* tun = find_tunnel(o.host);
    if (!tun) {
        FERRY_LOG(warn, "channel refused: tunnel not configured", {"tunnel", printable(o.host, 253)});
        return refuse(ssh::open_failure::administratively_prohibited, "tunnel not configured on this agent");
    }
    if (draining_) {
        FERRY_LOG(info, "channel refused: agent shutting down", {"tunnel", tun->name});
        return refuse(ssh::open_failure::administratively_prohibited, "agent shutting down");
    }
    if (pool_) {
        if (ref_ptr<agent_target> kept = pool_->take(tun->name, shard_.now())) {
            // A kept upstream connection: no connect, the channel is confirmed at once.
            if (agent_) ++agent_->stats_.upstream_reused;
            kept->bind(this, ev.id);
            target_connected(kept.get());
            return;
        }
    }
    auto up = std::make_unique<agent_target>(shard_, this, ev.id, tun->name, opt_, pool_);
    agent_target* raw = up.get();
    auto c = shard_.connect(tun->target, std::move(up));
    if (!c) {
        FERRY_LOG(warn, "channel refused: cannot connect to target", {"tunnel", tun->name},
                  {"target", tun->target_text}, {"error", c.err().detail});
        return refuse(ssh::open_failure::connect_failed, "cannot connect to the target");
    }
    if (agent_) ++agent_->stats_.upstream_connects;
    FERRY_LOG(debug, "channel opening", {"tunnel", tun->name}, {"target", tun->target_text},
              {"origin", printable(o.origin_host, 64)}, {"origin_port", o.origin_port});
    raw->attach();
}

void agent_link::send_forwards() {
    // One tcpip-forward per tunnel, at most kForwardWindow awaiting their replies (the session
    // bounds our outstanding global requests; keepalives need room too): the rest go out as
    // replies come back, so an agent with many tunnels registers them all.
    while (!ending_ && !draining_ && ep_.up() && next_forward_ < opt_.tunnels.size() &&
           pending_forwards_.size() < kForwardWindow) {
        const agent_tunnel& t = opt_.tunnels[next_forward_];
        if (!ep_.check(ep_.session().conn().request_tcpip_forward(t.name, opt_.forward_port, ep_.out()))) return;
        pending_forwards_.push_back(t.name);
        ++next_forward_;
    }
}

void agent_link::target_connected(agent_target* t) {
    if (ending_ || !ep_.up()) return;
    ep_.confirm(t->id());
    if (agent_) ++agent_->stats_.channels;
    FERRY_LOG(debug, "channel open", {"tunnel", t->name()}, {"id", t->id()});
}

void agent_link::target_failed(agent_target* t, const std::string& why) {
    if (!serves(t->id(), t)) return;
    const agent_tunnel* tun = find_tunnel(t->name());
    FERRY_LOG(warn, "channel refused: target unreachable", {"tunnel", t->name()},
              {"target", tun ? tun->target_text : std::string()}, {"error", why});
    if (agent_) ++agent_->stats_.channels_refused;
    ep_.refuse(t->id(), ssh::open_failure::connect_failed, "target unreachable");
    check_drained();
}

bool agent_link::replay(agent_target* t, buffer_chain&& req, bool eof) {
    if (!serves(t->id(), t) || ending_) return false;
    const agent_tunnel* tun = find_tunnel(t->name());
    if (!tun) return false;
    auto fresh = std::make_unique<agent_target>(shard_, this, t->id(), t->name(), opt_, pool_);
    fresh->prepare_replay(std::move(req), eof);
    agent_target* raw = fresh.get();
    auto c = shard_.connect(tun->target, std::move(fresh));
    if (!c) return false;
    raw->attach();  // takes the channel over from `t`
    FERRY_LOG(info, "upstream closed a kept connection before answering: request sent again on a new one",
              {"tunnel", t->name()}, {"target", tun->target_text});
    if (agent_) {
        ++agent_->stats_.upstream_replays;
        ++agent_->stats_.upstream_connects;
    }
    return true;
}

void agent_link::target_closed(agent_target* t) {
    if (!serves(t->id(), t)) return;
    // The id stays reserved in the session until the peer's CLOSE; the target is done.
    ep_.close(t->id());
    check_drained();
}

void agent_link::on_ssh_failed(const error& e) {
    if (e.code == errc::ssh_host_key && agent_) {
        const known_hosts_verifier& v = agent_->verifier_;
        if (v.last() == known_hosts_verifier::outcome::mismatch) {
            FERRY_LOG(error,
                      "RELAY HOST KEY MISMATCH: the relay's SSH host key is not the one on record. "
                      "Someone may be intercepting the connection, or the relay's key changed; if the "
                      "change is expected, remove the old line from the known_hosts file.",
                      {"relay", v.name()}, {"expected", v.expected_fingerprints()},
                      {"offered", v.offered_fingerprint()}, {"known_hosts", opt_.known_hosts});
            fatal_ = true;
            reason_ = "host key mismatch";
        } else {
            FERRY_LOG(error, "relay host key refused", {"relay", v.name()}, {"offered", v.offered_fingerprint()},
                      {"detail", v.detail()});
            fatal_ = true;
            reason_ = "host key refused: " + v.detail();
        }
    }
    fail_link(std::string("SSH: ") + to_string(e.code) + ": " + e.detail, false);
}

void agent_link::stop_timers() {
    ping_timer_.cancel();
    pong_timer_.cancel();
    keepalive_timer_.cancel();
    setup_timer_.cancel();
    drain_timer_.cancel();
}

void agent_link::fail_link(std::string reason, bool abort, std::uint16_t code) {
    if (ending_) return;
    ending_ = true;
    if (reason_.empty()) reason_ = std::move(reason);
    ep_.end();  // targets aborted; a DISCONNECT the session wrote has gone out already
    stop_timers();
    if (abort) {
        close(close_mode::abort);
        return;
    }
    if (ws_is_open()) {
        ws_close(code, code == ws::close_code::going_away ? "agent closing the session" : "binary messages only");
    } else {
        close(close_mode::flush);
    }
}

void agent_link::abandon(const char* why) {
    if (reason_.empty()) reason_ = why;
    fail_link(why, true);
}

void agent_link::begin_drain(bool now_) {
    draining_ = true;
    if (ending_) return;
    if (!ssh_up()) {
        // Not serving anything yet: nothing to finish.
        reason_ = "stopped";
        fail_link("stopped", true);
        return;
    }
    if (now_) {
        finish_drain();
        return;
    }
    // The relay stops routing new requests here; in-flight channels go on.
    for (const std::string& name : forwards_ok_) {
        if (ep_.check(ep_.session().conn().cancel_tcpip_forward(name, opt_.forward_port, ep_.out()))) ++pending_cancels_;
        if (ending_) return;
    }
    forwards_ok_.clear();
    FERRY_LOG(info, "draining: waiting for in-flight channels", {"channels", std::uint64_t(ep_.handlers())},
              {"timeout_ms", std::int64_t(opt_.timings.drain_timeout.count())});
    if (ep_.handlers() == 0) {
        finish_drain();
    } else {
        drain_timer_.arm_after(opt_.timings.drain_timeout);
    }
}

void agent_link::check_drained() {
    if (draining_ && !drain_finished_ && !ending_ && ep_.handlers() == 0 && ssh_up()) finish_drain();
}

void agent_link::finish_drain() {
    if (drain_finished_ || ending_) return;
    drain_finished_ = true;
    ending_ = true;
    reason_ = "stopped";
    stop_timers();
    // DISCONNECT goes out; targets still there (drain timeout) are abandoned.
    ep_.disconnect(ssh::disconnect_reason::by_application, "agent shutting down");
    FERRY_LOG(info, "ssh disconnect sent; closing the WebSocket (1000)");
    ws_close(ws::close_code::normal, "agent shutting down");
}

void agent_link::on_close(const error& why) {
    link::ws_client_connection::on_close(why);
    ending_ = true;
    ep_.end();
    stop_timers();
    if (reason_.empty()) {
        reason_ = why.code == errc::ok ? "closed" : std::string(to_string(why.code)) + ": " + why.detail;
        if (why.code == errc::io && why.sys != 0) reason_ += std::string(" (") + std::strerror(why.sys) + ")";
    }
    if (!reported_ && agent_) {
        reported_ = true;
        agent* a = agent_;
        agent_ = nullptr;
        a->link_down(this, reason_, fatal_, at_cap_, retry_after_);
    }
}

}  // namespace ferry::agent
