#pragma once
// Open connections on the relay's public listener, counted for the whole process: a total cap
// (below the open-file limit, so that accept() never fails with EMFILE for everyone) and a cap
// per client address (IPv4 address, IPv6 /64: reactor::client_key).
//
//   conn_limits::slot s;                        // held by the connection while it lives
//   auto v = limits.admit(s, peer);             // on_open
//   v == verdict::over_total -> make room (the shard evicts its oldest connection that never
//                               presented a valid token) and admit(s, peer, true), or close
//
// A slot moves with the connection (hand-overs between shards, the switch to an agent session)
// and gives its counts back when destroyed, on whatever thread that happens.
//
// Why counters shared by all shards when the data path takes no lock: this runs once per
// connection (open and close), never per request; the total is one atomic, and the per-address
// counts sit in 64 mutex-guarded stripes chosen by the address hash, so two shards rarely meet
// on one lock. An exact count across shards is what makes the caps mean what they say (a
// per-shard share would let one address hold N x its cap on N shards, or refuse it early when
// SO_REUSEPORT hashes its connections unevenly).
//
// Thread: any.
#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <unordered_map>

#include "reactor/address.hh"
#include "reactor/ip_prefix.hh"

namespace ferry::relay {

class conn_limits {
public:
    // 0 = no cap.
    conn_limits(std::size_t max_total, std::size_t max_per_ip) noexcept
        : max_total_(max_total), max_per_ip_(max_per_ip) {}
    conn_limits(const conn_limits&) = delete;
    conn_limits& operator=(const conn_limits&) = delete;

    class slot {
    public:
        slot() noexcept = default;
        slot(slot&& o) noexcept;
        slot& operator=(slot&& o) noexcept;
        ~slot() { release(); }
        bool counted() const noexcept { return owner_ != nullptr; }
        void release() noexcept;

    private:
        friend class conn_limits;
        conn_limits* owner_ = nullptr;
        reactor::client_key key_{};
        bool per_ip_ = false;
    };

    enum class verdict : std::uint8_t {
        ok,          // counted
        over_ip,     // this address holds max_per_ip connections: refuse (nothing counted)
        over_total,  // the process holds max_total: make room and admit_anyway(), or refuse
    };
    // Counts the connection from `peer` in `s`. `room_made`: the caller just evicted another
    // connection, whose count comes back when it is gone: the total cap does not apply (the
    // per-address one does). `per_address` false: not counted per address (a trusted proxy,
    // which speaks for many clients).
    verdict admit(slot& s, const reactor::address& peer, bool room_made = false,
                  bool per_address = true) noexcept;

    std::size_t total() const noexcept { return total_.load(std::memory_order_relaxed); }
    std::size_t from(const reactor::address& peer) const noexcept;
    std::size_t max_total() const noexcept { return max_total_; }
    std::size_t max_per_ip() const noexcept { return max_per_ip_; }

private:
    struct key_hash {
        std::size_t operator()(const reactor::client_key& k) const noexcept { return k.hash(); }
    };
    struct stripe {
        std::mutex mu;
        std::unordered_map<reactor::client_key, std::uint32_t, key_hash> count;
    };
    static constexpr std::size_t kStripes = 64;
    stripe& stripe_of(const reactor::client_key& k) const noexcept {
        return stripes_[k.hash() % kStripes];
    }
    bool take_ip(const reactor::client_key& k) noexcept;
    void give_ip(const reactor::client_key& k) noexcept;
    void give_back(slot& s) noexcept;

    const std::size_t max_total_;
    const std::size_t max_per_ip_;
    std::atomic<std::size_t> total_{0};
    mutable std::array<stripe, kStripes> stripes_;
};

}  // namespace ferry::relay
