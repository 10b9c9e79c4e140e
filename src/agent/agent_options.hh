#pragma once
// What `ferry agent` is told to do: the relay, the token source, the tunnels and their targets,
// timings and limits (filled by control::agent_options_from, read by agent, agent_link, agent_target).
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "agent/backoff.hh"
#include "agent/token_source.hh"
#include "proto/base/result.hh"
#include "proto/tls/context.hh"
#include "proto/ws/frame.hh"
#include "reactor/address.hh"

namespace ferry::agent {

using std::chrono::milliseconds;

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
    agent::token_source token;
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

}  // namespace ferry::agent
