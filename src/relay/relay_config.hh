#pragma once
// The relay's configuration: one immutable value, built and validated by src/control
// (control::build_relay_config) and shared as `std::shared_ptr<const relay_config>`. Each shard
// holds a copy; each connection keeps the snapshot its shard had when it started, so a later
// snapshot (a reload, with the control plane) never changes a connection halfway.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "proto/http1/types.hh"
#include "proto/jwt/keys.hh"
#include "proto/jwt/token.hh"
#include "proto/tls/context.hh"
#include "proto/ws/frame.hh"
#include "reactor/ip_prefix.hh"

namespace ferry::relay {

struct relay_config {
    // Consumer auth and agent auth (JWT).
    std::shared_ptr<const jwt::key_set> keys;
    jwt::verify_options verify;
    std::vector<std::string> public_tunnels;  // served without a token
    // Routing: "<name>.<base_domain>" as Host routes to <name> (empty: path routing only).
    std::string base_domain;
    // The public listener's TLS (certificate, key, ALPN, tickets); null = plain TCP (--no-tls).
    // Also what X-Forwarded-Proto says.
    std::shared_ptr<const tls::server_context> tls_context;
    // SSH host key (ed25519 seed, 32 bytes): the same on every restart (data dir). Wiped when
    // the configuration is destroyed.
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

    // Listeners (ferryd listens on them; the relay only serves what is accepted).
    std::string listen = "0.0.0.0:8443";
    std::string ssh_listen;  // raw SSH for agents; "" = off

    relay_config() = default;
    relay_config(const relay_config&) = default;
    relay_config& operator=(const relay_config&) = default;
    ~relay_config();
};

}  // namespace ferry::relay
