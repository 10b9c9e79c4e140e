#pragma once
// Everything one shard owns for the relay (directory replica, local sessions, waiting consumers,
// limiter, evict lists). Touched only by its shard's thread once prepared.
#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "link/ws_server.hh"
#include "proto/base/log.hh"
#include "proto/http1/body.hh"
#include "proto/http1/parser.hh"
#include "proto/jwt/verifier.hh"
#include "proto/ssh/crypto.hh"
#include "proto/ssh/session.hh"
#include "reactor/connection.hh"
#include "reactor/timer.hh"
#include "relay/conn_limits.hh"
#include "relay/ingress.hh"
#include "relay/rate_limit.hh"
#include "relay/registry.hh"
#include "relay/relay.hh"

namespace ferry::relay {

class agent_conn;
class consumer_conn;

// Consumer connections a shard may close to make room at max_connections (conn_limits),
// least recently active first (a connection joins at the back when it starts waiting for a
// request). Intrusive: the links are in consumer_conn.
struct evict_list {
    consumer_conn* first = nullptr;
    consumer_conn* last = nullptr;
};

// Everything a shard owns for the relay. Touched only by its shard's thread once prepared.
struct shard_state {
    relay* r = nullptr;
    unsigned id = 0;
    // This shard's configuration snapshot; a connection keeps the one it started with.
    std::shared_ptr<const relay_config> cfg;
    std::unique_ptr<ssh::system_rng> rng;
    std::optional<ssh::ed25519_private> host_key;
    std::unique_ptr<jwt::verifier> verifier;
    // Replica of the registry: what consumers on this shard route by. Updated by messages
    // (publish()); a message older than the entry (lower version) is ignored. Free names stay
    // as tombstones (state free) for a second, then go (forget_tombstones).
    std::unordered_map<std::string, name_state> directory;
    struct tombstone {
        steady::time_point at;
        std::string name;
        std::uint64_t version;
    };
    std::deque<tombstone> tombstones;
    void forget_tombstones();
    // Names whose session lives on this shard.
    std::unordered_map<std::string, agent_conn*> local;
    // Live agent sessions on this shard by id (take-over messages find them here).
    std::unordered_map<std::uint64_t, agent_conn*> sessions;
    // Consumers waiting for a name to come (back) online.
    std::unordered_map<std::string, std::vector<reactor::ref_ptr<consumer_conn>>> waiting;
    // Per-user request rate (counted where a request is served).
    rate_limiter limiter;
    // The registry's next lease end: the timer (made on the shard's thread at the first lease
    // released here) removes ended leases from the registry and publishes them. Every shard
    // that released a lease keeps one armed; expire() hands each ended lease out once.
    std::optional<reactor::timer> lease_timer;
    // Lines a peer can repeat at will, rate-limited per shard (log::gate).
    log::gate refused_forward_log{20, 1000};
    log::gate refused_connection_log{20, 1000};
    log::gate session_log{200, 1000};  // agent sessions and tunnel up/down
    // Consumer connections on this shard waiting for a request (none in flight), in two lists:
    // those that never presented a valid token go first when the process is at max_connections,
    // then idle keep-alive ones of token holders (a server may close an idle keep-alive
    // connection at any time). Agent sessions are never evicted: they keep the headroom.
    evict_list unauthenticated;
    evict_list idle;
    // Closes the first evictable one (an unauthenticated one if any); false when there is none.
    bool evict_one();
    // How many connections the two lists hold: written by this shard, read by the others when
    // the process is at its cap (consumers of a tunnel live on its agent's shard, so room is
    // often on another shard than the one that accepts).
    std::atomic<std::uint32_t> listed{0};

    // Applies a registry change to the replica; wakes waiting consumers when the name is
    // online (here or elsewhere) or gone.
    void apply(const std::string& name, const name_state& s);
    // A channel of `name` (served here) ended: the first consumer waiting for one tries again.
    void channel_freed(const std::string& name);
    // A name released on `sh` (this shard) is leased until `until`: sweep the registry then.
    void lease_until(reactor::shard& sh, steady::time_point until);
    void sweep_leases(reactor::shard& sh);
    std::int64_t log_now() const;  // the clock of the log gates (ms)
    void random(std::span<std::byte> out);
    // A fresh 32-character request id into `id` (a connection's string, reused per request).
    void new_request_id(std::string& id);
};

// Peer-chosen text for a log line: printable ASCII only, at most 100 bytes.
std::string printable(std::string_view s);

// Sends a registry change to every shard's replica (from a shard thread).
void publish(reactor::shard& from, relay& r, const std::string& name, const name_state& s);

}  // namespace ferry::relay
