#include "relay/registry.hh"

#include "relay/ingress.hh"

namespace ferry::relay {

namespace {

// A lease that has run out is the same as no entry.
bool expired(const name_state& s, steady::time_point now) {
    return s.state == name_state::kind::leased && now >= s.until;
}

}  // namespace

registry::claim_result registry::claim(std::string_view name, std::string_view owner,
                                       unsigned shard, std::uint64_t session,
                                       steady::time_point now) {
    claim_result r;
    if (!ingress::valid_tunnel_name(name)) {
        r.status = claim_status::invalid;
        return r;
    }
    std::lock_guard lk(mu_);
    auto it = names_.find(std::string(name));
    if (it != names_.end() && expired(it->second.state, now)) {
        // A lease that ended but was not swept yet: the name is free (and said so, whatever
        // this claim's outcome).
        r.freed = it->second.state;
        r.freed.state = name_state::kind::free;
        r.freed.until = {};
        r.freed.version = ++version_;
        erase_entry(it);
        it = names_.end();
    }
    if (it != names_.end()) {
        name_state& cur = it->second.state;
        if (cur.owner != owner) {
            r.status = claim_status::taken;
            return r;
        }
        if (cur.state == name_state::kind::online && cur.session == session) {
            r.status = claim_status::duplicate;
            return r;
        }
        if (cur.state == name_state::kind::online) {
            // The same owner again from a new session: the old one is stale (a reconnecting
            // agent whose previous TCP connection is not dead yet). Take over at once.
            r.replaced = cur.session;
            r.replaced_shard = cur.shard;
        }
    } else {
        // A name new to this owner counts against its cap (taking back its own leased or
        // stale names does not).
        unsigned& n = owned_[std::string(owner)];
        if (max_names_ != 0 && n >= max_names_) {
            r.status = claim_status::limit;
            return r;
        }
        ++n;
    }
    entry& e = names_[std::string(name)];
    drop_lease(e);  // taken back from its own lease
    name_state& s = e.state;
    s.state = name_state::kind::online;
    s.owner = std::string(owner);
    s.shard = shard;
    s.session = session;
    s.until = {};
    s.version = ++version_;
    r.status = claim_status::ok;
    r.now = s;
    return r;
}

name_state registry::release(std::string_view name, std::uint64_t session, bool clean,
                             steady::duration lease, steady::time_point now) {
    std::lock_guard lk(mu_);
    auto it = names_.find(std::string(name));
    if (it == names_.end() || it->second.state.state != name_state::kind::online ||
        it->second.state.session != session) {
        return {};  // version 0: nothing changed (taken over meanwhile)
    }
    name_state& s = it->second.state;
    s.session = 0;
    s.version = ++version_;
    if (clean || lease <= steady::duration::zero()) {
        s.state = name_state::kind::free;
        name_state out = s;
        erase_entry(it);
        return out;
    }
    s.state = name_state::kind::leased;
    s.until = now + lease;
    it->second.lease = leases_.emplace(s.until, it->first);
    it->second.has_lease = true;
    return s;
}

name_state registry::get(std::string_view name, steady::time_point now) const {
    std::lock_guard lk(mu_);
    auto it = names_.find(std::string(name));
    if (it == names_.end()) return {};
    if (expired(it->second.state, now)) {
        name_state s = it->second.state;
        s.state = name_state::kind::free;
        return s;
    }
    return it->second.state;
}

void registry::drop_lease(entry& e) {
    if (!e.has_lease) return;
    leases_.erase(e.lease);
    e.has_lease = false;
}

void registry::erase_entry(entry_map::iterator it) {
    drop_lease(it->second);
    auto o = owned_.find(it->second.state.owner);
    if (o != owned_.end() && --o->second == 0) owned_.erase(o);
    names_.erase(it);
}

std::vector<registry::expired_name> registry::expire(steady::time_point now, steady::time_point* next) {
    std::vector<expired_name> out;
    std::lock_guard lk(mu_);
    while (!leases_.empty() && leases_.begin()->first <= now) {
        // Each record belongs to a leased entry (taking a name back or freeing it removes it).
        auto it = names_.find(leases_.begin()->second);
        if (it == names_.end()) {  // cannot happen; never loop on it
            leases_.erase(leases_.begin());
            continue;
        }
        name_state s = it->second.state;
        s.state = name_state::kind::free;
        s.until = {};
        s.version = ++version_;
        out.push_back({it->first, std::move(s)});
        erase_entry(it);
    }
    if (next) *next = leases_.empty() ? steady::time_point{} : leases_.begin()->first;
    return out;
}

namespace {
unsigned count_of(const std::unordered_map<std::string, unsigned>& m, std::string_view owner) {
    auto it = m.find(std::string(owner));
    return it == m.end() ? 0 : it->second;
}
}  // namespace

unsigned registry::names(std::string_view owner) const {
    std::lock_guard lk(mu_);
    return count_of(owned_, owner);
}

std::size_t registry::size() const {
    std::lock_guard lk(mu_);
    return names_.size();
}

std::size_t registry::pending_leases() const {
    std::lock_guard lk(mu_);
    return leases_.size();
}

bool registry::add_agent(std::string_view owner, unsigned max) {
    std::lock_guard lk(mu_);
    unsigned& n = agents_[std::string(owner)];
    if (n >= max) {
        if (n == 0) agents_.erase(std::string(owner));
        return false;
    }
    ++n;
    return true;
}

void registry::remove_agent(std::string_view owner) {
    std::lock_guard lk(mu_);
    auto it = agents_.find(std::string(owner));
    if (it == agents_.end()) return;
    if (--it->second == 0) agents_.erase(it);
}

unsigned registry::agents(std::string_view owner) const {
    std::lock_guard lk(mu_);
    return count_of(agents_, owner);
}

std::uint64_t registry::next_session() noexcept {
    std::lock_guard lk(mu_);
    return ++sessions_;
}

}  // namespace ferry::relay
