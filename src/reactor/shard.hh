#pragma once
// A shard: one thread, pinned to one CPU, with its own io_uring, provided-buffer ring,
// listeners, connections, timers and message inbox. Nothing in it is shared with other shards
// except the inbox (a lock-free multi-producer stack) and the wake-up flag (STYLE 10).
//
// Ring flags (tried in order, next one on -EINVAL; any other error is final):
//   SINGLE_ISSUER|DEFER_TASKRUN|COOP_TASKRUN  (6.1+) completions are only processed when this
//       thread enters the kernel to wait: no IPIs, no task-work interrupting user code.
//       DEFER_TASKRUN requires SINGLE_ISSUER, and the ring must be created on the thread that
//       submits: the shard thread creates it.
//   SINGLE_ISSUER|DEFER_TASKRUN, SINGLE_ISSUER|COOP_TASKRUN (6.0), COOP_TASKRUN (5.19), none.
//   Each is tried with SUBMIT_ALL (5.18) first, then without. CQSIZE|CLAMP always (CQ = 4 x SQ).
// Required: IORING_FEAT_SUBMIT_STABLE (send iovecs are reused once submitted), provided-buffer
// rings (5.19), multishot accept (5.19) and recv (6.0). Optional: IORING_OP_MSG_RING (5.18;
// else cross-shard wake-ups use the target's eventfd), registered ring fd (5.18).
#include <liburing.h>
#include <sys/uio.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "proto/base/result.hh"
#include "reactor/address.hh"
#include "reactor/buf_ring.hh"
#include "reactor/connection.hh"
#include "reactor/function.hh"
#include "reactor/timer.hh"

namespace ferry::reactor {

class engine;

struct config {
    unsigned shards = 0;                 // 0: one per CPU this process may run on
    bool pin_threads = true;             // pthread_setaffinity_np; failure is tolerated
    unsigned sq_entries = 1024;          // per shard; the CQ gets 4x (multishot bursts)
    // Provided-buffer ring per shard: `buf_count` buffers of `buf_size` bytes. Default
    // 16 KiB x 1024 = 16 MiB per shard (see README: sizing).
    std::uint32_t buf_size = 16 * 1024;  // [64, 1 MiB]
    std::uint32_t buf_count = 1024;      // power of two, [1, 32768]
    // Fault the buffers in at start (MAP_POPULATE). 4 MiB costs ~4 ms of page faults on this
    // VM: worth it for a long-lived server, not for `ferry agent`'s start-up.
    bool populate_buffers = true;
    // When handlers hold more than this fraction of the ring (in 1/256), received data is
    // copied into heap blocks and the ring buffer returned at once. 192/256 = 75 %.
    std::uint32_t copy_above_held_256 = 192;
    std::size_t output_high_watermark = 1 << 20;  // per connection; low = high / 2
    unsigned max_send_iov = 64;          // iovecs per sendmsg (the rest goes in the next one)
};

// Per-shard counters. Written by the shard thread only; read them on that thread or after
// engine::wait().
struct shard_stats {
    std::uint64_t loops = 0;
    std::uint64_t cqes = 0;
    std::uint64_t accepts = 0;
    std::uint64_t accept_rearms = 0;     // multishot accept ended without F_MORE, re-armed
    std::uint64_t recv_cqes = 0;
    std::uint64_t recv_bytes = 0;
    std::uint64_t recv_arms = 0;
    std::uint64_t recv_no_more = 0;      // multishot recv ended without F_MORE (normal flow)
    std::uint64_t enobufs = 0;           // ... because the buffer ring was empty (normal flow)
    std::uint64_t recv_copies = 0;       // deliveries copied out of the ring under pressure
    std::uint64_t sends = 0;
    std::uint64_t send_bytes = 0;
    std::uint64_t short_sends = 0;       // the kernel took part of the iovec: consume, continue
    std::uint64_t stale_cqes = 0;        // completions for an operation no longer armed
    std::uint64_t messages = 0;          // cross-shard messages run here
    std::uint64_t msg_ring_wakes = 0;    // wake-ups sent with IORING_OP_MSG_RING
    std::uint64_t eventfd_wakes = 0;     // wake-ups sent with the eventfd
    std::uint64_t timers_fired = 0;
    std::uint64_t handovers_out = 0;
    std::uint64_t handovers_in = 0;
    std::uint64_t connections_closed = 0;

    shard_stats& operator+=(const shard_stats& o) noexcept;
};

// Builds the handler for an accepted socket (nullptr: refuse, the socket is closed). Each shard
// holds its own copy and calls it on its own thread.
using connection_factory = std::function<std::unique_ptr<connection>(shard&)>;

namespace detail {
struct listener;
struct message;
}

class alignas(64) shard {
public:
    using clock = std::chrono::steady_clock;

    shard(const shard&) = delete;
    shard& operator=(const shard&) = delete;
    ~shard();

    // The shard running on this thread, or nullptr.
    static shard* current() noexcept;
    bool on_this_thread() const noexcept { return current() == this; }

    unsigned id() const noexcept { return id_; }
    unsigned count() const noexcept;  // shards in the engine
    engine& owner_engine() const noexcept { return *engine_; }
    const config& cfg() const noexcept { return cfg_; }
    // Cached at each loop iteration (after the wait returns).
    clock::time_point now() const noexcept { return now_; }
    bool stopping() const noexcept { return stopping_; }

