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

#include "proto/base/result.hh"
#include "proto/ssh/crypto.hh"
#include "proto/ssh/transport.hh"
#include "proto/tls/context.hh"
#include "proto/ws/frame.hh"
#include "reactor/address.hh"
#include "reactor/connection.hh"
#include "reactor/timer.hh"
#include "tunnel/known_hosts.hh"

namespace ferry::reactor {
class shard;
}

namespace ferry::tunnel {

using std::chrono::milliseconds;

// ---- reconnect schedule (R1) --------------------------------------------------------------------

struct backoff_policy {
    milliseconds base{2'000};
    double factor = 2.0;
    milliseconds cap{60'000};
    double jitter = 0.3;  // each delay is nominal * (1 +- jitter), then capped
};

class backoff {
public:
    // `uniform` returns numbers in [0, 1): injected so tests are deterministic.
    backoff(backoff_policy p, std::function<double()> uniform);
    // The delay before the next attempt: 0 after a success (the first retry is immediate),
    // then base, base*factor, ... with jitter, never above the cap.
    milliseconds next();
    // The cap (with downward jitter); the schedule stays at the cap afterwards. For refusals
    // that retrying soon cannot fix (401/403).
    milliseconds at_cap();
    // A connection succeeded: the next failure retries at once again.
    void reset() noexcept { step_ = 0; }
    unsigned step() const noexcept { return step_; }

private:
    milliseconds jittered(double nominal_ms);
    backoff_policy p_;
    std::function<double()> uniform_;
    unsigned step_ = 0;  // retries since the last success
};

// ---- options --------------------------------------------------------------------------------

struct agent_tunnel {
    std::string name;           // the tunnel name (tcpip-forward address)
    std::string target_text;    // "HOST:PORT" as configured (logs)
    reactor::address target;    // resolved at start-up
};

struct agent_timings {
    milliseconds connect_timeout{10'000};         // TCP + TLS + upgrade
    milliseconds ssh_timeout{30'000};             // upgrade -> SSH authenticated
    milliseconds target_connect_timeout{10'000};  // per channel
    milliseconds ws_ping_interval{30'000};
    milliseconds ws_pong_timeout{45'000};
    milliseconds keepalive_interval{30'000};
    unsigned keepalive_max_outstanding = 3;
    milliseconds drain_timeout{10'000};           // in-flight channels after stop()
    milliseconds close_timeout{3'000};            // WebSocket close handshake, target flushes
    milliseconds upstream_idle{4'000};            // a kept upstream connection unused this long closes
    backoff_policy backoff{};
};

struct agent_options {
    std::string relay_host;                      // DNS name or IP literal
    std::uint16_t relay_port = 443;
    std::string relay_path = "/tunnel";
    // wss:// when set (SNI and certificate name = relay_host); ws:// when null.
    std::shared_ptr<const tls::client_context> tls;
    // The JWT, asked before every attempt (a token file is re-read, a command re-run).
    std::function<result<std::string>()> token;
    // Name resolution for relay_host when it is not an IP literal (may block; see above).
    std::function<result<reactor::address>(const std::string& host, std::uint16_t port)> resolve;
    std::vector<agent_tunnel> tunnels;
    std::uint32_t forward_port = 80;             // the port sent with tcpip-forward
    std::string known_hosts;                     // file; "" = remember in memory only
    std::string ssh_user;                        // "" = the token's `sub`, else "ferry"
    unsigned max_attempts = 0;                   // consecutive failed attempts; 0 = for ever
    agent_timings timings{};
    // Receive limits; SSH bytes are never buffered as whole messages, so the message size is
    // not bounded beyond the frame limit.
    ws::limits ws_limits = [] {
        ws::limits l;
        l.max_message = std::uint64_t(1) << 40;
        return l;
    }();
    std::size_t target_watermark = 1 << 20;      // queued bytes per target socket
    std::uint32_t max_channels = 1024;
    // Upstream keep-alive: idle target connections kept per tunnel after an HTTP exchange that
    // allows it, for the next channel (no connect per request); 0 = a connection per channel.
    std::uint32_t upstream_keepalive = 128;
    // [0, 1) for the backoff's jitter; null: a generator seeded from the system.
    std::function<double()> uniform;
};

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

}  // namespace ferry::tunnel
