#pragma once
// The agent (SPEC §1, §3, R1, R7, R8): dials out to the relay, speaks SSH (client role) inside
// WebSocket binary messages, asks for one reverse forward per configured tunnel, and serves the
// relay's `forwarded-tcpip` channels by connecting to the local targets of its own config.
//
//   agent a(shard, std::move(opts), rng, [](int code) { ... exit ... });
//   a.start();          // first attempt now; reconnects for ever (or max_attempts)
//   a.stop();           // SIGTERM: refuse new channels, let in-flight ones finish (drain
//                       // timeout), SSH DISCONNECT, WebSocket close 1000, then on_exit(0)
//
// One connection ("link") at a time: TCP -> TLS (wss://) -> GET /tunnel upgrade with
// `Authorization: Bearer <JWT>` -> SSH (host key checked against known_hosts, trust on first
// use; user auth `none`, then `password` = the JWT) -> `tcpip-forward NAME 80` per tunnel.
// Each channel gets its own TCP connection to its target with real back-pressure both ways:
// target bytes are offered to the channel and reading pauses while the peer's window (or a
// rekey) holds them back; relay bytes are queued on the target socket and acknowledged to the
// SSH peer (consumed()) only once that socket's output is back under its watermark. EOF maps
// to shutdown(SHUT_WR) and back; a channel closes when both directions ended.
//
// An attempt succeeds when the relay registers one of the tunnels (not merely when SSH is up):
// only then is the schedule reset, so a link dropped right after its handshake backs off.
//
// Liveness: WebSocket ping every ws_ping_interval, the link is declared dead ws_pong_timeout
// after the last pong; SSH keepalive@openssh.com every keepalive_interval, dead when more than
// keepalive_max_outstanding are unanswered. Any end of a link (refusal, error, dead peer) is
// logged with its reason and followed by a retry after backoff (R1): immediately, then base,
// x factor, +-jitter, capped; 401/403 refusals wait the cap (a bad token does not fix itself);
// Retry-After is honoured. A host key mismatch is fatal (on_exit(1)), as is reaching
// max_attempts consecutive failed attempts.
//
// Thread: everything lives on one shard (the agent runs one); the agent must be created,
// used and destroyed on it. No DNS on the shard unless `resolve` is given (it may block: it is
// only called between connections, when nothing else is in flight).
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "agent/agent_options.hh"
#include "agent/known_hosts.hh"
#include "proto/base/result.hh"
#include "proto/ssh/crypto.hh"
#include "proto/ssh/transport.hh"
#include "reactor/connection.hh"
#include "reactor/timer.hh"

namespace ferry::reactor {
class shard;
}

namespace ferry::agent {

using std::chrono::milliseconds;

// ---- the agent ----------------------------------------------------------------------------------

enum class agent_state : std::uint8_t {
    idle, connecting, handshaking, up, waiting, draining, stopped,
};
const char* to_string(agent_state s) noexcept;

struct agent_stats {
    std::uint64_t attempts = 0;          // connection attempts
    std::uint64_t sessions = 0;          // times SSH came up
    std::uint64_t forwards_ok = 0, forwards_refused = 0;
    std::uint64_t channels = 0;          // channels served (confirmed)
    std::uint64_t channels_refused = 0;  // not configured, target down, draining
    std::uint64_t upstream_connects = 0; // new target connections
    std::uint64_t upstream_reused = 0;   // channels served on a kept target connection
    std::uint64_t upstream_replays = 0;  // requests sent again after a kept connection failed unanswered
    std::uint64_t bytes_to_target = 0, bytes_from_target = 0;
    std::uint32_t last_rtt_ms = 0;       // WebSocket ping round trip
};

class agent_link;
class target_pool;

class agent {
public:
    // `on_exit` is called once, from a timer on the shard (never from inside start()/stop()),
    // when the agent is finished; the agent may be destroyed from a message posted there.
    agent(reactor::shard& s, agent_options o, ssh::rng& random, std::function<void(int exit_code)> on_exit);
    ~agent();
    agent(const agent&) = delete;
    agent& operator=(const agent&) = delete;

    void start();
    // Graceful stop (SIGTERM); a second call (or `now`) abandons in-flight channels.
    void stop(bool now = false);

    agent_state state() const noexcept { return state_; }
    const agent_stats& stats() const noexcept { return stats_; }
    const agent_options& options() const noexcept { return opt_; }

private:
    friend class agent_link;
    void attempt();
    // Called by the link (its last event); `retry_after_s` from a refusal, `cap` for 401/403.
    void link_down(agent_link* l, const std::string& reason, bool fatal, bool at_cap,
                   std::uint32_t retry_after_s);
    void link_up();       // SSH authenticated on the link
    void link_serving();  // the relay registered a tunnel on it: the attempt succeeded
    void finish(int code);
    ssh::millis now_ms() const noexcept;

    reactor::shard& shard_;
    agent_options opt_;
    ssh::rng& rng_;
    std::function<void(int)> on_exit_;
    known_hosts_verifier verifier_;
    std::shared_ptr<target_pool> pool_;  // idle upstream connections (links and targets share it)
    backoff backoff_;
    reactor::timer retry_timer_;
    reactor::ref_ptr<agent_link> link_;
    agent_state state_ = agent_state::idle;
    agent_stats stats_;
    unsigned failures_ = 0;  // consecutive failed attempts (max_attempts)
    int exit_code_ = 0;
    bool stopping_ = false;
    bool finished_ = false;
};

}  // namespace ferry::agent