    // ---- shard thread only --------------------------------------------------------------
    // Runs `fn` on shard `target` (may be this one) from its loop. Messages from one sender to
    // one target run in order. Dropped (destroyed unrun) if the engine stops first.
    void post(unsigned target, unique_function<void(shard&)> fn);
    // Attaches an fd (connected TCP socket) with `pre_read` bytes delivered first. nullptr if
    // the shard is stopping (the fd is then closed).
    connection* adopt(int fd, std::unique_ptr<connection> handler, buffer_chain&& pre_read = {}) noexcept;
    // Outbound TCP connect (IORING_OP_CONNECT). on_open on success, on_close(errc::io) on
    // failure. Use a timer and close(close_mode::abort) for a connect timeout.
    result<connection*> connect(const address& to, std::unique_ptr<connection> handler) noexcept;
    // Multishot accept on an already listening fd (see engine::listen). Takes the fd.
    // Returns a handle for close_listener (0 when the shard is stopping: the fd was closed).
    std::uint64_t add_listener(int fd, connection_factory make, const listen_options& opt) noexcept;
    // Stops accepting on the listener `handle` (from add_listener on this shard): its accept is
    // cancelled, then its socket closed and its factory destroyed once the final accept CQE has
    // arrived (connections accepted meanwhile are closed unopened). Connections it accepted
    // earlier are not affected. Unknown or already closed handles are ignored.
    void close_listener(std::uint64_t handle) noexcept;

    // "SINGLE_ISSUER|DEFER_TASKRUN|COOP_TASKRUN|SUBMIT_ALL|CQSIZE|CLAMP": what the kernel took.
    std::string ring_flags() const;
    unsigned ring_flag_bits() const noexcept { return ring_flags_; }
    bool has_msg_ring() const noexcept { return msg_ring_; }
    const shard_stats& stats() const noexcept { return stats_; }
    const buf_ring& buffers() const noexcept { return bufs_; }
    std::size_t live_connections() const noexcept { return live_; }

private:
    friend class engine;
    friend class connection;
    friend class timer;

    shard(engine& e, unsigned id, const config& cfg);
    static void set_current(shard* s) noexcept;
    status init() noexcept;          // on the shard thread
    void run() noexcept;             // the loop, until stopped and drained
    void teardown() noexcept;        // after all shards have drained
    void begin_stop() noexcept;
    void drain_inbox(bool run) noexcept;

    // io_uring helpers
    io_uring_sqe* get_sqe() noexcept;
    void submit_now() noexcept;
    // Scratch iovecs/msghdrs for sends, reused after each submit (IORING_FEAT_SUBMIT_STABLE:
    // the kernel has copied them once io_uring_enter has consumed the SQE). `reserve_send`
    // must come before get_sqe(): it may submit, which must not happen with a half-built SQE.
    void reserve_send(unsigned iovs) noexcept;
    iovec* alloc_iov(unsigned n) noexcept;
    void unalloc_iov(unsigned n) noexcept { iov_used_ -= n; }
    msghdr* alloc_msghdr() noexcept;
    void dispatch(const io_uring_cqe& cqe) noexcept;
    void on_recv(connection* c, const io_uring_cqe& cqe) noexcept;
    void on_send(connection* c, const io_uring_cqe& cqe) noexcept;
    void on_connect(connection* c, const io_uring_cqe& cqe) noexcept;
    void on_accept(detail::listener* l, const io_uring_cqe& cqe) noexcept;
    void arm_accept(detail::listener* l) noexcept;
    // Marks `l` closing and cancels its accept. False when nothing was in flight: the fd is
    // closed and the caller erases `l` at once.
    bool stop_listener(detail::listener* l) noexcept;
    void arm_eventfd() noexcept;
    void wake(shard& target) noexcept;
    void eventfd_wake() noexcept;

    // connections
    connection* attach(int fd, std::unique_ptr<connection> handler) noexcept;
    void enqueue(connection* c) noexcept;
    void run_work() noexcept;
    void unlink(connection* c) noexcept;
    void wait_for_buffers(connection* c) noexcept;

    // timers
    void timer_add(timer* t) noexcept;
    void timer_moved(timer* t) noexcept;  // an armed timer's deadline changed
    void timer_remove(timer* t) noexcept;
    void heap_up(std::uint32_t i) noexcept;
    void heap_down(std::uint32_t i) noexcept;
    void run_timers() noexcept;

    engine* engine_;
    unsigned id_;
    config cfg_;
    io_uring ring_{};
    bool ring_ok_ = false;
    status init_status_{};
    unsigned ring_flags_ = 0;
    bool msg_ring_ = false;
    bool stopping_ = false;
    int event_fd_ = -1;
    std::uint64_t event_buf_ = 0;
    bool event_armed_ = false;
    std::uint16_t event_gen_ = 0;
    unsigned inflight_ = 0;         // armed operations whose final CQE has not arrived
    std::size_t live_ = 0;
    clock::time_point now_{};
    buf_ring bufs_;
    std::uint32_t copy_above_ = 0;  // held buffers above which deliveries are copied
    shard_stats stats_{};

    connection* conns_ = nullptr;   // intrusive list of live connections
    std::vector<connection*> work_, work_batch_;
    std::vector<connection*> buffer_waiters_;
    std::vector<std::unique_ptr<detail::listener>> listeners_;
    std::uint64_t next_listener_id_ = 1;
    std::vector<timer*> heap_;

    std::vector<iovec> iov_arena_;
    std::vector<msghdr> msg_arena_;
    unsigned iov_used_ = 0;
    unsigned msg_used_ = 0;

    // Cross-shard inbox: producers push with CAS, the shard takes the whole stack at once.
    alignas(64) std::atomic<detail::message*> inbox_{nullptr};
    std::atomic<bool> wake_pending_{false};
};

}  // namespace ferry::reactor
