#include "agent/agent.hh"

#include <random>

#include "agent/agent_link.hh"
#include "agent/detail.hh"
#include "agent/target_pool.hh"
#include "link/tls_transform.hh"
#include "proto/base/log.hh"
#include "proto/jwt/token.hh"
#include "reactor/shard.hh"

namespace ferry::agent {

using detail::host_header;
using detail::to_ms;
using reactor::ref_ptr;

const char* to_string(agent_state s) noexcept {
    switch (s) {
    case agent_state::idle: return "idle";
    case agent_state::connecting: return "connecting";
    case agent_state::handshaking: return "handshaking";
    case agent_state::up: return "up";
    case agent_state::waiting: return "waiting";
    case agent_state::draining: return "draining";
    case agent_state::stopped: return "stopped";
    }
    return "?";
}

namespace {
std::function<double()> default_uniform() {
    auto gen = std::make_shared<std::mt19937_64>(std::random_device{}());
    return [gen] { return std::uniform_real_distribution<double>(0.0, 1.0)(*gen); };
}
}  // namespace

agent::agent(reactor::shard& s, agent_options o, ssh::rng& random, std::function<void(int)> on_exit)
    : shard_(s), opt_(std::move(o)), rng_(random), on_exit_(std::move(on_exit)),
      verifier_(opt_.known_hosts, known_hosts_name(opt_.relay_host, opt_.relay_port)),
      backoff_(opt_.timings.backoff, opt_.uniform ? opt_.uniform : default_uniform()),
      retry_timer_(s, [this] { attempt(); }) {
    if (opt_.upstream_keepalive > 0) {
        pool_ = std::make_shared<target_pool>(opt_.upstream_keepalive, opt_.timings.upstream_idle);
    }
}

agent::~agent() {
    retry_timer_.cancel();
    if (pool_) pool_->close_all();
    if (link_) {
        link_->detach_agent();
        link_->abandon("agent destroyed");
        link_.reset();
    }
}

std::uint64_t agent::now_ms() const noexcept { return to_ms(shard_.now()); }

void agent::start() {
    if (state_ != agent_state::idle) return;
    attempt();
}

void agent::attempt() {
    if (stopping_ || finished_) return;
    state_ = agent_state::connecting;
    ++stats_.attempts;
    const bool tls = opt_.tls != nullptr;
    FERRY_LOG(info, "connecting to relay", {"relay", opt_.relay_host}, {"port", unsigned(opt_.relay_port)},
              {"tls", tls ? "yes" : "no"}, {"attempt", stats_.attempts});

    auto fail_attempt = [this](std::string why) { link_down(nullptr, why, false, false, 0); };

    // Where to.
    result<reactor::address> addr = fail(errc::invalid_argument, "no address");
    {
        std::string lit = opt_.relay_host.find(':') != std::string::npos ? "[" + opt_.relay_host + "]" : opt_.relay_host;
        addr = reactor::address::parse(lit + ":" + std::to_string(opt_.relay_port));
        if (!addr && opt_.resolve) addr = opt_.resolve(opt_.relay_host, opt_.relay_port);
        if (!addr) return fail_attempt(std::string("cannot resolve ") + opt_.relay_host + ": " + addr.err().detail);
    }
    // The token (re-read every time: it may have been rotated).
    if (!opt_.token) return fail_attempt("no token source");
    auto token = opt_.token();
    if (!token) return fail_attempt(std::string("cannot get the token: ") + token.err().detail);
    std::string user = opt_.ssh_user;
    if (user.empty()) {
        auto c = jwt::inspect(*token);
        if (c && !c->sub.empty() && c->sub.size() <= 256) user = c->sub;
        else user = "ferry";
    }

    link::ws_client_options wo;
    wo.host = host_header(opt_.relay_host, opt_.relay_port, tls);
    wo.target = opt_.relay_path;
    wo.extra_headers = "Authorization: Bearer " + *token + "\r\n";
    wo.limits = opt_.ws_limits;
    wo.handshake_timeout = opt_.timings.connect_timeout;
    wo.close_timeout = opt_.timings.close_timeout;
    auto l = std::make_unique<agent_link>(shard_, *this, std::move(wo), rng_, std::move(*token), std::move(user));
    if (tls) {
        auto x = link::tls_transform::client(opt_.tls, opt_.relay_host);
        if (!x) return fail_attempt(std::string("TLS set-up failed: ") + x.err().detail);
        l->set_transform(std::move(*x));
    }
    agent_link* raw = l.get();
    auto c = shard_.connect(*addr, std::move(l));
    if (!c) return fail_attempt(std::string("connect: ") + c.err().detail);
    link_ = ref_ptr<agent_link>(raw);
}

void agent::link_up() {
    state_ = stopping_ ? agent_state::draining : agent_state::up;
    ++stats_.sessions;
}

void agent::link_serving() {
    // A link counts as a success once the relay registered a tunnel on it, not when SSH is up:
    // a relay (or a path) that lets SSH through and then drops the link at once must not turn
    // "the first retry is immediate" into a reconnect loop without delay.
    failures_ = 0;
    backoff_.reset();
}

void agent::link_down(agent_link* l, const std::string& reason, bool fatal, bool at_cap, std::uint32_t retry_after_s) {
    if (l && link_.get() == l) link_.reset();
    if (finished_) return;
    if (stopping_) {
        FERRY_LOG(info, "agent stopped", {"reason", reason});
        return finish(0);
    }
    if (fatal) {
        FERRY_LOG(error, "agent giving up", {"reason", reason});
        return finish(1);
    }
    ++failures_;
    if (opt_.max_attempts != 0 && failures_ >= opt_.max_attempts) {
        FERRY_LOG(error, "agent giving up: too many failed attempts", {"reason", reason},
                  {"attempts", failures_});
        return finish(1);
    }
    milliseconds d = at_cap ? backoff_.at_cap() : backoff_.next();
    if (retry_after_s > 0) d = std::max(d, milliseconds(std::int64_t(retry_after_s) * 1000));
    state_ = agent_state::waiting;
    FERRY_LOG(warn, "disconnected", {"reason", reason}, {"retry_in_ms", std::int64_t(d.count())},
              {"failures", failures_});
    retry_timer_.arm_after(d);
}

void agent::stop(bool now) {
    if (finished_) return;
    const bool again = stopping_;
    stopping_ = true;
    retry_timer_.cancel();
    if (!link_) {
        FERRY_LOG(info, "agent stopped");
        return finish(0);
    }
    state_ = agent_state::draining;
    FERRY_LOG(info, again || now ? "stopping now" : "stopping: draining in-flight channels");
    link_->begin_drain(again || now);
}

void agent::finish(int code) {
    if (finished_) return;
    finished_ = true;
    state_ = agent_state::stopped;
    if (pool_) pool_->close_all();
    exit_code_ = code;
    // on_exit runs from a timer, never from inside a link's callbacks, so the embedder may
    // react (post, stop the engine) without the agent's call stack under it.
    retry_timer_.set_callback([this] {
        if (on_exit_) on_exit_(exit_code_);
    });
    retry_timer_.arm_after(milliseconds(0));
}

}  // namespace ferry::agent
