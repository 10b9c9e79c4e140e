#include "reactor/engine.hh"

#include <pthread.h>
#include <sched.h>
#include <signal.h>

#include <cerrno>
#include <latch>

#include "proto/base/assert.hh"
#include "proto/base/log.hh"
#include "reactor/detail.hh"

#ifndef FERRY_MAX_SHARDS
#define FERRY_MAX_SHARDS 64
#endif

namespace ferry::reactor {

using namespace detail;

error uring_unavailable_error(int err) noexcept {
    error e(errc::unsupported,
            "io_uring is unavailable (io_uring_setup refused: EPERM = blocked by a seccomp profile "
            "or the kernel.io_uring_disabled sysctl, ENOSYS = not in this kernel or filtered). "
            "Fix: in a container, use a seccomp profile that allows io_uring_setup, io_uring_enter "
            "and io_uring_register (docker run --security-opt seccomp=deploy/seccomp-ferry.json; "
            "Kubernetes: securityContext.seccompProfile type Localhost with that file); on the "
            "host, set sysctl kernel.io_uring_disabled=0 (or put ferry's group in "
            "kernel.io_uring_group when it is 1).");
    e.sys = err < 0 ? -err : err;
    return e;
}

namespace {
status validate(const config& c) {
    if (c.buf_count == 0 || c.buf_count > 32768 || (c.buf_count & (c.buf_count - 1)) != 0)
        return fail(errc::invalid_argument, "reactor: buf_count must be a power of two in [1, 32768]");
    if (c.buf_size < 64 || c.buf_size > (1u << 20))
        return fail(errc::invalid_argument, "reactor: buf_size must be in [64, 1 MiB]");
    if (c.sq_entries < 8 || c.sq_entries > 32768)
        return fail(errc::invalid_argument, "reactor: sq_entries must be in [8, 32768]");
    if (c.max_send_iov < 1 || c.max_send_iov > 1024)
        return fail(errc::invalid_argument, "reactor: max_send_iov must be in [1, 1024]");
    if (c.copy_above_held_256 > 256)
        return fail(errc::invalid_argument, "reactor: copy_above_held_256 must be <= 256");
    if (c.shards > FERRY_MAX_SHARDS)
        return fail(errc::invalid_argument, "reactor: more shards than FERRY_MAX_SHARDS");
    return {};
}
}  // namespace

result<std::unique_ptr<engine>> engine::start(const config& cfg_in) {
    if (status st = validate(cfg_in); !st) return fail(st.err());
    config cfg = cfg_in;
    std::unique_ptr<engine> e(new engine);

    cpu_set_t allowed;
    CPU_ZERO(&allowed);
    if (sched_getaffinity(0, sizeof(allowed), &allowed) == 0) {
        for (int c = 0; c < CPU_SETSIZE; ++c)
            if (CPU_ISSET(c, &allowed)) e->cpus_.push_back(c);
    }
    unsigned n = cfg.shards;
    if (n == 0) n = e->cpus_.empty() ? 1 : static_cast<unsigned>(e->cpus_.size());
    if (n > FERRY_MAX_SHARDS) n = FERRY_MAX_SHARDS;
    cfg.shards = n;

    for (unsigned i = 0; i < n; ++i) e->shards_.push_back(std::unique_ptr<shard>(new shard(*e, i, cfg)));
    e->drained_ = std::make_unique<std::barrier<>>(static_cast<std::ptrdiff_t>(n));
    for (unsigned i = 0; i < n; ++i) e->threads_.emplace_back([eng = e.get(), i] { eng->thread_main(i); });

    // Wait until every shard has its ring (or has failed to get one).
    unsigned done = e->init_done_.load();
    while (done < n) {
        e->init_done_.wait(done);
        done = e->init_done_.load();
    }
    for (auto& s : e->shards_) {
        if (!s->init_status_) {
            error err = s->init_status_.err();
            e->start_state_.store(-1);
            e->start_state_.notify_all();
            e->wait();
            return fail(err);
        }
    }
    e->start_state_.store(1);
    e->start_state_.notify_all();
    FERRY_LOG(debug, "reactor started", {"shards", n}, {"ring_flags", e->ring_flags()});
    return e;
}

void engine::thread_main(unsigned i) noexcept {
    shard& s = *shards_[i];
    shard::set_current(&s);
    // Process signals go to the main thread, never interrupt a shard.
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, nullptr);
    char name[16];
    std::snprintf(name, sizeof(name), "ferry-shard-%u", i);
    pthread_setname_np(pthread_self(), name);
    if (s.cfg_.pin_threads && !cpus_.empty()) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(cpus_[i % cpus_.size()], &set);
        // Tolerated: a cgroup or container may forbid it; the shard still works unpinned.
        if (int r = pthread_setaffinity_np(pthread_self(), sizeof(set), &set); r != 0)
            FERRY_LOG(debug, "shard not pinned", {"shard", i}, {"errno", r});
    }
    // The ring is created here: SINGLE_ISSUER|DEFER_TASKRUN tie it to the creating thread.
    s.init_status_ = s.init();
    init_done_.fetch_add(1);
    init_done_.notify_all();
    start_state_.wait(0);
    if (start_state_.load() == 1) s.run();
    drained_->arrive_and_wait();
    s.teardown();
    shard::set_current(nullptr);
}

