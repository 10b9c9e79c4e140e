#include "reactor/shard.hh"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "proto/base/assert.hh"
#include "proto/base/log.hh"
#include "reactor/compat.hh"
#include "reactor/detail.hh"
#include "reactor/engine.hh"
#include "reactor/op.hh"

namespace ferry::reactor {

using namespace detail;

namespace {
thread_local shard* t_current = nullptr;

void set_nodelay(int fd) noexcept {
    int one = 1;
    (void)::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}
}  // namespace

shard_stats& shard_stats::operator+=(const shard_stats& o) noexcept {
    loops += o.loops;
    cqes += o.cqes;
    accepts += o.accepts;
    accept_rearms += o.accept_rearms;
    recv_cqes += o.recv_cqes;
    recv_bytes += o.recv_bytes;
    recv_arms += o.recv_arms;
    recv_no_more += o.recv_no_more;
    enobufs += o.enobufs;
    recv_copies += o.recv_copies;
    sends += o.sends;
    send_bytes += o.send_bytes;
    short_sends += o.short_sends;
    stale_cqes += o.stale_cqes;
    messages += o.messages;
    msg_ring_wakes += o.msg_ring_wakes;
    eventfd_wakes += o.eventfd_wakes;
    timers_fired += o.timers_fired;
    handovers_out += o.handovers_out;
    handovers_in += o.handovers_in;
    connections_closed += o.connections_closed;
    return *this;
}

shard* shard::current() noexcept { return t_current; }
void shard::set_current(shard* s) noexcept { t_current = s; }

shard::shard(engine& e, unsigned id, const config& cfg) : engine_(&e), id_(id), cfg_(cfg) {
    // Created here (not on the shard thread) so that any thread can write to it for as long as
    // the engine exists.
    event_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    iov_arena_.resize(4096);
    msg_arena_.resize(512);
    work_.reserve(256);
    work_batch_.reserve(256);
}

shard::~shard() {
    drain_inbox(false);
    if (event_fd_ >= 0) ::close(event_fd_);
}

unsigned shard::count() const noexcept { return engine_->size(); }

std::string shard::ring_flags() const {
    struct {
        unsigned bit;
        const char* name;
    } const names[] = {
        {IORING_SETUP_SINGLE_ISSUER, "SINGLE_ISSUER"}, {IORING_SETUP_DEFER_TASKRUN, "DEFER_TASKRUN"},
        {IORING_SETUP_COOP_TASKRUN, "COOP_TASKRUN"},   {IORING_SETUP_TASKRUN_FLAG, "TASKRUN_FLAG"},
        {IORING_SETUP_SUBMIT_ALL, "SUBMIT_ALL"},       {IORING_SETUP_SQPOLL, "SQPOLL"},
        {IORING_SETUP_CQSIZE, "CQSIZE"},               {IORING_SETUP_CLAMP, "CLAMP"},
    };
    std::string out;
    for (const auto& n : names) {
        if (ring_flags_ & n.bit) {
            if (!out.empty()) out += '|';
            out += n.name;
        }
    }
    return out.empty() ? std::string("none") : out;
}

// ---- set-up and tear-down (shard thread) -------------------------------------------------

status shard::init() noexcept {
    now_ = clock::now();
    if (event_fd_ < 0) return fail(error::from_errno(errno, "eventfd"));

    // Most capable first; -EINVAL means "this kernel does not know a flag or this
    // combination", anything else (EPERM, ENOSYS, ENOMEM) is final.
    const unsigned taskrun[] = {
        IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_COOP_TASKRUN,
        IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
        IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_COOP_TASKRUN,
        IORING_SETUP_COOP_TASKRUN,
        0,
    };
    int ret = -EINVAL;
    unsigned features = 0;
    for (unsigned t : taskrun) {
        for (unsigned extra : {unsigned(IORING_SETUP_SUBMIT_ALL), 0u}) {
            io_uring_params p{};
            p.flags = t | extra | IORING_SETUP_CQSIZE | IORING_SETUP_CLAMP;
            p.cq_entries = cfg_.sq_entries * 4;
            ret = io_uring_queue_init_params(cfg_.sq_entries, &ring_, &p);
            if (ret == 0) {
                ring_flags_ = p.flags;
                features = p.features;
                break;
            }
            if (ret != -EINVAL) break;
        }
        if (ret != -EINVAL) break;
    }
    if (ret == -EPERM || ret == -ENOSYS || ret == -EACCES) return fail(uring_unavailable_error(-ret));
    if (ret < 0) {
        error e = error::from_errno(ret, "io_uring_queue_init_params");
        if (ret == -EINVAL) e.code = errc::unsupported;
        return fail(e);
    }
    ring_ok_ = true;

    if (!(features & IORING_FEAT_SUBMIT_STABLE))
        return fail(errc::unsupported, "io_uring: kernel lacks IORING_FEAT_SUBMIT_STABLE (needs >= 5.5)");
    if (io_uring_probe* pr = io_uring_get_probe_ring(&ring_)) {
        const int needed[] = {IORING_OP_RECV, IORING_OP_SEND, IORING_OP_SENDMSG, IORING_OP_ACCEPT,
                              IORING_OP_CONNECT, IORING_OP_ASYNC_CANCEL, IORING_OP_READ};
        bool ok = true;
        for (int op : needed) ok = ok && io_uring_opcode_supported(pr, op);
        msg_ring_ = io_uring_opcode_supported(pr, IORING_OP_MSG_RING);
        io_uring_free_probe(pr);
        if (!ok) return fail(errc::unsupported, "io_uring: kernel lacks a required opcode (needs >= 6.0)");
    }
    // Saves an fd lookup per io_uring_enter; optional.
    (void)io_uring_register_ring_fd(&ring_);

    if (status st = bufs_.init(&ring_, 0, cfg_.buf_count, cfg_.buf_size, cfg_.populate_buffers); !st) return st;
    copy_above_ = static_cast<std::uint32_t>(std::uint64_t(cfg_.buf_count) * cfg_.copy_above_held_256 / 256);
    arm_eventfd();
    return {};
}

void shard::teardown() noexcept {
    // Every shard has drained (engine barrier): nobody sends MSG_RING to this ring any more.
    drain_inbox(false);
    for (timer* t : heap_) t->index_ = timer::npos;
    heap_.clear();
    if (ring_ok_) {
        bufs_.destroy(&ring_);
        io_uring_queue_exit(&ring_);
        ring_ok_ = false;
    }
}

void shard::begin_stop() noexcept {
    if (stopping_) return;
    stopping_ = true;
    for (auto it = listeners_.begin(); it != listeners_.end();) {
        if (stop_listener(it->get())) {
            ++it;
        } else {
            it = listeners_.erase(it);
        }
    }
    for (connection* c = conns_; c; c = c->next_) c->abort_with(error(errc::closed, "reactor stopping"));
    if (event_armed_) {
        io_uring_sqe* sqe = get_sqe();
        io_uring_prep_cancel64(sqe, make_ud(this, op_kind::eventfd_read, event_gen_), 0);
        sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
        io_uring_sqe_set_data64(sqe, make_ud(nullptr, op_kind::none));
    }
}

// ---- the loop ------------------------------------------------------------------------------

void shard::run() noexcept {
    for (;;) {
        ++stats_.loops;
        if (wake_pending_.load()) wake_pending_.store(false);
        drain_inbox(true);
        run_work();
        bufs_.commit();
        if (!buffer_waiters_.empty() && bufs_.available() > 0) {
            // -ENOBUFS ended these receives; the ring has buffers again: re-arm them.
            std::vector<connection*> w;
            w.swap(buffer_waiters_);
            for (connection* c : w) {
                c->waiting_buffers_ = false;
                c->wake();
                c->release();
            }
            continue;
        }
        // Messages that arrive from now on are dropped unrun (teardown / ~shard destroy them).
        if (stopping_ && inflight_ == 0 && live_ == 0 && listeners_.empty() && work_.empty()) {
            for (connection* c : buffer_waiters_) {
                c->waiting_buffers_ = false;
                c->release();
            }
            buffer_waiters_.clear();
            break;
        }

        int ret;
        // A message posted to ourselves during this iteration (a hand-over to this shard) sets
        // wake_pending_ without a wake-up: do not block then, loop to drain it.
        if (io_uring_cq_ready(&ring_) > 0 || wake_pending_.load()) {
            ret = io_uring_submit_and_get_events(&ring_);
        } else if (!heap_.empty()) {
            auto d = heap_[0]->when_ - clock::now();
            if (d <= clock::duration::zero()) {
                ret = io_uring_submit_and_get_events(&ring_);
            } else {
                auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(d).count();
                __kernel_timespec ts{};
                ts.tv_sec = ns / 1000000000;
                ts.tv_nsec = ns % 1000000000;
                io_uring_cqe* cqe = nullptr;
                ret = io_uring_submit_and_wait_timeout(&ring_, &cqe, 1, &ts, nullptr);
            }
        } else {
            ret = io_uring_submit_and_wait(&ring_, 1);
        }
        iov_used_ = 0;
        msg_used_ = 0;
        if (ret < 0 && ret != -ETIME && ret != -EINTR && ret != -EAGAIN && ret != -EBUSY) {
            FERRY_LOG(error, "io_uring_enter failed", {"shard", id_}, {"errno", -ret});
        }
        now_ = clock::now();

        unsigned head;
        unsigned n = 0;
        io_uring_cqe* cqe;
        io_uring_for_each_cqe(&ring_, head, cqe) {
            dispatch(*cqe);
            ++n;
        }
        io_uring_cq_advance(&ring_, n);
        stats_.cqes += n;
        run_timers();
    }
}

io_uring_sqe* shard::get_sqe() noexcept {
    io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
    if (!sqe) {
        submit_now();
        sqe = io_uring_get_sqe(&ring_);
    }
    FERRY_ASSERT(sqe != nullptr);
    return sqe;
}

void shard::submit_now() noexcept {
    int ret;
    do {
        ret = io_uring_submit(&ring_);
    } while (ret == -EINTR);
    if (ret < 0) FERRY_LOG(error, "io_uring_submit failed", {"shard", id_}, {"errno", -ret});
    iov_used_ = 0;
    msg_used_ = 0;
}

void shard::reserve_send(unsigned iovs) noexcept {
    if (iov_used_ + iovs > iov_arena_.size() || msg_used_ + 1 > msg_arena_.size()) submit_now();
}

iovec* shard::alloc_iov(unsigned n) noexcept {
    FERRY_DASSERT(iov_used_ + n <= iov_arena_.size());
    iovec* p = iov_arena_.data() + iov_used_;
    iov_used_ += n;
    return p;
}

msghdr* shard::alloc_msghdr() noexcept {
    FERRY_DASSERT(msg_used_ < msg_arena_.size());
    msghdr* m = &msg_arena_[msg_used_++];
    *m = msghdr{};
    return m;
}

void shard::dispatch(const io_uring_cqe& cqe) noexcept {
    const std::uint64_t ud = cqe.user_data;
    if (ud == LIBURING_UDATA_TIMEOUT) return;
    switch (ud_kind(ud)) {
    case op_kind::none:
        return;
    case op_kind::recv:
        on_recv(ud_ptr<connection>(ud), cqe);
        return;
    case op_kind::send:
        on_send(ud_ptr<connection>(ud), cqe);
        return;
    case op_kind::connect:
        on_connect(ud_ptr<connection>(ud), cqe);
        return;
    case op_kind::accept:
        on_accept(ud_ptr<listener>(ud), cqe);
        return;
    case op_kind::eventfd_read:
        if (ud_ptr<shard>(ud) != this || !event_armed_ || ud_gen(ud) != event_gen_) {
            ++stats_.stale_cqes;
            FERRY_BUG(true, "stale eventfd completion");
            return;
        }
        event_armed_ = false;
        --inflight_;
        if (!stopping_) arm_eventfd();
        return;  // the inbox is drained at the top of the loop
    case op_kind::wake:
        return;  // same
    case op_kind::msg_ring_send:
        // MSG_RING failed (target CQ overflowing, ...): wake the target through its eventfd.
        if (cqe.res < 0) ud_ptr<shard>(ud)->eventfd_wake();
        return;
    }
    ++stats_.stale_cqes;
    FERRY_BUG(true, "completion with unknown user_data");
}

// ---- connections: completions --------------------------------------------------------------

void shard::on_recv(connection* c, const io_uring_cqe& cqe) noexcept {
    ++stats_.recv_cqes;
    const bool has_buf = cqe.flags & IORING_CQE_F_BUFFER;
    const std::uint16_t bid = static_cast<std::uint16_t>(cqe.flags >> IORING_CQE_BUFFER_SHIFT);
    if (!c->recv_armed_ || ud_gen(cqe.user_data) != c->recv_gen_) {
        ++stats_.stale_cqes;
        if (has_buf && bufs_.valid_bid(bid)) bufs_.give_back(bid);
        FERRY_BUG(true, "stale recv completion");
        return;
    }
    const bool more = cqe.flags & IORING_CQE_F_MORE;
    if (!more) {
        // The multishot is over (ENOBUFS, EOF, error, cancel, or the kernel just ended it);
        // service() decides whether to re-arm.
        c->recv_armed_ = false;
        --inflight_;
        ++stats_.recv_no_more;
    }
    const int res = cqe.res;
    if (res > 0) {
        // F_BUF_MORE would mean the kernel keeps filling this buffer (incremental rings, 6.12);
        // we never register one, so recycling it now would be wrong: treat it as broken.
        if (!has_buf || !bufs_.valid_bid(bid) || unsigned(res) > bufs_.buffer_size() ||
            (cqe.flags & IORING_CQE_F_BUF_MORE)) {
            // A kernel contract broken, not peer input: count, log, drop the connection.
            FERRY_BUG(true, "recv completion without a valid provided buffer");
            c->abort_with(error(errc::io, "recv: completion without a valid buffer"));
        } else {
            stats_.recv_bytes += unsigned(res);
            slice s;
            if (bufs_.held() >= copy_above_ || c->handover_) {
                // Handlers hold most of the ring (or the bytes are leaving the shard): copy so
                // the buffer goes straight back and the ring never runs dry for everyone.
                s = slice::copy_of({bufs_.data(bid), std::size_t(res)});
                bufs_.give_back(bid);
                ++stats_.recv_copies;
            } else {
                s = bufs_.take(bid, std::size_t(res));
            }
            c->deliver(std::move(s));
        }
    } else {
        if (has_buf && bufs_.valid_bid(bid)) bufs_.give_back(bid);
        if (res == 0) {
            c->eof_seen_ = true;
        } else if (res == -ENOBUFS) {
            ++stats_.enobufs;  // normal flow: re-armed once buffers are back
        } else if (res != -ECANCELED) {
            c->abort_with(error::from_errno(res, "recv"));
        }
    }
    if (!more) c->wake();
}

void shard::on_send(connection* c, const io_uring_cqe& cqe) noexcept {
    if (!c->send_inflight_ || ud_gen(cqe.user_data) != c->send_gen_) {
        ++stats_.stale_cqes;
        FERRY_BUG(true, "stale send completion");
        return;
    }
    c->send_inflight_ = false;
    c->send_cancelled_ = false;
    --inflight_;
    const int res = cqe.res;
    if (res > 0) {
        std::size_t n = std::min<std::size_t>(unsigned(res), c->send_len_);
        c->out_.consume(n);
        ++stats_.sends;
        stats_.send_bytes += n;
        if (n < c->send_len_) ++stats_.short_sends;  // normal flow: the rest goes next
    } else if (res == 0) {
        if (c->send_len_ > 0) c->abort_with(error(errc::io, "send: no progress"));
    } else if (res != -ECANCELED) {
        c->abort_with(error::from_errno(res, "send"));
    }
    c->send_len_ = 0;
    c->wake();
}

void shard::on_connect(connection* c, const io_uring_cqe& cqe) noexcept {
    if (!c->connect_inflight_ || ud_gen(cqe.user_data) != c->connect_gen_) {
        ++stats_.stale_cqes;
        FERRY_BUG(true, "stale connect completion");
        return;
    }
    c->connect_inflight_ = false;
    --inflight_;
    if (c->st_ == connection::state::connecting) {
        if (cqe.res == 0) {
            c->st_ = connection::state::open;
            c->need_open_ = true;
            set_nodelay(c->fd_);
        } else {
            c->abort_with(error::from_errno(cqe.res, "connect"));
        }
    }
    c->wake();
}

// ---- connections: bookkeeping ----------------------------------------------------------

connection* shard::attach(int fd, std::unique_ptr<connection> handler) noexcept {
    connection* c = handler.release();
    c->shard_ = this;
    c->fd_ = fd;
    if (c->high_watermark_ == 0) c->high_watermark_ = cfg_.output_high_watermark;
    c->prev_ = nullptr;
    c->next_ = conns_;
    if (conns_) conns_->prev_ = c;
    conns_ = c;
    ++live_;
    return c;
}

void shard::unlink(connection* c) noexcept {
    if (c->prev_) c->prev_->next_ = c->next_;
    else conns_ = c->next_;
    if (c->next_) c->next_->prev_ = c->prev_;
    c->prev_ = c->next_ = nullptr;
    --live_;
}

connection* shard::adopt(int fd, std::unique_ptr<connection> handler, buffer_chain&& pre_read) noexcept {
    FERRY_DASSERT(on_this_thread());
    if (stopping_ || !handler) {
        ::close(fd);
        return nullptr;
    }
    connection* c = attach(fd, std::move(handler));
    c->st_ = connection::state::open;
    c->need_open_ = true;
    c->stash_ = std::move(pre_read);
    enqueue(c);
    return c;
}

result<connection*> shard::connect(const address& to, std::unique_ptr<connection> handler) noexcept {
    FERRY_DASSERT(on_this_thread());
    if (stopping_) return fail(errc::closed, "connect: reactor stopping");
    int fd = ::socket(to.family(), SOCK_STREAM | SOCK_CLOEXEC, IPPROTO_TCP);
    if (fd < 0) return fail(error::from_errno(errno, "socket"));
    connection* c = attach(fd, std::move(handler));
    c->st_ = connection::state::connecting;
    c->remote_ = std::make_unique<address>(to);
    io_uring_sqe* sqe = get_sqe();
    io_uring_prep_connect(sqe, fd, c->remote_->sa(), c->remote_->len());
    io_uring_sqe_set_data64(sqe, make_ud(c, op_kind::connect, ++c->connect_gen_));
    c->connect_inflight_ = true;
    ++inflight_;
    return c;
}

void shard::enqueue(connection* c) noexcept {
    c->in_work_ = true;
    c->add_ref();
    work_.push_back(c);
}

void shard::run_work() noexcept {
    while (!work_.empty()) {
        work_batch_.swap(work_);
        for (connection* c : work_batch_) {
            c->in_work_ = false;
            c->service();
            c->release();
        }
        work_batch_.clear();
    }
}

void shard::wait_for_buffers(connection* c) noexcept {
    if (c->waiting_buffers_) return;
    c->waiting_buffers_ = true;
    c->add_ref();
    buffer_waiters_.push_back(c);
}

// ---- listeners ----------------------------------------------------------------------------

bool shard::stop_listener(listener* l) noexcept {
    l->closing = true;
    if (l->retry) l->retry->cancel();
    if (!l->armed) {
        ::close(l->fd);
        return false;
    }
    // The accept's final CQE (-ECANCELED, or a late success) closes the fd and frees `l`.
    io_uring_sqe* sqe = get_sqe();
    io_uring_prep_cancel64(sqe, make_ud(l, op_kind::accept, l->gen), 0);
    sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
    io_uring_sqe_set_data64(sqe, make_ud(nullptr, op_kind::none));
    return true;
}

void shard::close_listener(std::uint64_t handle) noexcept {
    FERRY_DASSERT(on_this_thread());
    auto it = std::find_if(listeners_.begin(), listeners_.end(),
                           [handle](auto& p) { return p->id == handle && !p->closing; });
    if (it == listeners_.end()) return;
    if (!stop_listener(it->get())) listeners_.erase(it);
}

std::uint64_t shard::add_listener(int fd, connection_factory make, const listen_options& opt) noexcept {
    FERRY_DASSERT(on_this_thread());
    if (stopping_) {
        ::close(fd);
        return 0;
    }
    auto l = std::make_unique<listener>();
    l->owner = this;
    l->id = next_listener_id_++;
    l->fd = fd;
    l->make = std::move(make);
    l->opt = opt;
    listener* raw = l.get();
    l->retry = std::make_unique<timer>(*this, [this, raw] {
        if (!raw->closing && !raw->armed) arm_accept(raw);
    });
    listeners_.push_back(std::move(l));
    arm_accept(raw);
    return raw->id;
}

void shard::arm_accept(listener* l) noexcept {
    io_uring_sqe* sqe = get_sqe();
    io_uring_prep_multishot_accept(sqe, l->fd, nullptr, nullptr, SOCK_CLOEXEC);
    io_uring_sqe_set_data64(sqe, make_ud(l, op_kind::accept, ++l->gen));
    l->armed = true;
    ++inflight_;
}

void shard::on_accept(listener* l, const io_uring_cqe& cqe) noexcept {
    if (!l->armed || ud_gen(cqe.user_data) != l->gen) {
        ++stats_.stale_cqes;
        FERRY_BUG(true, "stale accept completion");
        if (cqe.res >= 0) ::close(cqe.res);
        return;
    }
    const bool more = cqe.flags & IORING_CQE_F_MORE;
    if (!more) {
        l->armed = false;
        --inflight_;
    }
    bool retry_later = false;
    if (cqe.res >= 0) {
        int fd = cqe.res;
        std::unique_ptr<connection> h;
        if (!l->closing && !stopping_) h = l->make(*this);
        if (!h) {
            ::close(fd);
        } else {
            ++stats_.accepts;
            if (l->opt.nodelay) set_nodelay(fd);
            adopt(fd, std::move(h));
        }
    } else if (cqe.res != -ECANCELED) {
        // EMFILE/ENFILE/ENOMEM/ENOBUFS: re-arming at once would spin; back off a little.
        FERRY_LOG(warn, "accept failed", {"shard", id_}, {"errno", -cqe.res});
        retry_later = true;
    }
    if (more) return;
    if (l->closing || stopping_) {
        ::close(l->fd);
        auto it = std::find_if(listeners_.begin(), listeners_.end(), [l](auto& p) { return p.get() == l; });
        if (it != listeners_.end()) listeners_.erase(it);
        return;
    }
    if (retry_later) {
        l->retry->arm_after(std::chrono::milliseconds(50));
    } else {
        ++stats_.accept_rearms;
        arm_accept(l);
    }
}

// ---- messages -----------------------------------------------------------------------------

void shard::arm_eventfd() noexcept {
    io_uring_sqe* sqe = get_sqe();
    io_uring_prep_read(sqe, event_fd_, &event_buf_, sizeof(event_buf_), 0);
    io_uring_sqe_set_data64(sqe, make_ud(this, op_kind::eventfd_read, ++event_gen_));
    event_armed_ = true;
    ++inflight_;
}

void shard::post(unsigned target, unique_function<void(shard&)> fn) {
    FERRY_DASSERT(on_this_thread());
    FERRY_ASSERT(target < count());
    engine_->push(engine_->at(target), std::move(fn));
}

void shard::wake(shard& target) noexcept {
    io_uring_sqe* sqe = get_sqe();
    // Target side: a CQE with user_data "wake" (nothing to do but loop and drain the inbox).
    io_uring_prep_msg_ring(sqe, target.ring_.ring_fd, 0, make_ud(&target, op_kind::wake), 0);
    // Our side: no CQE on success; a failure CQE makes us fall back to the eventfd.
    sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
    io_uring_sqe_set_data64(sqe, make_ud(&target, op_kind::msg_ring_send));
    ++stats_.msg_ring_wakes;
}

void shard::eventfd_wake() noexcept {
    std::uint64_t one = 1;
    ssize_t r;
    do {
        r = ::write(event_fd_, &one, sizeof(one));
    } while (r < 0 && errno == EINTR);
    // EAGAIN means the counter is saturated: a wake-up is pending anyway.
}

void shard::drain_inbox(bool run) noexcept {
    message* m = inbox_.exchange(nullptr);
    if (!m) return;
    // The stack is newest-first; reverse it so one producer's messages run in order.
    message* fifo = nullptr;
    while (m) {
        message* next = m->next;
        m->next = fifo;
        fifo = m;
        m = next;
    }
    while (fifo) {
        message* next = fifo->next;
        if (run) {
            ++stats_.messages;
            fifo->fn(*this);
        }
        delete fifo;
        fifo = next;
    }
}

// ---- timers -------------------------------------------------------------------------------

void shard::timer_add(timer* t) noexcept {
    t->index_ = static_cast<std::uint32_t>(heap_.size());
    heap_.push_back(t);
    heap_up(t->index_);
}

void shard::timer_remove(timer* t) noexcept {
    std::uint32_t i = t->index_;
    FERRY_DASSERT(i < heap_.size() && heap_[i] == t);
    std::uint32_t last = static_cast<std::uint32_t>(heap_.size() - 1);
    if (i != last) {
        heap_[i] = heap_[last];
        heap_[i]->index_ = i;
        heap_.pop_back();
        heap_down(i);
        heap_up(i);
    } else {
        heap_.pop_back();
    }
    t->index_ = timer::npos;
}

void shard::timer_moved(timer* t) noexcept {
    FERRY_DASSERT(t->index_ < heap_.size() && heap_[t->index_] == t);
    heap_down(t->index_);
    heap_up(t->index_);
}

void shard::heap_up(std::uint32_t i) noexcept {
    while (i > 0) {
        std::uint32_t parent = (i - 1) / 2;
        if (!(heap_[i]->when_ < heap_[parent]->when_)) break;
        std::swap(heap_[i], heap_[parent]);
        heap_[i]->index_ = i;
        heap_[parent]->index_ = parent;
        i = parent;
    }
}

void shard::heap_down(std::uint32_t i) noexcept {
    const std::uint32_t n = static_cast<std::uint32_t>(heap_.size());
    for (;;) {
        std::uint32_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && heap_[l]->when_ < heap_[m]->when_) m = l;
        if (r < n && heap_[r]->when_ < heap_[m]->when_) m = r;
        if (m == i) break;
        std::swap(heap_[i], heap_[m]);
        heap_[i]->index_ = i;
        heap_[m]->index_ = m;
        i = m;
    }
}

void shard::run_timers() noexcept {
    while (!heap_.empty() && heap_[0]->when_ <= now_) {
        timer* t = heap_[0];
        timer_remove(t);
        ++stats_.timers_fired;
        if (t->cb_) t->cb_();  // may re-arm or destroy `t`
    }
}

}  // namespace ferry::reactor
