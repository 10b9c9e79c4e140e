#pragma once
// A cancellable one-shot timer on one shard (idle timeouts, pings, retry delays).
//
// Timers live in the shard's binary min-heap (O(log n) arm/cancel, the heap index is stored in
// the timer). The loop sleeps in io_uring_enter with the earliest deadline as its timeout
// (IORING_ENTER_EXT_ARG: no timeout SQE, nothing in flight to cancel), then fires what expired.
// A timer may re-arm itself from its callback. Destroying a timer cancels it.
//
// Thread: the owning shard only (checked in debug builds). Not movable: the heap points at it.
#include <chrono>
#include <cstdint>

#include "reactor/function.hh"

namespace ferry::reactor {

class shard;

class timer {
public:
    using clock = std::chrono::steady_clock;

    timer(shard& s, unique_function<void()> callback) noexcept;
    ~timer();
    timer(const timer&) = delete;
    timer& operator=(const timer&) = delete;

    // (Re)arms; an armed timer is moved to the new deadline.
    void arm_at(clock::time_point when) noexcept;
    void arm_after(clock::duration d) noexcept;
    void cancel() noexcept;
    bool armed() const noexcept { return index_ != npos; }
    clock::time_point deadline() const noexcept { return when_; }
    // Replaces the callback (not while it is running).
    void set_callback(unique_function<void()> cb) noexcept { cb_ = std::move(cb); }

private:
    friend class shard;
    static constexpr std::uint32_t npos = UINT32_MAX;
    shard* shard_;
    unique_function<void()> cb_;
    clock::time_point when_{};
    std::uint32_t index_ = npos;
};

}  // namespace ferry::reactor