engine::~engine() {
    FERRY_ASSERT(shard::current() == nullptr || &shard::current()->owner_engine() != this);
    stop();
    wait();
}

void engine::wait() noexcept {
    if (joined_) return;
    for (auto& t : threads_)
        if (t.joinable()) t.join();
    joined_ = true;
    for (auto& s : shards_) s->drain_inbox(false);
}

void engine::stop() noexcept {
    if (stop_requested_.exchange(true)) return;
    for (auto& s : shards_) push(*s, [](shard& sh) { sh.begin_stop(); });
}

void engine::post(unsigned target, unique_function<void(shard&)> fn) {
    FERRY_ASSERT(target < shards_.size());
    push(*shards_[target], std::move(fn));
}

void engine::push(shard& target, unique_function<void(shard&)> fn) {
    auto* m = new message;
    m->fn = std::move(fn);
    message* head = target.inbox_.load(std::memory_order_relaxed);
    do {
        m->next = head;
    } while (!target.inbox_.compare_exchange_weak(head, m));
    // Only the producer that flips the flag sends a wake-up; the target clears the flag before
    // it drains, so a message pushed after the drain always finds it clear (all seq_cst).
    if (target.wake_pending_.exchange(true)) return;
    shard* cur = shard::current();
    if (cur == &target) return;  // drained at the top of our own loop
    if (cur && cur->engine_ == this && cur->msg_ring_ && !cur->stopping_ && target.ring_ok_) {
        cur->wake(target);
    } else {
        if (cur && cur->engine_ == this) ++cur->stats_.eventfd_wakes;
        target.eventfd_wake();
    }
}

result<address> engine::listen(const address& addr, connection_factory make, const listen_options& opt) {
    std::vector<int> fds;
    address bound = addr;
    for (unsigned i = 0; i < shards_.size(); ++i) {
        auto fd = make_listen_socket(bound, opt);
        if (!fd) {
            for (int f : fds) ::close(f);
            return fail(fd.err());
        }
        fds.push_back(*fd);
        if (i == 0) {
            // Port 0: learn the kernel's choice so the other shards join the same port.
            auto local = local_address(*fd);
            if (!local) {
                for (int f : fds) ::close(f);
                return fail(local.err());
            }
            bound = *local;
        }
    }
    for (unsigned i = 0; i < shards_.size(); ++i) {
        push(*shards_[i], [fd = unique_fd(fds[i]), make, opt](shard& s) mutable {
            s.add_listener(fd.release(), make, opt);
        });
    }
    return bound;
}

shard_stats engine::total_stats() const noexcept {
    shard_stats t;
    for (auto& s : shards_) t += s->stats_;
    return t;
}

}  // namespace ferry::reactor
