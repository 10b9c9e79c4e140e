#include "relay/rate_limit.hh"

#include <algorithm>
#include <cmath>

namespace ferry::relay {

rate_limiter::rate_limiter(std::uint32_t limit, double period_s, std::size_t max_keys)
    : limit_(limit), rate_(period_s > 0 ? limit / period_s : 0), max_keys_(std::max<std::size_t>(max_keys, 1)) {}

rate_limiter::decision rate_limiter::take(std::string_view key, double now_s) {
    decision d;
    d.limit = limit_;
    if (limit_ == 0 || rate_ <= 0) {
        d.remaining = 0;
        return d;  // disabled: everything passes
    }
    auto it = buckets_.find(key);
    if (it == buckets_.end()) {
        if (buckets_.size() >= max_keys_) sweep(now_s);
        if (buckets_.size() >= max_keys_) {
            // Still full of active keys: refuse new ones rather than grow without bound.
            d.allowed = false;
            d.retry_after_s = 1;
            return d;
        }
        it = buckets_.emplace(std::string(key), bucket{double(limit_), now_s}).first;
    }
    bucket& b = it->second;
    const double elapsed = std::max(0.0, now_s - b.last);
    b.tokens = std::min(double(limit_), b.tokens + elapsed * rate_);
    b.last = now_s;
    if (b.tokens >= 1.0) {
        b.tokens -= 1.0;
        d.allowed = true;
    } else {
        d.allowed = false;
        d.retry_after_s = static_cast<std::uint32_t>(std::max(1.0, std::ceil((1.0 - b.tokens) / rate_)));
    }
    d.remaining = static_cast<std::uint32_t>(std::floor(b.tokens));
    d.reset_s = static_cast<std::uint32_t>(std::ceil((double(limit_) - b.tokens) / rate_));
    return d;
}

void rate_limiter::sweep(double now_s) {
    for (auto it = buckets_.begin(); it != buckets_.end();) {
        const double tokens = it->second.tokens + std::max(0.0, now_s - it->second.last) * rate_;
        if (tokens >= double(limit_)) {
            it = buckets_.erase(it);  // full again: the same as no bucket
        } else {
            ++it;
        }
    }
}

}  // namespace ferry::relay
