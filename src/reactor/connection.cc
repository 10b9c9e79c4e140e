#include "reactor/connection.hh"

#include <sys/socket.h>
#include <unistd.h>

#include "proto/base/assert.hh"
#include "reactor/compat.hh"
#include "reactor/detail.hh"
#include "reactor/op.hh"
#include "reactor/shard.hh"

namespace ferry::reactor {

using namespace detail;

struct connection::handover {
    unsigned target = 0;
    buffer_chain pre;  // heap-backed only: it leaves this shard
    adopt_fn make;
};

namespace {
// Moves `from` to the end of `to`, copying fragments that live in a provided-buffer ring (they
// must return to their own shard's ring) and moving heap fragments as they are.
void append_for_transfer(buffer_chain& to, buffer_chain& from, const buf_ring& ring) {
    while (!from.empty()) {
        slice s = from.pop_front();
        if (ring.is_ring_owner(s.get_owner())) to.append_copy(s.view());
        else to.append(std::move(s));
    }
}
}  // namespace

connection::connection() noexcept = default;

connection::~connection() {
    // Only the reactor deletes attached connections, after their fd is gone.
    FERRY_DASSERT(fd_ < 0);
}

void connection::check_thread() const noexcept {
    FERRY_DASSERT(shard_ == nullptr || shard_->on_this_thread());
}

void connection::wake() noexcept {
    if (!in_work_ && st_ != state::closed) shard_->enqueue(this);
}

void connection::queued() noexcept {
    if (!above_high_ && output_pending() > high_watermark_) crossed_high_ = true;
    wake();
}

// ---- actions ------------------------------------------------------------------------------

status connection::send(slice data) {
    if (!accepts_output()) return fail(errc::closed, "send on a closed connection");
    app_out().append(std::move(data));
    queued();
    return {};
}

status connection::send(buffer_chain&& data) {
    if (!accepts_output()) return fail(errc::closed, "send on a closed connection");
    app_out().append(std::move(data));
    queued();
    return {};
}

bool connection::accepts_output() const noexcept {
    check_thread();
    return (st_ == state::open || st_ == state::connecting) && !shut_wr_wanted_ && !handover_;
}

buffer_chain* connection::output() noexcept { return accepts_output() ? &app_out() : nullptr; }

status connection::send_copy(bytes data) {
    if (!accepts_output()) return fail(errc::closed, "send on a closed connection");
    app_out().append_copy(data);
    queued();
    return {};
}

void connection::shutdown_write() noexcept {
    check_thread();
    if (st_ != state::open && st_ != state::connecting) return;
    shut_wr_wanted_ = true;
    wake();
}

void connection::close(close_mode mode) noexcept {
    check_thread();
    if (st_ == state::closed || st_ == state::idle || handover_) return;
    if (st_ == state::connecting) mode = close_mode::abort;
    if (st_ == state::closing) {
        if (mode == close_mode::abort) close_mode_ = close_mode::abort;
    } else {
        st_ = state::closing;
        close_mode_ = mode;
    }
    wake();
}

void connection::abort_with(const error& e) noexcept {
    if (st_ == state::closed || st_ == state::idle) return;
    if (handover_) {
        // Errors during a hand-over belong to the new owner (the socket reports them again),
        // unless the shard is stopping: then the hand-over is abandoned and the socket closed.
        if (!shard_->stopping()) return;
        handover_.reset();
        silent_ = true;
    }
    if (reason_.code == errc::ok) reason_ = e;
    st_ = state::closing;
    close_mode_ = close_mode::abort;
    wake();
}

void connection::pause_reading() noexcept {
    check_thread();
    if (++pause_count_ == 1) wake();
}

void connection::resume_reading() noexcept {
    check_thread();
    if (pause_count_ == 0) {
        FERRY_BUG(true, "resume_reading without pause_reading");
        return;
    }
    if (--pause_count_ == 0) wake();
}

status connection::hand_over(unsigned target, buffer_chain&& already_read, adopt_fn make) {
    check_thread();
    if (st_ != state::open || handover_) return fail(errc::closed, "hand_over: connection not open");
    if (target >= shard_->count()) return fail(errc::invalid_argument, "hand_over: no such shard");
    if (!make) return fail(errc::invalid_argument, "hand_over: no adopt function");
    auto h = std::make_unique<handover>();
    h->target = target;
    h->make = std::move(make);
    append_for_transfer(h->pre, already_read, shard_->bufs_);
    append_for_transfer(h->pre, stash_, shard_->bufs_);
    handover_ = std::move(h);
    wake();
    return {};
}

result<address> connection::peer() const noexcept {
    if (fd_ < 0) return fail(errc::closed, "peer: connection closed");
    return peer_address(fd_);
}

void connection::set_transform(std::unique_ptr<stream_transform> t) noexcept {
    FERRY_DASSERT(st_ == state::idle);  // before attach: the first received byte must go through it
    xf_ = std::move(t);
}

// ---- receive path -------------------------------------------------------------------------

void connection::deliver(slice s) noexcept {
    if (xf_) {
        deliver_transformed(std::move(s));
        return;
    }
    route(std::move(s));
}

void connection::route(slice s) noexcept {
    if (handover_) {
        // Bytes that were in flight when the hand-over started: they travel too, in order.
        // (on_recv copies them out of the ring already.)
        handover_->pre.append(std::move(s));
        return;
    }
    if (st_ != state::open) return;  // closing: input is discarded
    if (pause_count_ > 0 || need_open_ || !stash_.empty()) {
        // Bytes already in flight when reading was paused: kept, delivered after resume.
        stash_.append(std::move(s));
        return;
    }
    on_data(std::move(s));
}

void connection::deliver_transformed(slice s) noexcept {
    if (xf_failed_ || (st_ != state::open && !handover_)) return;  // closing: input is discarded
    // `s` may be a ring buffer: the transform copies what it needs, so the buffer returns to
    // the ring when `s` dies at the end of decode(). Decoded bytes are heap slices.
    status r = xf_->decode(std::move(s), plain_in_, out_);
    // Bytes for the peer (handshake flight, alert, key update), or output the handler queued
    // before the handshake that can be encoded now.
    if (!out_.empty() || (!plain_out_.empty() && xf_->ready())) wake();
    if (xf_->peer_finished() && !eof_seen_) {
        eof_seen_ = true;  // on_read_eof once the decoded bytes are delivered (by service())
        wake();
    }
    while (!plain_in_.empty()) route(plain_in_.pop_front());
    if (!r) transform_failed(r.err());
}

void connection::transform_failed(const error& e) noexcept {
    if (xf_failed_) return;
    xf_failed_ = true;
    plain_out_.clear();
    if (reason_.code == errc::ok) reason_ = e;
    if (handover_) {
        // The new owner would inherit a dead transform: abandon the hand-over instead; the
        // handler that asked for it expects no further event.
        handover_.reset();
        silent_ = true;
    }
    if (st_ == state::closed || st_ == state::idle) return;
    // During a handshake the alert in out_ goes out (the peer's receive window is empty at
    // that point, so the flush cannot hang). Later, queued output may be stuck behind a peer
    // that does not read: drop it, alert included, rather than hold the socket open.
    const close_mode m = xf_->ready() ? close_mode::abort : close_mode::flush;
    if (st_ == state::connecting || st_ == state::open) {
        st_ = state::closing;
        close_mode_ = m;
    } else if (m == close_mode::abort) {
        close_mode_ = m;
    }
    wake();
}

void connection::pump_transform() noexcept {
    const bool aborting = st_ == state::closing && close_mode_ == close_mode::abort;
    if (xf_failed_ || aborting || st_ == state::connecting) {
        if (xf_failed_ || aborting) plain_out_.clear();
        return;
    }
    if (!plain_out_.empty() && xf_->ready()) {
        status r = xf_->encode(plain_out_, out_);
        if (!r) {
            transform_failed(r.err());
            return;
        }
    }
    const bool closing = st_ == state::closing;  // flush mode here
    if ((closing || shut_wr_wanted_) && !xf_finished_) {
        if (!xf_->ready()) {
            // Closing stops reading, so a handshake still in progress cannot finish: what the
            // handler queued is dropped. A half-close keeps reading: wait for the handshake.
            if (!closing) return;
            plain_out_.clear();
        }
        xf_finished_ = true;
        xf_->finish(out_);
    }
}

// ---- the state machine --------------------------------------------------------------------

void connection::service() noexcept {
    if (st_ == state::closed) return;
    shard& s = *shard_;

    // 1. Events (user code may change any state below; each step re-checks).
    if (!handover_) {
        if (need_open_ && st_ == state::open) {
            need_open_ = false;
            if (xf_) {
                status r = xf_->start(out_);  // a client's first flight
                if (!r) transform_failed(r.err());
            }
            if (!xf_failed_) on_open();
        }
        while (st_ == state::open && pause_count_ == 0 && !handover_ && !need_open_ && !stash_.empty())
            on_data(stash_.pop_front());
        if (eof_seen_ && !eof_delivered_ && st_ == state::open && pause_count_ == 0 && !handover_ &&
            stash_.empty() && !need_open_) {
            eof_delivered_ = true;
            on_read_eof();
        }
        if (st_ == state::open && !handover_) {
            // A crossing the kernel already undid in this iteration still counts (see
            // on_output_high): then low follows high at once.
            const bool crossed = crossed_high_;
            crossed_high_ = false;
            if (!above_high_ && (crossed || output_pending() > high_watermark_)) {
                above_high_ = true;
                on_output_high();
            }
            if (above_high_ && st_ == state::open && !handover_ && output_pending() <= high_watermark_ / 2) {
                above_high_ = false;
                on_output_low();
            }
            if (want_drained_ && output_pending() == 0 && st_ == state::open && !handover_) {
                want_drained_ = false;
                on_output_drained();
            }
        }
    }
    if (st_ == state::closed) return;
    // Encode what the handler queued this iteration (corked: one pass for all of it).
    if (xf_) pump_transform();

    // 2. Operations (no user code below except on_close in finalize()).
    const bool want_read = st_ == state::open && !handover_ && pause_count_ == 0 && !need_open_ &&
                           !eof_seen_ && stash_.empty();
    if (want_read) {
        if (!recv_armed_) {
            if (s.bufs_.available() == 0) s.wait_for_buffers(this);
            else arm_recv();
        }
    } else if (recv_armed_ && !recv_cancelled_) {
        recv_cancelled_ = true;
        cancel_op(static_cast<std::uint8_t>(op_kind::recv), recv_gen_);
    }

    const bool aborting = st_ == state::closing && close_mode_ == close_mode::abort;
    if (aborting) {
        if (send_inflight_ && !send_cancelled_) {
            send_cancelled_ = true;
            cancel_op(static_cast<std::uint8_t>(op_kind::send), send_gen_);
        }
        if (connect_inflight_ && !connect_cancelled_) {
            connect_cancelled_ = true;
            cancel_op(static_cast<std::uint8_t>(op_kind::connect), connect_gen_);
        }
    } else if (!out_.empty() && !send_inflight_ && !shut_wr_done_ && st_ != state::connecting) {
        arm_send();
    }
    if (shut_wr_wanted_ && !shut_wr_done_ && out_.empty() && !send_inflight_ && st_ == state::open &&
        (!xf_ || xf_finished_ || xf_failed_)) {
        shut_wr_done_ = true;
        (void)::shutdown(fd_, SHUT_WR);
    }

    if (ops_in_flight()) return;
    if (handover_) {
        if (out_.empty()) finish_handover();
    } else if (st_ == state::closing && (aborting || out_.empty() || shut_wr_done_)) {
        finalize();
    }
}

void connection::arm_recv() noexcept {
    shard& s = *shard_;
    io_uring_sqe* sqe = s.get_sqe();
    io_uring_prep_recv_multishot(sqe, fd_, nullptr, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = s.bufs_.group();
    io_uring_sqe_set_data64(sqe, make_ud(this, op_kind::recv, ++recv_gen_));
    recv_armed_ = true;
    recv_cancelled_ = false;
    ++s.inflight_;
    ++s.stats_.recv_arms;
}

void connection::arm_send() noexcept {
    shard& s = *shard_;
    const unsigned max = s.cfg_.max_send_iov;
    s.reserve_send(max);
    io_uring_sqe* sqe = s.get_sqe();
    iovec* iov = s.alloc_iov(max);
    const unsigned n = static_cast<unsigned>(out_.to_iovec(iov, max));
    std::size_t total = 0;
    for (unsigned i = 0; i < n; ++i) total += iov[i].iov_len;
    if (total > UINT32_MAX) total = UINT32_MAX;  // the kernel takes what it takes
    if (n == 1) {
        io_uring_prep_send(sqe, fd_, iov[0].iov_base, iov[0].iov_len, MSG_NOSIGNAL);
        s.unalloc_iov(max);
    } else {
        s.unalloc_iov(max - n);
        msghdr* m = s.alloc_msghdr();
        m->msg_iov = iov;
        m->msg_iovlen = n;
        io_uring_prep_sendmsg(sqe, fd_, m, MSG_NOSIGNAL);
    }
    io_uring_sqe_set_data64(sqe, make_ud(this, op_kind::send, ++send_gen_));
    send_inflight_ = true;
    send_cancelled_ = false;
    send_len_ = static_cast<std::uint32_t>(total);
    ++s.inflight_;
}

void connection::cancel_op(std::uint8_t kind, std::uint16_t gen) noexcept {
    io_uring_sqe* sqe = shard_->get_sqe();
    io_uring_prep_cancel64(sqe, make_ud(this, static_cast<op_kind>(kind), gen), 0);
    // The cancelled operation reports -ECANCELED itself; the cancel request's own CQE is only
    // interesting when it fails (-ENOENT: it already finished), and then it needs no action.
    sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
    io_uring_sqe_set_data64(sqe, make_ud(nullptr, op_kind::none));
}

void connection::finalize() noexcept {
    shard& s = *shard_;
    st_ = state::closed;
    if (fd_ >= 0) {
        ::close(fd_);
        fd_ = -1;
    }
    out_.clear();
    stash_.clear();
    plain_out_.clear();
    plain_in_.clear();
    if (waiting_buffers_) {
        // Leave the waiter list entry; run() drops it (it holds its own reference).
    }
    s.unlink(this);
    ++s.stats_.connections_closed;
    if (!silent_) {
        if (reason_.code == errc::ok && eof_seen_) reason_ = error(errc::closed, "peer closed the connection");
        on_close(reason_);
    }
    xf_.reset();  // a TLS session's memory goes now, not when the last connection_ptr drops
    release();  // the reactor's reference
}

void connection::finish_handover() noexcept {
    shard& s = *shard_;
    auto h = std::move(handover_);
    unique_fd fd(fd_);
    fd_ = -1;
    st_ = state::closed;
    silent_ = true;
    out_.clear();
    stash_.clear();
    // The transform (its session state) and any output it could not encode yet go along.
    buffer_chain pending;
    append_for_transfer(pending, plain_out_, s.bufs_);
    plain_in_.clear();
    s.unlink(this);
    ++s.stats_.handovers_out;
    s.post(h->target, [fd = std::move(fd), pre = std::move(h->pre), make = std::move(h->make), xf = std::move(xf_),
                       pending = std::move(pending)](shard& t) mutable {
        std::unique_ptr<connection> handler = make(t);
        if (!handler) return;  // `fd` closes itself
        if (xf) {
            handler->xf_ = std::move(xf);
            handler->plain_out_ = std::move(pending);
        }
        if (t.adopt(fd.release(), std::move(handler), std::move(pre))) ++t.stats_.handovers_in;
    });
    release();  // the reactor's reference
}

}  // namespace ferry::reactor
