#pragma once
// A TCP connection on one shard, and the handler interface protocols implement.
//
// Derive from `connection`, override the `on_*` events, and give instances to the reactor (a
// listener's factory, `shard::connect`, `shard::adopt`, or a hand-over's `adopt_fn`). The reactor
// owns one reference while the socket is open or any operation is in flight; `connection_ptr`
// adds more. The object is deleted when the last reference drops, never while the kernel may
// still complete an operation that points at it.
//
// Events are delivered from the shard's loop, never from inside a call you make on the
// connection (send(), close(), ... only record intent; the loop acts on it before the next
// io_uring_enter). Order: on_open, then on_data* (and on_output_high/low), then on_read_eof
// when the peer shuts its write side, then exactly one on_close — unless the connection was
// handed over, after which it gets no event at all.
//
// Thread: the owning shard only (checked in debug builds).
#include <cstddef>
#include <cstdint>
#include <memory>

#include "proto/base/buffer.hh"
#include "proto/base/result.hh"
#include "reactor/address.hh"
#include "reactor/function.hh"
#include "reactor/transform.hh"

namespace ferry::reactor {

class shard;
class connection;

enum class close_mode : std::uint8_t {
    flush,  // stop reading, send what is queued, then close
    abort,  // cancel everything in flight and close now (queued output is dropped)
};

// Runs on the target shard of a hand-over and returns the handler that adopts the socket
// (nullptr: the socket is closed).
using adopt_fn = unique_function<std::unique_ptr<connection>(shard&)>;

class alignas(16) connection {
public:
    connection() noexcept;
    virtual ~connection();
    connection(const connection&) = delete;
    connection& operator=(const connection&) = delete;

    // ---- events --------------------------------------------------------------------------
    // The socket is attached (accepted, connected or adopted). send() may be called before.
    virtual void on_open() {}
    // Bytes in order. `data` may be a zero-copy view of a provided-ring buffer: keeping it (or
    // linking it into a buffer_chain, e.g. to send it back) holds that ring buffer until the
    // last reference drops. Under ring pressure the reactor hands out heap copies instead.
    // Ring-backed slices must not leave the shard.
    virtual void on_data(slice data) = 0;
    // The peer shut its write side (recv returned 0). Default: close(close_mode::flush).
    virtual void on_read_eof() { close(); }
    // Queued output went above the high watermark / back below high/2 (STYLE 9). A send that
    // leaves the output above the watermark always leads to on_output_high and, once the
    // output is down to high/2, on_output_low, even when the kernel takes the bytes within the
    // same loop iteration (before the check at its end): a handler that saw
    // output_pending() > output_watermark() after queuing may simply wait for on_output_low.
    // Typical use:
    // pause_reading() the connection that feeds this one, resume on low.
    virtual void on_output_high() {}
    virtual void on_output_low() {}
    // After notify_output_drained(): nothing is queued any more (every byte queued before was
    // handed to the kernel). Once per call of notify_output_drained().
    virtual void on_output_drained() {}
    // Last event. `why.code`: errc::ok after a local close(); errc::closed when the peer closed
    // or the reactor is stopping; errc::io (why.sys = errno) on a socket error or failed
    // connect. The fd is already closed.
    virtual void on_close(const error& why) {}

    // ---- actions (owning shard only) -----------------------------------------------------
    // Queue output; sent at the end of this loop iteration with one scatter-gather send per
    // connection (corked), at most one send in flight. Payload slices are linked, not copied.
    // errc::closed after close()/shutdown_write()/hand_over() or on a closed socket.
    status send(slice data);
    status send(buffer_chain&& data);
    status send_copy(bytes data);
    // In-place output: a codec appends straight into the queued output, so no intermediate
    // chain is built per message and the output's tail block is reused across sends. nullptr
    // whenever send() would fail with errc::closed. Call commit_output() after appending.
    buffer_chain* output() noexcept;
    void commit_output() noexcept { queued(); }
    // Half-close once queued output is sent (SHUT_WR). Reading continues.
    void shutdown_write() noexcept;
    void close(close_mode mode = close_mode::flush) noexcept;
    // Counted read-disable: reading resumes when every pause has been matched by a resume.
    // While paused the multishot recv is cancelled, so the socket's own buffer (and TCP's
    // window) pushes back on the peer; bytes already received are delivered after resume.
    void pause_reading() noexcept;
    void resume_reading() noexcept;
    // Moves the socket to shard `target`: reading stops, queued output is flushed, then the fd
    // plus `already_read` plus any bytes received meanwhile (in order) travel in a message;
    // there `make(shard)` builds the new handler, which gets on_open and then that data through
    // on_data as if it had just been read. Ring-backed slices are copied (they belong to this
    // shard's ring); heap slices move. After this call this object gets no more events.
    // Errors: errc::closed (not open), errc::invalid_argument (no such shard).
    status hand_over(unsigned target, buffer_chain&& already_read, adopt_fn make);
    // Output above this many queued bytes raises on_output_high (default: shard config).
    void set_output_watermark(std::size_t high) noexcept { high_watermark_ = high; }
    std::size_t output_watermark() const noexcept { return high_watermark_; }
    // Asks for one on_output_drained() as soon as no output is queued (from the loop, even if
    // nothing is queued now). Used to wait for a peer to read what it was sent.
    void notify_output_drained() noexcept {
        want_drained_ = true;
        wake();
    }
    // Puts a byte transform (TLS) between the socket and this handler (see transform.hh):
    // on_data then receives decoded bytes and send()/output() take bytes to encode. Only
    // before the connection is attached (in the constructor or the factory). On a hand-over
    // the transform travels with the socket and replaces any the new handler set.
    void set_transform(std::unique_ptr<stream_transform> t) noexcept;
    stream_transform* transform() const noexcept { return xf_.get(); }

