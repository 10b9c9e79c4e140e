#pragma once
// The verified-token cache: remembers tokens that passed verify() so that the next request
// carrying the same bearer token skips the base64url, JSON and signature work (an RS256 or ES256
// check costs tens of microseconds; a hit costs a hash and a compare).
//
// One per shard, never shared: not thread-safe by design (no locks on the data path). Owned by a
// `verifier`, which clears it whenever the key set or the options change.
//
//   * bounded: at most `capacity` entries (default 10 000); tokens longer than `max_token_bytes`
//     are not cached (memory is bounded by capacity * max_token_bytes plus the claims);
//   * keyed by a 64-bit hash of the whole token, confirmed by a constant-time comparison of the
//     stored token, so a hash collision can never return another token's claims and the
//     comparison time says nothing about a stored bearer token's bytes;
//   * an entry expires at min(exp, inserted_at + max_age): a hit never outlives the token, and a
//     revoked key stops being trusted within max_age even without a key set update;
//   * eviction: an expired entry among the next few at the hand if there is one, else CLOCK
//     (second chance): a hit sets the entry's reference bit; the hand skips (and clears)
//     referenced entries and takes the first unreferenced one.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "proto/jwt/token.hh"

namespace ferry::jwt {

struct cache_options {
    std::uint32_t capacity = 10000;       // entries; 0 disables the cache
    std::int64_t max_age = 300;           // seconds an entry may live after insertion
    std::size_t max_token_bytes = 4096;   // longer tokens are verified every time
    // Test hook: replaces the token hash (tests force collisions with a constant). nullptr: the
    // standard library's string hash.
    std::uint64_t (*hash)(std::string_view) = nullptr;
};

class token_cache {
public:
    struct stats {
        std::uint64_t hits = 0, misses = 0, inserts = 0, evictions = 0, expirations = 0;
    };

    explicit token_cache(const cache_options& o = {});

    // The claims of `token` if it is cached and not expired at `now`; nullptr otherwise (an
    // expired entry is dropped). The pointer stays valid until the next non-const call.
    const claims* find(std::string_view token, unix_time now) noexcept;

    // Caches `c` (the result of verifying `token` at `now`) and returns the stored copy, or
    // nullptr if the token is not cacheable (cache disabled, token too long, already expired at
    // `now`). `c` is moved from only when it is stored (non-null return). Precondition: `token`
    // verified at `now` with the owner's current keys and options. The pointer stays valid until
    // the next non-const call.
    const claims* insert(std::string_view token, claims&& c, unix_time now);

    void clear() noexcept;
    std::size_t size() const noexcept { return live_; }
    std::size_t capacity() const noexcept { return opt_.capacity; }
    const stats& counters() const noexcept { return st_; }

private:
    static constexpr std::uint32_t npos = 0xffffffffu;
    static constexpr std::uint32_t kLookahead = 8;  // entries checked for expiry before CLOCK
    struct entry {
        std::uint64_t hash = 0;
        unix_time expires = 0;
        std::uint32_t next = npos;  // bucket chain, or free list when unused
        bool used = false;
        bool referenced = false;
        std::string token;
        claims value;
    };

    std::uint64_t hash_of(std::string_view token) const noexcept;
    std::uint32_t* bucket(std::uint64_t h) noexcept { return &buckets_[h & mask_]; }
    void unlink(std::uint32_t idx) noexcept;   // removes a used entry from its chain
    void release(std::uint32_t idx) noexcept;  // unlink + put on the free list
    std::uint32_t take_slot(unix_time now);    // a free slot, evicting if full

    cache_options opt_;
    std::vector<entry> entries_;
    std::vector<std::uint32_t> buckets_;
    std::uint64_t mask_ = 0;
    std::uint32_t free_ = npos;
    std::uint32_t hand_ = 0;
    std::size_t live_ = 0;
    stats st_;
};

}  // namespace ferry::jwt
