#include "agent/target_pool.hh"

#include <algorithm>

#include "agent/agent_target.hh"

namespace ferry::agent {

using reactor::ref_ptr;

bool target_pool::put(agent_target* t) {
    if (closed_) return false;
    auto& v = idle_by_name_[t->name()];
    if (v.size() >= max_) return false;
    v.push_back(ref_ptr<agent_target>(t));
    return true;
}

ref_ptr<agent_target> target_pool::take(const std::string& name, reactor::timer::clock::time_point now) {
    auto it = idle_by_name_.find(name);
    if (it == idle_by_name_.end()) return {};
    while (!it->second.empty()) {
        ref_ptr<agent_target> t = std::move(it->second.back());
        it->second.pop_back();
        if (t->idle_since() + idle_ / 2 > now) return t;
        t->idle_expired();
    }
    return {};
}

void target_pool::remove(agent_target* t) {
    auto it = idle_by_name_.find(t->name());
    if (it == idle_by_name_.end()) return;
    auto& v = it->second;
    v.erase(std::remove_if(v.begin(), v.end(), [t](auto& p) { return p.get() == t; }), v.end());
}

void target_pool::close_all() {
    closed_ = true;
    auto all = std::move(idle_by_name_);
    idle_by_name_.clear();
    for (auto& [name, v] : all)
        for (auto& t : v) t->idle_expired();
}

}  // namespace ferry::agent
