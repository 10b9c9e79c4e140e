#pragma once
// The engine: N shards (threads) started together, stopped together.
//
//   auto eng = engine::start(cfg);            // creates threads; each creates its own ring
//   if (!eng) { print eng.err().detail; }     // e.g. io_uring blocked by seccomp, names the fix
//   auto bound = (*eng)->listen(addr, factory);   // SO_REUSEPORT socket per shard
//   ...                                          // shards run until stop()
//   (*eng)->stop(); (*eng)->wait();
//
// Thread: any thread may call listen/post/stop; wait() and the destructor must not run on a
// shard thread.
#include <barrier>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "proto/base/result.hh"
#include "reactor/shard.hh"

namespace ferry::reactor {

class engine {
public:
    // Starts the shards and returns once every ring is set up. On failure every thread is
    // joined and the error of the first failing shard is returned: errc::unsupported with a
    // detail naming the fix when io_uring itself is unavailable (error::sys = errno).
    static result<std::unique_ptr<engine>> start(const config& cfg);
    ~engine();  // stop() + wait()
    engine(const engine&) = delete;
    engine& operator=(const engine&) = delete;

    unsigned size() const noexcept { return static_cast<unsigned>(shards_.size()); }
    shard& at(unsigned i) noexcept { return *shards_[i]; }

    // Binds one SO_REUSEPORT listening socket per shard to `addr` (port 0: the first socket
    // picks a port and the others bind to the same one) and arms multishot accept on each.
    // Returns the bound address. Connections may arrive as soon as this returns.
    result<address> listen(const address& addr, connection_factory make, const listen_options& opt = {});
    // Runs `fn` on shard `target`. From a shard thread this is shard::post (MSG_RING wake-up);
    // from any other thread it wakes the target through its eventfd.
    void post(unsigned target, unique_function<void(shard&)> fn);
    // Asks every shard to stop: listeners close, connections are aborted (on_close with
    // errc::closed), operations are cancelled and reaped, threads exit. Idempotent, returns at
    // once, callable from any thread including a shard's.
    void stop() noexcept;
    // Joins the shard threads (after stop(), or when something else stops them).
    void wait() noexcept;
    bool stop_requested() const noexcept { return stop_requested_.load(); }

    std::string ring_flags() const { return shards_.empty() ? std::string() : shards_[0]->ring_flags(); }
    // Sum of all shards' counters; only meaningful after wait().
    shard_stats total_stats() const noexcept;

private:
    friend class shard;
    engine() = default;
    void thread_main(unsigned i) noexcept;
    void push(shard& target, unique_function<void(shard&)> fn);

    std::vector<std::unique_ptr<shard>> shards_;
    std::vector<std::thread> threads_;
    std::vector<int> cpus_;
    std::atomic<bool> stop_requested_{false};
    std::atomic<unsigned> init_done_{0};
    std::atomic<int> start_state_{0};  // 0 pending, 1 go, -1 abort
    std::unique_ptr<std::barrier<>> drained_;
    bool joined_ = false;
};

// The message an io_uring_setup failure becomes (exposed for tests and the binaries).
error uring_unavailable_error(int err) noexcept;

}  // namespace ferry::reactor
