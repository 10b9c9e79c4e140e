#pragma once
// The relay's data plane (ferryd): one public listener for agents and consumers.
//
//   relay::relay r(opts);
//   r.prepare(engine.shards())                       // per-shard state, before listening
//   engine.listen(addr, with_tls(ctx, r.factory()))  // or the plain factory with --no-tls
//
// Every accepted connection starts as a consumer connection that reads one HTTP/1.1 request
// head (slowloris-bounded) and then decides:
//   * `GET /tunnel` WebSocket upgrade with a valid Bearer JWT -> handed (on the same shard) to
//     an agent session: WebSocket server + SSH server. Its `tcpip-forward` requests register
//     tunnel names (registry.hh) that live on this shard.
//   * anything else: a consumer request. JWT, route (/t/<name>/..., Host), authorisation, then
//     - the tunnel is online on this shard: a `forwarded-tcpip` channel carries the request
//       and the response, streamed both ways with SSH window flow control tied to socket
//       reads and writes;
//     - online on another shard: the socket (plus the bytes read) is handed to that shard,
//       which runs the same steps;
//     - leased (its agent is reconnecting): the request waits (bounded queue, wait limit)
//       and continues when the name comes back online, else 503.
// Errors follow SPEC §4 (ingress.hh writes them).
//
// Threads: `relay` is built and prepared on the main thread; afterwards each shard touches
// only its own shard_state; the registry is the only shared mutable object (locked).
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "proto/http1/types.hh"
#include "proto/jwt/keys.hh"
#include "proto/jwt/token.hh"
#include "proto/ws/frame.hh"
#include "relay/conn_limits.hh"
#include "reactor/ip_prefix.hh"
#include "reactor/shard.hh"

namespace ferry::relay {

struct relay_options {
    // Consumer auth and agent auth (JWT).
    std::shared_ptr<const jwt::key_set> keys;
    jwt::verify_options verify;
    std::vector<std::string> public_tunnels;  // served without a token
    // Routing: "<name>.<base_domain>" as Host routes to <name> (empty: path routing only).
    std::string base_domain;
    bool tls = false;  // X-Forwarded-Proto
    // SSH host key (ed25519 seed, 32 bytes): the same on every restart (data dir). The relay
    // wipes its copy when destroyed.
    std::vector<std::byte> host_key_seed;
    // Names and agents.
    std::chrono::milliseconds lease{60'000};
    unsigned max_agents_per_user = 3;
    unsigned max_names_per_user = 256;  // online + leased, per token subject
    // An agent connection's token must carry this scope (space-separated `scope` claim).
    std::string agent_scope = "ferry:agent";
    // Upgrade -> SSH authenticated; a silent or stalling agent connection is closed after.
    std::chrono::milliseconds handshake_timeout{15'000};
    std::uint32_t max_channels_per_tunnel = 1024;
    // Consumer requests per minute per token subject (per shard, see rate_limit.hh); 0: off.
    std::uint32_t user_rate_limit = 100;
    // Waiting for a reconnecting tunnel: per tunnel and per shard (the queue is held where
    // the requests arrived), and how long each may wait.
    unsigned queue_max = 100;
    std::chrono::milliseconds queue_wait{30'000};
    // Consumer connections.
    http1::limits head_limits{};
    std::uint64_t max_body_bytes = 0;  // 0: unlimited (bodies stream)
    std::chrono::milliseconds head_timeout{10'000};      // whole request head (slowloris)
    std::chrono::milliseconds idle_timeout{120'000};     // between requests on keep-alive
    // ... on a connection that has never presented a valid token (anonymous, or only refused).
    std::chrono::milliseconds unauthenticated_idle_timeout{10'000};
    std::chrono::milliseconds first_byte_timeout{300'000};  // request sent -> response head
    std::chrono::milliseconds close_timeout{5'000};      // flushing before close
    bool forward_authorization = false;  // keep the consumer's Authorization/Cookie
    // Relay answers (errors, responses) a connection may have queued unread before the relay
    // stops reading it: a client that pipelines and never reads costs at most this many.
    unsigned max_pipelined_requests = 16;
    // Open connections on the public listener (0: no cap) and per client address (0: off);
    // see conn_limits.hh.
    std::size_t max_connections = 0;
    std::size_t max_connections_per_ip = 0;
    // Peers whose forwarding headers (X-Forwarded-For, Forwarded, X-Real-IP) are kept and
    // extended; from anyone else they are replaced by the peer address.
    std::vector<reactor::ip_prefix> trusted_proxies;
    // Agent connections.
    ws::limits ws_limits{};
    std::chrono::milliseconds ping_interval{30'000};
    std::chrono::milliseconds pong_timeout{45'000};
    std::uint64_t rekey_bytes = 0;  // 0: SSH library default (1 GiB)
};

struct shard_state;
class registry;
class conn_limits;

class relay {
public:
    explicit relay(relay_options o);
    ~relay();
    relay(const relay&) = delete;
    relay& operator=(const relay&) = delete;

    // Builds the per-shard state for `shards` shards (host keys, RNGs, verifiers).
    status prepare(unsigned shards);
    // The listener's factory (plain TCP; wrap with with_tls for wss://). The relay must
    // outlive the engine's listeners.
    reactor::connection_factory factory();
    // The raw SSH listener's factory (ssh_listen): agents that speak SSH straight over TCP.
    reactor::connection_factory ssh_factory();

    const relay_options& options() const noexcept { return opt_; }
    // "SHA256:..." of the host key (for logs and for agents to pin).
    std::string host_key_fingerprint() const;

    // ---- internal (relay_impl.hh) ---------------------------------------------------------
    shard_state& state(unsigned shard) noexcept { return *shards_[shard]; }
    registry& names() noexcept { return *registry_; }
    conn_limits& limits() noexcept { return *limits_; }
    // At the connection cap: makes room on `on` (this thread's shard) if it can, else asks
    // another shard that has a connection to close. False when no shard has one.
    bool make_room(reactor::shard& on);
    // A connection just accepted on `on` from `peer` (`client`: its address for logs) takes
    // its count in `slot`: false (logged, rate-limited) when a cap refuses it even after
    // make_room. `per_ip`: the per-address cap applies (not to trusted proxies).
    bool admit(reactor::shard& on, conn_limits::slot& slot, const reactor::address& peer, bool per_ip,
               std::string_view client);

private:
    bool room_anywhere() const noexcept;  // some shard has a connection it may close for room

    relay_options opt_;
    std::unique_ptr<registry> registry_;
    std::unique_ptr<conn_limits> limits_;
    std::vector<std::unique_ptr<shard_state>> shards_;
};

}  // namespace ferry::relay
