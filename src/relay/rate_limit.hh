#pragma once
// Per-key token buckets (SPEC R4: per-user request rate, default 100 requests per minute).
//
// One limiter per shard, no locks. A request is counted on the shard that serves it (the
// tunnel's shard, after any hand-over), so all requests of one tunnel meet the same bucket; a
// user whose tunnels live on different shards has one bucket per shard (at most `shards` times
// the rate in total). Buckets that are full again are dropped when the table grows, so memory
// is bounded by the number of keys active within one refill period.
//
// Time is passed in (seconds as a double on a monotonic clock).
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>

namespace ferry::relay {

class rate_limiter {
public:
    struct decision {
        bool allowed = true;
        std::uint32_t limit = 0;       // requests per period (X-RateLimit-Limit)
        std::uint32_t remaining = 0;   // whole tokens left after this request
        std::uint32_t reset_s = 0;     // seconds until the bucket is full again
        std::uint32_t retry_after_s = 0;  // refused: seconds until one token is back (>= 1)
    };

    // `limit` requests per `period_s` seconds, bursts up to `limit`; limit 0 disables.
    explicit rate_limiter(std::uint32_t limit = 0, double period_s = 60, std::size_t max_keys = 100'000);

    decision take(std::string_view key, double now_s);
    std::size_t keys() const noexcept { return buckets_.size(); }

private:
    struct bucket {
        double tokens;
        double last;
    };
    void sweep(double now_s);

    std::uint32_t limit_;
    double rate_;  // tokens per second
    std::size_t max_keys_;
    // Looked up by string_view (heterogeneous lookup): no std::string per request.
    struct key_hash {
        using is_transparent = void;
        std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
    };
    std::unordered_map<std::string, bucket, key_hash, std::equal_to<>> buckets_;
};

}  // namespace ferry::relay
