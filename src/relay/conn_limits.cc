#include "relay/conn_limits.hh"

namespace ferry::relay {

conn_limits::slot::slot(slot&& o) noexcept : owner_(o.owner_), key_(o.key_), per_ip_(o.per_ip_) {
    o.owner_ = nullptr;
    o.per_ip_ = false;
}

conn_limits::slot& conn_limits::slot::operator=(slot&& o) noexcept {
    if (this != &o) {
        release();
        owner_ = o.owner_;
        key_ = o.key_;
        per_ip_ = o.per_ip_;
        o.owner_ = nullptr;
        o.per_ip_ = false;
    }
    return *this;
}

void conn_limits::slot::release() noexcept {
    if (!owner_) return;
    owner_->give_back(*this);
    owner_ = nullptr;
    per_ip_ = false;
}

bool conn_limits::take_ip(const reactor::client_key& k) noexcept {
    stripe& s = stripe_of(k);
    std::lock_guard lk(s.mu);
    std::uint32_t& n = s.count[k];
    if (n >= max_per_ip_) {
        if (n == 0) s.count.erase(k);
        return false;
    }
    ++n;
    return true;
}

void conn_limits::give_ip(const reactor::client_key& k) noexcept {
    stripe& st = stripe_of(k);
    std::lock_guard lk(st.mu);
    auto it = st.count.find(k);
    if (it != st.count.end() && --it->second == 0) st.count.erase(it);
}

conn_limits::verdict conn_limits::admit(slot& s, const reactor::address& peer, bool room_made,
                                        bool per_address) noexcept {
    s.release();
    const reactor::client_key k = reactor::client_key_of(peer);
    const bool per_ip = max_per_ip_ != 0 && per_address;
    if (per_ip && !take_ip(k)) return verdict::over_ip;
    const std::size_t before = total_.fetch_add(1, std::memory_order_relaxed);
    if (max_total_ != 0 && before >= max_total_ && !room_made) {
        total_.fetch_sub(1, std::memory_order_relaxed);
        if (per_ip) give_ip(k);
        return verdict::over_total;
    }
    s.owner_ = this;
    s.key_ = k;
    s.per_ip_ = per_ip;
    return verdict::ok;
}

void conn_limits::give_back(slot& s) noexcept {
    total_.fetch_sub(1, std::memory_order_relaxed);
    if (s.per_ip_) give_ip(s.key_);
}

std::size_t conn_limits::from(const reactor::address& peer) const noexcept {
    const reactor::client_key k = reactor::client_key_of(peer);
    stripe& st = stripe_of(k);
    std::lock_guard lk(st.mu);
    auto it = st.count.find(k);
    return it == st.count.end() ? 0 : it->second;
}

}  // namespace ferry::relay
