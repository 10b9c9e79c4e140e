#pragma once
// Who holds which tunnel name, process-wide: the one authority that arbitrates registrations
// between shards, with leases and the per-user agent limit.
//
// Why a mutex here when the data path takes no lock: the SSH library answers `tcpip-forward`
// synchronously (connection_policy), so the decision must be made on the agent's shard at that
// moment; registrations are rare (one per tunnel per agent connection), and consumer requests
// never come here — they read their shard's `directory` replica, which this class's callers
// update by cross-shard messages carrying the `version` it assigns (see relay.cc).
//
// States of a name: free (absent) -> online (a live session holds it) -> leased (its session
// dropped uncleanly: only the same owner may take it until `until`) -> free again. A clean
// release (cancel-tcpip-forward, or the agent's DISCONNECT) frees it at once; a lease that ends
// is removed by expire() (the relay calls it from a timer at the lease's end and publishes the
// result), so leased names never pile up.
//
// Each owner holds at most `max_names_per_user` names, online and leased together: dropping
// the connection and registering again cannot collect names, because the dropped ones stay
// counted until their lease ends (issue 11: 44,800 names in 62 s before that rule).
//
// Thread: any (internally locked); calls are short and never block on I/O.
#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace ferry::relay {

using steady = std::chrono::steady_clock;

// What shards replicate about a name (the directory entry).
struct name_state {
    enum class kind : std::uint8_t { free, online, leased };
    kind state = kind::free;
    std::string owner;            // the token `sub` that holds (or held) it
    unsigned shard = 0;           // online: the shard of the session that serves it
    std::uint64_t session = 0;    // online: that session's id
    steady::time_point until{};   // leased: when the lease ends
    std::uint64_t version = 0;    // increases with every change of this name
};

class registry {
public:
    // 0: no cap on names per owner.
    explicit registry(unsigned max_names_per_user = 0) noexcept : max_names_(max_names_per_user) {}

    enum class claim_status : std::uint8_t {
        ok,          // the name is now online for this session
        taken,       // online or leased for another user
        invalid,     // not a valid tunnel name
        duplicate,   // this session already holds it
        limit,       // the owner already holds max_names_per_user names (online or leased)
    };
    struct claim_result {
        claim_status status = claim_status::taken;
        name_state now;                 // the new state (valid when ok)
        std::uint64_t replaced = 0;     // ok: a stale session of the same owner that lost it
        unsigned replaced_shard = 0;
        // Not ok, but an ended lease of the name was removed on the way (version != 0): the
        // caller publishes this free state so that no replica keeps the lease.
        name_state freed;
    };

    // `session` ids are unique process-wide (next_session()).
    claim_result claim(std::string_view name, std::string_view owner, unsigned shard,
                       std::uint64_t session, steady::time_point now);
    // The session gives `name` back; `clean` frees it, else it is leased for `lease`. Returns
    // the new state, or nullopt-like {version 0} when the session did not hold it (already
    // replaced).
    name_state release(std::string_view name, std::uint64_t session, bool clean,
                       steady::duration lease, steady::time_point now);
    // The current state (expired leases read as free).
    name_state get(std::string_view name, steady::time_point now) const;
    // Removes every lease that has ended by `now` and returns the free states (new versions)
    // to publish, with the names. The earliest lease still running, if any, in `next`.
    struct expired_name {
        std::string name;
        name_state state;
    };
    std::vector<expired_name> expire(steady::time_point now, steady::time_point* next = nullptr);
    // Names `owner` holds, online or leased (a lease that ended counts until it is removed).
    unsigned names(std::string_view owner) const;
    // Entries kept (online and leased, expired leases included until expire()).
    std::size_t size() const;
    // Lease records waiting for their end (one per leased name).
    std::size_t pending_leases() const;

    // Per-user agent connections (SPEC R4: at most `max` each).
    bool add_agent(std::string_view owner, unsigned max);
    void remove_agent(std::string_view owner);
    unsigned agents(std::string_view owner) const;

    std::uint64_t next_session() noexcept;

private:
    using lease_map = std::multimap<steady::time_point, std::string>;
    struct entry {
        name_state state;
        lease_map::iterator lease{};  // its record in leases_ while leased
        bool has_lease = false;
    };
    using entry_map = std::unordered_map<std::string, entry>;
    // Drops the entry `it`, its lease record and its owner's count (under mu_).
    void erase_entry(entry_map::iterator it);
    void drop_lease(entry& e);

    mutable std::mutex mu_;
    unsigned max_names_ = 0;
    entry_map names_;
    std::unordered_map<std::string, unsigned> owned_;  // names per owner (entries in names_)
    // Lease ends, earliest first: one record per leased name (taking a name back removes it).
    lease_map leases_;
    std::unordered_map<std::string, unsigned> agents_;
    std::uint64_t version_ = 0;
    std::uint64_t sessions_ = 0;
};

}  // namespace ferry::relay
