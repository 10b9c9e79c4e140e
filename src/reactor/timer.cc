#include "reactor/timer.hh"

#include "proto/base/assert.hh"
#include "reactor/shard.hh"

namespace ferry::reactor {

timer::timer(shard& s, unique_function<void()> callback) noexcept : shard_(&s), cb_(std::move(callback)) {}

timer::~timer() { cancel(); }

void timer::arm_at(clock::time_point when) noexcept {
    FERRY_DASSERT(shard_->on_this_thread());
    if (armed()) {
        // Re-arming is frequent (sessions re-arm their deadline after every I/O, connections
        // their timeouts per request) and often to the same instant: move in place, or not at all.
        if (when == when_) return;
        when_ = when;
        shard_->timer_moved(this);
        return;
    }
    when_ = when;
    shard_->timer_add(this);
}

// The clock is read here rather than taken from shard::now(): that one is cached per loop
// iteration and may be stale by however long the callbacks before us ran.
void timer::arm_after(clock::duration d) noexcept { arm_at(clock::now() + d); }

void timer::cancel() noexcept {
    if (!armed()) return;
    FERRY_DASSERT(shard_->on_this_thread());
    shard_->timer_remove(this);
}

}  // namespace ferry::reactor
