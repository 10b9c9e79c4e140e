#pragma once
// The relay's data plane (ferryd): one public listener for agents and consumers.
//
//   relay::relay r(config);                          // shared_ptr<const relay_config> (control)
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
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "reactor/shard.hh"
#include "relay/conn_limits.hh"
#include "relay/relay_config.hh"

namespace ferry::relay {

struct shard_state;
class registry;
class conn_limits;

class relay {
public:
    explicit relay(std::shared_ptr<const relay_config> cfg);
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

    // The configuration the relay started with (each shard holds a copy of the same values,
    // and each connection the snapshot of its shard when it started).
    const relay_config& config() const noexcept { return *cfg_; }
    // "SHA256:..." of the host key (for logs and for agents to pin).
    std::string host_key_fingerprint() const;

    // ---- internal (shard_state.hh, the connections) ----------------------------------------
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
    // Raw SSH connections (ssh_listen) that have not authenticated yet are never evicted to
    // make room (they are agents to be): they have a cap of their own, an eighth of
    // max_connections (at least 16), so that slow handshakes cannot fill the process.
    bool enter_ssh_pending() noexcept;
    void leave_ssh_pending() noexcept { ssh_pending_.fetch_sub(1, std::memory_order_relaxed); }
    std::uint32_t max_ssh_pending() const noexcept;

private:
    bool room_anywhere() const noexcept;  // some shard has a connection it may close for room

    std::shared_ptr<const relay_config> cfg_;
    std::unique_ptr<registry> registry_;
    std::unique_ptr<conn_limits> limits_;
    std::vector<std::unique_ptr<shard_state>> shards_;
    std::atomic<std::uint32_t> ssh_pending_{0};
};

}  // namespace ferry::relay
