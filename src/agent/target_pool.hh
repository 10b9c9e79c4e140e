#pragma once
// Upstream keep-alive: idle target connections, per tunnel name, for the next channel.
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "agent/agent_options.hh"
#include "reactor/connection.hh"
#include "reactor/timer.hh"

namespace ferry::agent {

class agent_target;

// Target connections whose last exchange left them reusable, per tunnel name, newest last (the
// newest is taken first, so the oldest age out). Shared by the agent, its links and the
// targets; the agent empties it when it finishes.
class target_pool {
public:
    target_pool(std::uint32_t max_per_tunnel, milliseconds idle) : max_(max_per_tunnel), idle_(idle) {}
    milliseconds idle_timeout() const noexcept { return idle_; }
    // Keeps `t` (idle) unless its tunnel's list is full or the pool is closed.
    bool put(agent_target* t);
    // The newest idle connection with at least half its idle time left (a spare channel it
    // goes to must close from the relay's side, well before the agent's idle limit); staler
    // ones close.
    reactor::ref_ptr<agent_target> take(const std::string& name, reactor::timer::clock::time_point now);
    void remove(agent_target* t);
    // The agent is finishing: every idle connection closes, none is kept afterwards.
    void close_all();

private:
    std::uint32_t max_;
    milliseconds idle_;
    bool closed_ = false;
    std::unordered_map<std::string, std::vector<reactor::ref_ptr<agent_target>>> idle_by_name_;
};

}  // namespace ferry::agent
