#include "relay/shard_state.hh"

#include "relay/agent_conn.hh"
#include "relay/consumer_conn.hh"

namespace ferry::relay {

void shard_state::apply(const std::string& name, const name_state& s) {
    auto it = directory.find(name);
    if (it != directory.end() && it->second.version >= s.version) return;  // older news
    // A free name stays a while as a tombstone carrying its version: changes of one name are
    // published by different shards (claim here, release or lease end there), so an older
    // message may arrive after the newer "free" one and must not bring the name back.
    directory[name] = s;
    if (s.state == name_state::kind::free) tombstones.push_back({steady::now(), name, s.version});
    forget_tombstones();
    // Waiting consumers look again (online here or elsewhere, or gone for good).
    if (s.state == name_state::kind::leased) return;
    auto w = waiting.find(name);
    if (w == waiting.end()) return;
    auto list = std::move(w->second);
    waiting.erase(w);
    for (auto& c : list) c->tunnel_changed();
}

void shard_state::channel_freed(const std::string& name) {
    // FIFO: the one waiting longest tries first. One that does not take the channel (its
    // token expired meanwhile, the name moved to another shard, it is refused) must not leave
    // the channel idle while others wait: the next one tries, at most once each (one that
    // queues again is at the back by then).
    auto w = waiting.find(name);
    if (w == waiting.end()) return;
    for (std::size_t tries = w->second.size(); tries > 0; --tries) {
        w = waiting.find(name);
        if (w == waiting.end() || w->second.empty()) break;
        reactor::ref_ptr<consumer_conn> c = std::move(w->second.front());
        w->second.erase(w->second.begin());
        if (w->second.empty()) waiting.erase(w);
        c->tunnel_changed();
        if (c->has_channel()) break;
    }
}

void shard_state::forget_tombstones() {
    // Messages between shards take microseconds; a second is far past any reordering. Under
    // heavy churn at most kMaxTombstones are kept (the oldest go early).
    constexpr std::size_t kMaxTombstones = 1 << 16;
    const auto old = steady::now() - std::chrono::seconds(1);
    while (!tombstones.empty() && (tombstones.front().at < old || tombstones.size() > kMaxTombstones)) {
        const tombstone& t = tombstones.front();
        auto it = directory.find(t.name);
        if (it != directory.end() && it->second.state == name_state::kind::free &&
            it->second.version == t.version)
            directory.erase(it);
        tombstones.pop_front();
    }
}

void shard_state::lease_until(reactor::shard& sh, steady::time_point until) {
    if (!lease_timer) lease_timer.emplace(sh, [this, &sh] { sweep_leases(sh); });
    if (!lease_timer->armed() || until < lease_timer->deadline()) lease_timer->arm_at(until);
}

void shard_state::sweep_leases(reactor::shard& sh) {
    // Every lease that ended anywhere goes (another shard's timer may already have taken some:
    // expire() hands each one out once); the registry's new versions reach every replica.
    steady::time_point next{};
    for (auto& e : r->names().expire(steady::now(), &next)) {
        FERRY_LOG(debug, "lease ended: name free", {"tunnel", e.name}, {"owner", printable(e.state.owner)});
        publish(sh, *r, e.name, e.state);
    }
    forget_tombstones();
    if (next != steady::time_point{}) {
        lease_timer->arm_at(next);
    } else if (!tombstones.empty()) {
        lease_timer->arm_at(tombstones.front().at + std::chrono::milliseconds(1100));  // to forget them
    }
}

bool shard_state::evict_one() {
    // The lists hold only connections waiting for a request. Without a valid token the least
    // recently active goes, whatever it has sent of a head (a slow head is the attack); of
    // token holders only one with nothing of its next request received yet (a few are looked
    // at), so a request on its way is not cut.
    if (consumer_conn* c = unauthenticated.first) {
        FERRY_LOG_GATED(refused_connection_log, log_now(), info,
                        "closing the least recently active unauthenticated connection for room");
        c->evict();
        return true;
    }
    unsigned looked = 0;
    for (consumer_conn* c = idle.first; c && looked < 16; c = c->list_next_, ++looked) {
        if (c->evictable()) {
            FERRY_LOG_GATED(refused_connection_log, log_now(), info,
                            "closing the longest idle keep-alive connection for room");
            c->evict();
            return true;
        }
    }
    return false;
}

std::int64_t shard_state::log_now() const {
    return std::chrono::duration_cast<std::chrono::milliseconds>(steady::now().time_since_epoch())
        .count();
}

void shard_state::random(std::span<std::byte> out) {
    (void)rng->fill(mut_bytes(out.data(), out.size()));
}

void shard_state::new_request_id(std::string& id) {
    std::byte b[16];
    random(b);
    char out[32];
    ingress::format_request_id(std::span<const std::byte, 16>(b), out);
    id.assign(out, sizeof out);  // reuses the string's buffer from the previous request
}

std::string printable(std::string_view s) {
    std::string o(s.substr(0, 100));
    for (char& c : o) {
        if (c < ' ' || c > '~') c = '?';
    }
    return o;
}

void publish(reactor::shard& from, relay& r, const std::string& name, const name_state& s) {
    for (unsigned t = 0; t < from.count(); ++t) {
        if (t == from.id()) {
            r.state(t).apply(name, s);
            continue;
        }
        from.post(t, [&r, name, s](reactor::shard& sh) { r.state(sh.id()).apply(name, s); });
    }
}

}  // namespace ferry::relay
