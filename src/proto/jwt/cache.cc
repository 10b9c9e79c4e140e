#include "proto/jwt/cache.hh"

#include <algorithm>
#include <functional>

#include "proto/jwt/sig.hh"

namespace ferry::jwt {

token_cache::token_cache(const cache_options& o) : opt_(o) {
    if (opt_.max_age < 0) opt_.max_age = 0;
    // Chains average at most one entry when full; the table is allocated once (4 bytes a bucket),
    // entries grow with use.
    std::size_t nb = 16;
    while (nb < opt_.capacity) nb <<= 1;
    buckets_.assign(opt_.capacity ? nb : 1, npos);
    mask_ = buckets_.size() - 1;
}

std::uint64_t token_cache::hash_of(std::string_view token) const noexcept {
    // libstdc++'s string hash (a MurmurHash variant). Not keyed: only tokens that verified are
    // ever inserted, so an attacker cannot fill a chain without valid tokens, and a collision
    // costs one extra comparison, never a wrong answer.
    if (opt_.hash) return opt_.hash(token);
    return std::hash<std::string_view>{}(token);
}

const claims* token_cache::find(std::string_view token, unix_time now) noexcept {
    if (opt_.capacity == 0) return nullptr;
    const std::uint64_t h = hash_of(token);
    for (std::uint32_t i = *bucket(h); i != npos; i = entries_[i].next) {
        entry& e = entries_[i];
        if (e.hash != h || e.token.size() != token.size()) continue;
        if (!detail::equal_ct(as_bytes(e.token), as_bytes(token))) continue;
        if (now >= e.expires) {
            release(i);
            ++st_.expirations;
            ++st_.misses;
            return nullptr;
        }
        e.referenced = true;
        ++st_.hits;
        return &e.value;
    }
    ++st_.misses;
    return nullptr;
}

const claims* token_cache::insert(std::string_view token, claims&& c, unix_time now) {
    if (opt_.capacity == 0 || token.size() > opt_.max_token_bytes) return nullptr;
    unix_time expires = now + opt_.max_age;
    if (c.exp) expires = std::min(expires, *c.exp);
    if (expires <= now) return nullptr;
    const std::uint64_t h = hash_of(token);
    // Replace an existing entry for the same token (a caller that verified after a miss on an
    // expired entry, or inserted twice).
    for (std::uint32_t i = *bucket(h); i != npos; i = entries_[i].next) {
        entry& e = entries_[i];
        if (e.hash == h && e.token.size() == token.size() && detail::equal_ct(as_bytes(e.token), as_bytes(token))) {
            e.value = std::move(c);
            e.expires = expires;
            e.referenced = false;
            ++st_.inserts;
            return &e.value;
        }
    }
    std::uint32_t idx = take_slot(now);
    entry& e = entries_[idx];
    e.hash = h;
    e.expires = expires;
    e.used = true;
    e.referenced = false;
    e.token.assign(token);
    e.value = std::move(c);
    e.next = *bucket(h);
    *bucket(h) = idx;
    ++live_;
    ++st_.inserts;
    return &e.value;
}

void token_cache::unlink(std::uint32_t idx) noexcept {
    std::uint32_t* link = bucket(entries_[idx].hash);
    while (*link != idx) link = &entries_[*link].next;
    *link = entries_[idx].next;
}

void token_cache::release(std::uint32_t idx) noexcept {
    unlink(idx);
    entry& e = entries_[idx];
    e.used = false;
    e.referenced = false;
    // Keep the string capacities for reuse, but drop the bearer token's bytes.
    detail::wipe(mut_bytes(reinterpret_cast<std::byte*>(e.token.data()), e.token.size()));
    e.token.clear();
    e.value = claims{};
    e.next = free_;
    free_ = idx;
    --live_;
}

std::uint32_t token_cache::take_slot(unix_time now) {
    if (free_ != npos) {
        std::uint32_t idx = free_;
        free_ = entries_[idx].next;
        return idx;
    }
    if (entries_.size() < opt_.capacity) {
        entries_.emplace_back();
        return std::uint32_t(entries_.size() - 1);
    }
    // Every entry is used here. An expired entry a few places ahead of the hand costs nothing
    // to take, so look for one first (a short, bounded scan).
    const auto n = std::uint32_t(entries_.size());
    for (std::uint32_t k = 0, i = hand_; k < kLookahead && k < n; ++k, i = (i + 1) % n) {
        if (now >= entries_[i].expires) {
            release(i);
            ++st_.expirations;
            free_ = entries_[i].next;  // pop what release() pushed
            return i;
        }
    }
    // CLOCK: two sweeps at most, the first clears reference bits.
    for (std::size_t steps = 0;; ++steps) {
        entry& e = entries_[hand_];
        std::uint32_t idx = hand_;
        hand_ = (hand_ + 1) % std::uint32_t(entries_.size());
        if (now >= e.expires) {
            release(idx);
            ++st_.expirations;
        } else if (e.referenced && steps < 2 * entries_.size()) {
            e.referenced = false;
            continue;
        } else {
            release(idx);
            ++st_.evictions;
        }
        free_ = entries_[idx].next;  // pop what release() pushed
        return idx;
    }
}

void token_cache::clear() noexcept {
    for (std::uint32_t i = 0; i < entries_.size(); ++i)
        if (entries_[i].used) release(i);
    entries_.clear();
    free_ = npos;
    hand_ = 0;
    std::fill(buckets_.begin(), buckets_.end(), npos);
}

}  // namespace ferry::jwt