    // ---- queries -------------------------------------------------------------------------
    bool is_open() const noexcept { return st_ == state::open || st_ == state::connecting; }
    bool is_closed() const noexcept { return st_ == state::closed; }
    bool reading_paused() const noexcept { return pause_count_ != 0; }
    std::size_t output_pending() const noexcept { return out_.size() + plain_out_.size(); }
    int fd() const noexcept { return fd_; }
    // The owning shard (valid while not closed).
    shard& owner() const noexcept { return *shard_; }
    result<address> peer() const noexcept;

    // Intrusive reference count (not atomic: shard-local).
    void add_ref() noexcept { ++refs_; }
    void release() noexcept {
        if (--refs_ == 0) delete this;
    }

private:
    friend class shard;
    enum class state : std::uint8_t { idle, connecting, open, closing, closed };
    struct handover;

    void service() noexcept;          // the loop's single place that acts on recorded intent
    void deliver(slice s) noexcept;   // a received slice: through the transform, then route()
    void route(slice s) noexcept;     // a (decoded) slice: to on_data, the stash or a hand-over
    void deliver_transformed(slice s) noexcept;
    void pump_transform() noexcept;   // encode queued output, end marker when closing
    void transform_failed(const error& e) noexcept;
    // Where send()/output() put bytes: the socket's queue, or the transform's input.
    buffer_chain& app_out() noexcept { return xf_ ? plain_out_ : out_; }
    void abort_with(const error& e) noexcept;  // socket error or stop: close now
    void finalize() noexcept;
    void finish_handover() noexcept;
    void arm_recv() noexcept;
    void arm_send() noexcept;
    void cancel_op(std::uint8_t kind, std::uint16_t gen) noexcept;
    void wake() noexcept;             // put on the shard's work list
    void queued() noexcept;           // output was queued: notes a crossing of the watermark, wakes
    bool ops_in_flight() const noexcept { return recv_armed_ || send_inflight_ || connect_inflight_; }
    void check_thread() const noexcept;
    bool accepts_output() const noexcept;  // send()/output() would succeed

    shard* shard_ = nullptr;
    connection* prev_ = nullptr;  // shard's list of live connections
    connection* next_ = nullptr;
    int fd_ = -1;
    std::uint32_t refs_ = 1;       // the creator's unique_ptr reference, taken over at attach
    std::uint32_t pause_count_ = 0;
    std::uint32_t send_len_ = 0;   // bytes in the send in flight
    std::uint16_t recv_gen_ = 0;
    std::uint16_t send_gen_ = 0;
    std::uint16_t connect_gen_ = 0;
    state st_ = state::idle;
    close_mode close_mode_ = close_mode::flush;
    bool recv_armed_ = false;
    bool recv_cancelled_ = false;
    bool send_inflight_ = false;
    bool send_cancelled_ = false;
    bool connect_inflight_ = false;
    bool connect_cancelled_ = false;
    bool silent_ = false;          // no on_close (handed over, or hand-over aborted by stop)
    bool in_work_ = false;
    bool need_open_ = false;
    bool eof_seen_ = false;
    bool eof_delivered_ = false;
    bool above_high_ = false;
    bool crossed_high_ = false;    // output went above the watermark since the last service()
    bool want_drained_ = false;    // notify_output_drained() is pending
    bool shut_wr_wanted_ = false;
    bool shut_wr_done_ = false;
    bool waiting_buffers_ = false;
    bool xf_finished_ = false;     // transform end marker (close_notify) queued
    bool xf_failed_ = false;
    std::size_t high_watermark_ = 0;
    error reason_{};
    buffer_chain out_;
    buffer_chain stash_;  // received, not yet delivered (paused, or before on_open); decoded
    // With a transform: output queued by the handler, encoded into out_ by service(); and the
    // decoded pieces of one receive on their way to route().
    std::unique_ptr<stream_transform> xf_;
    buffer_chain plain_out_;
    buffer_chain plain_in_;
    std::unique_ptr<handover> handover_;
    std::unique_ptr<address> remote_;  // connect target
};

// An intrusive reference to a connection (shard-local).
template <class T>
class ref_ptr {
public:
    ref_ptr() noexcept = default;
    explicit ref_ptr(T* p) noexcept : p_(p) {
        if (p_) p_->add_ref();
    }
    ref_ptr(const ref_ptr& o) noexcept : ref_ptr(o.p_) {}
    ref_ptr(ref_ptr&& o) noexcept : p_(std::exchange(o.p_, nullptr)) {}
    ref_ptr& operator=(ref_ptr o) noexcept {
        std::swap(p_, o.p_);
        return *this;
    }
    ~ref_ptr() {
        if (p_) p_->release();
    }
    T* get() const noexcept { return p_; }
    T* operator->() const noexcept { return p_; }
    T& operator*() const noexcept { return *p_; }
    explicit operator bool() const noexcept { return p_ != nullptr; }
    void reset() noexcept { ref_ptr().swap(*this); }
    void swap(ref_ptr& o) noexcept { std::swap(p_, o.p_); }

private:
    T* p_ = nullptr;
};
using connection_ptr = ref_ptr<connection>;

}  // namespace ferry::reactor
