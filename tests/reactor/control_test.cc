// Timers, cancellation, read-disable, watermarks, half-close, outbound connect, cross-shard
// messages and connection hand-over with pre-read bytes.
#include <arpa/inet.h>

#include <mutex>
#include <thread>
#include <vector>

#include "helpers.hh"

namespace ferry::reactor::testing {
namespace {

// ---- timers -------------------------------------------------------------------------------

TEST(Timer, FiresInDeadlineOrderAndCancelWorks) {
    config cfg;
    cfg.shards = 1;
    auto e = start_engine(cfg);
    ASSERT_TRUE(e);
    using clk = std::chrono::steady_clock;
    std::vector<int> fixed, ticks;  // touched on the shard only, read after `done`
    std::vector<clk::duration> late;  // fire time minus deadline, for every firing
    std::promise<void> done;
    std::unique_ptr<timer> t10, t20, t30, periodic;
    auto record = [&](timer& t) { late.push_back(clk::now() - t.deadline()); };
    run_on(*e, 0, [&](shard& s) {
        t30 = std::make_unique<timer>(s, [&] {
            record(*t30);
            fixed.push_back(30);
            done.set_value();
        });
        t10 = std::make_unique<timer>(s, [&] {
            record(*t10);
            fixed.push_back(10);
        });
        t20 = std::make_unique<timer>(s, [&] { fixed.push_back(20); });
        periodic = std::make_unique<timer>(s, [&] {
            record(*periodic);
            ticks.push_back(int(ticks.size()));
            if (ticks.size() < 3) periodic->arm_after(2ms);  // re-arm from its own callback
        });
        // Armed out of order; the heap sorts them.
        t30->arm_after(30ms);
        t20->arm_after(20ms);
        t10->arm_after(10ms);
        periodic->arm_after(1ms);
        t20->cancel();  // never fires
        EXPECT_FALSE(t20->armed());
        EXPECT_TRUE(t10->armed());
    });
    ASSERT_EQ(done.get_future().wait_for(5s), std::future_status::ready);
    run_on(*e, 0, [&](shard&) {
        EXPECT_EQ(fixed, (std::vector<int>{10, 30}));
        EXPECT_EQ(ticks, (std::vector<int>{0, 1, 2}));
        for (auto d : late) EXPECT_GE(d, clk::duration::zero());  // never early
        t10.reset();
        t20.reset();
        t30.reset();
        periodic.reset();
    });
}

// Closes the connection when nothing arrives for `idle`; every on_data re-arms the timer.
class idle_closer : public counted {
public:
    idle_closer(counters* c, std::chrono::milliseconds idle) : counted(c), idle_(idle) {}
    void on_open() override {
        counted::on_open();
        t_ = std::make_unique<timer>(owner(), [this] { close(); });
        t_->arm_after(idle_);
    }
    void on_data(slice s) override {
        t_->arm_after(idle_);
        (void)send(std::move(s));
    }
    void on_close(const error& why) override {
        t_.reset();
        counted::on_close(why);
    }

private:
    std::chrono::milliseconds idle_;
    std::unique_ptr<timer> t_;
};

TEST(Timer, IdleTimeoutClosesConnection) {
    counters cnt;
    config cfg;
    cfg.shards = 1;
    auto e = start_engine(cfg);
    ASSERT_TRUE(e);
    auto bound = e->listen(*address::parse("127.0.0.1:0"),
                           [&](shard&) { return std::make_unique<idle_closer>(&cnt, 150ms); });
    test_client c(*bound);
    auto t0 = std::chrono::steady_clock::now();
    auto last = t0;
    for (int i = 0; i < 4; ++i) {  // activity every 60 ms keeps it open past 150 ms
        last = std::chrono::steady_clock::now();
        ASSERT_TRUE(c.send_all("ping"));
        ASSERT_EQ(c.recv_exact(4), "ping");
        std::this_thread::sleep_for(60ms);
    }
    ASSERT_TRUE(c.wait_closed(3s));
    auto closed_at = std::chrono::steady_clock::now();
    EXPECT_GE(closed_at - t0, 180ms + 150ms);  // re-armed by each ping
    EXPECT_GE(closed_at - last, 150ms);        // and closed only after 150 ms of silence
    EXPECT_TRUE(eventually([&] { return cnt.closed_ok.load() == 1; }));
}

// ---- cancellation -------------------------------------------------------------------------

// An owner whose release hook records that it ran and whether the connection still had its fd.
struct tracked_block : owner {
    std::vector<std::byte> mem;
    std::atomic<int>* released;
    static void hook(owner* o) noexcept {
        auto* t = static_cast<tracked_block*>(o);
        ++*t->released;
        delete t;
    }
};

// On open: queues 32 MiB (the client never reads, so the send stays in flight) and registers
// itself so the test can abort it.
class flooder : public counted {
public:
    flooder(counters* c, std::atomic<int>* released, connection_ptr* slot, std::atomic<bool>* ready)
        : counted(c), released_(released), slot_(slot), ready_(ready) {}
    void on_open() override {
        counted::on_open();
        auto* b = new tracked_block;
        b->refs = 1;
        b->release = &tracked_block::hook;
        b->released = released_;
        b->mem.resize(32u << 20);
        (void)send(slice(b, b->mem.data(), b->mem.size()));
        b->unref();  // the output chain holds the only reference now
        *slot_ = connection_ptr(this);
        *ready_ = true;
    }
    void on_data(slice) override {}

private:
    std::atomic<int>* released_;
    connection_ptr* slot_;
    std::atomic<bool>* ready_;
};

TEST(Cancel, AbortWithRecvAndSendInFlightKeepsBuffersUntilCompletion) {
    counters cnt;
    std::atomic<int> released{0};
    std::atomic<bool> ready{false};
    connection_ptr slot;  // touched on shard 0 only
    config cfg;
    cfg.shards = 1;
    auto e = start_engine(cfg);
    ASSERT_TRUE(e);
    auto bound = e->listen(*address::parse("127.0.0.1:0"), [&](shard&) {
        return std::make_unique<flooder>(&cnt, &released, &slot, &ready);
    });
    test_client c(*bound);
    ASSERT_TRUE(eventually([&] { return ready.load(); }));
    std::this_thread::sleep_for(50ms);  // let the send fill the socket buffers and park
    EXPECT_EQ(released.load(), 0);      // the kernel may still read it: not released
    bool in_flight = false;
    run_on(*e, 0, [&](shard&) {
        in_flight = slot->output_pending() > 0;
        slot->close(close_mode::abort);
        // Not closed synchronously: operations must complete (-ECANCELED) first.
        EXPECT_FALSE(slot->is_closed());
    });
    EXPECT_TRUE(in_flight);
    ASSERT_TRUE(eventually([&] { return cnt.closed.load() == 1; }));
    EXPECT_EQ(released.load(), 1);  // the payload went back once the send completed
    EXPECT_EQ(cnt.closed_ok.load(), 1);
    // Our reference keeps the object alive after on_close; dropping it frees it.
    EXPECT_EQ(cnt.destroyed.load(), 0);
    run_on(*e, 0, [&](shard&) {
        EXPECT_TRUE(slot->is_closed());
        EXPECT_FALSE(slot->send_copy(as_bytes("late")));  // no-op on a closed connection
        slot.reset();
    });
    EXPECT_EQ(cnt.destroyed.load(), 1);
    EXPECT_TRUE(c.wait_closed(2s));
    e->stop();
    e->wait();
    EXPECT_EQ(e->total_stats().stale_cqes, 0u);
}

// ---- read-disable -------------------------------------------------------------------------

class pauser : public counted {
public:
    pauser(counters* c, std::string* got, std::mutex* mu, connection_ptr* slot)
        : counted(c), got_(got), mu_(mu), slot_(slot) {}
    void on_open() override {
        counted::on_open();
        *slot_ = connection_ptr(this);
    }
    void on_data(slice s) override {
        std::lock_guard lk(*mu_);
        got_->append(as_string(s.view()));
        if (!paused_once_) {
            paused_once_ = true;
            pause_reading();  // counted: two pauses need two resumes
            pause_reading();
        }
    }

private:
    std::string* got_;
    std::mutex* mu_;
    connection_ptr* slot_;
    bool paused_once_ = false;
};

TEST(Backpressure, CountedPauseStopsDeliveryUntilLastResume) {
    counters cnt;
    std::string got;
    std::mutex mu;
    connection_ptr slot;
    config cfg;
    cfg.shards = 1;
    auto e = start_engine(cfg);
    ASSERT_TRUE(e);
    auto bound = e->listen(*address::parse("127.0.0.1:0"),
                           [&](shard&) { return std::make_unique<pauser>(&cnt, &got, &mu, &slot); });
    test_client c(*bound);
    ASSERT_TRUE(c.send_all("first"));
    ASSERT_TRUE(eventually([&] {
        std::lock_guard lk(mu);
        return got == "first";
    }));
    std::string rest;
    for (int i = 0; i < 1000; ++i) rest += "line " + std::to_string(i) + "\n";
    ASSERT_TRUE(c.send_all(rest));
    std::this_thread::sleep_for(100ms);
    {
        std::lock_guard lk(mu);
        EXPECT_EQ(got, "first");  // paused: nothing delivered
    }
    run_on(*e, 0, [&](shard&) { slot->resume_reading(); });
    std::this_thread::sleep_for(100ms);
    {
        std::lock_guard lk(mu);
        EXPECT_EQ(got, "first");  // still paused once
    }
    run_on(*e, 0, [&](shard&) {
        EXPECT_TRUE(slot->reading_paused());
        slot->resume_reading();
        EXPECT_FALSE(slot->reading_paused());
    });
    ASSERT_TRUE(eventually([&] {
        std::lock_guard lk(mu);
        return got.size() == 5 + rest.size();
    }));
    {
        std::lock_guard lk(mu);
        EXPECT_EQ(got, "first" + rest);  // in order, nothing lost
    }
    run_on(*e, 0, [&](shard&) { slot.reset(); });
}

// Raises output past the watermark toward a client that does not read yet.
class big_sender : public counted {
public:
    big_sender(counters* c, std::atomic<int>* high, std::atomic<int>* low) : counted(c), high_(high), low_(low) {}
    void on_open() override {
        counted::on_open();
        set_output_watermark(256 * 1024);
        slice chunk = slice::allocate(64 * 1024);
        std::memset(chunk.data(), 'z', chunk.size());
        // 16 MiB, the same block linked 256x: more than the kernel can hold for a client with a
        // fixed 64 KiB receive buffer plus our send buffer (wmem_max 4 MiB), so output stays high.
        for (int i = 0; i < 256; ++i) (void)send(chunk);
    }
    void on_data(slice) override {}
    void on_output_high() override { ++*high_; }
    void on_output_low() override { ++*low_; }

private:
    std::atomic<int>* high_;
    std::atomic<int>* low_;
};

TEST(Backpressure, OutputWatermarksHighThenLow) {
    counters cnt;
    std::atomic<int> high{0}, low{0};
    config cfg;
    cfg.shards = 1;
    auto e = start_engine(cfg);
    ASSERT_TRUE(e);
    auto bound = e->listen(*address::parse("127.0.0.1:0"),
                           [&](shard&) { return std::make_unique<big_sender>(&cnt, &high, &low); });
    test_client c(*bound, 64 * 1024);
    ASSERT_TRUE(eventually([&] { return high.load() == 1; }));
    std::this_thread::sleep_for(50ms);
    EXPECT_EQ(low.load(), 0);
    std::string all = c.recv_exact(16u << 20);
    EXPECT_EQ(all.size(), 16u << 20);
    EXPECT_EQ(all.find_first_not_of('z'), std::string::npos);
    EXPECT_TRUE(eventually([&] { return low.load() == 1; }));
    EXPECT_EQ(high.load(), 1);
}

// notify_output_drained(): one on_output_drained() once every queued byte went to the kernel.
class drain_watcher : public counted {
public:
    drain_watcher(counters* c, std::atomic<int>* drained, std::size_t bytes) : counted(c), drained_(drained), bytes_(bytes) {}
    void on_open() override {
        counted::on_open();
        slice chunk = slice::allocate(64 * 1024);
        std::memset(chunk.data(), 'd', chunk.size());
        for (std::size_t i = 0; i < bytes_ / chunk.size(); ++i) (void)send(chunk);
        notify_output_drained();
    }
    void on_data(slice) override {}
    void on_output_drained() override { ++*drained_; }

private:
    std::atomic<int>* drained_;
    std::size_t bytes_;
};

TEST(Backpressure, OutputDrainedOnceEverythingWasTaken) {
    for (std::size_t bytes : {std::size_t(16) << 20, std::size_t(0)}) {
        SCOPED_TRACE(bytes);
        counters cnt;
        std::atomic<int> drained{0};
        config cfg;
        cfg.shards = 1;
        auto e = start_engine(cfg);
        ASSERT_TRUE(e);
        auto bound = e->listen(*address::parse("127.0.0.1:0"),
                               [&](shard&) { return std::make_unique<drain_watcher>(&cnt, &drained, bytes); });
        test_client c(*bound, 64 * 1024);
        if (bytes == 0) {  // nothing queued: the event comes from the loop at once
            ASSERT_TRUE(eventually([&] { return drained.load() == 1; }));
            continue;
        }
        ASSERT_TRUE(eventually([&] { return cnt.opened.load() == 1; }));
        std::string first = c.recv_exact(1 << 20);  // 15 MiB still more than the kernel holds
        EXPECT_EQ(drained.load(), 0);
        std::string rest = c.recv_exact((16u << 20) - (1u << 20));
        EXPECT_EQ(first.size() + rest.size(), 16u << 20);
        ASSERT_TRUE(eventually([&] { return drained.load() == 1; }));
        std::this_thread::sleep_for(20ms);
        EXPECT_EQ(drained.load(), 1);  // once per request
    }
}

// ---- half-close ---------------------------------------------------------------------------

class bye_then_listen : public counted {
public:
    bye_then_listen(counters* c, std::string* got, std::mutex* mu) : counted(c), got_(got), mu_(mu) {}
    void on_open() override {
        counted::on_open();
        (void)send_copy(as_bytes("bye"));
        shutdown_write();
        EXPECT_FALSE(send_copy(as_bytes("refused")));  // after shutdown_write
    }
    void on_data(slice s) override {
        std::lock_guard lk(*mu_);
        got_->append(as_string(s.view()));
    }

private:
    std::string* got_;
    std::mutex* mu_;
};

TEST(Connection, ShutdownWriteKeepsReading) {
    counters cnt;
    std::string got;
    std::mutex mu;
    config cfg;
    cfg.shards = 1;
    auto e = start_engine(cfg);
    ASSERT_TRUE(e);
    auto bound = e->listen(*address::parse("127.0.0.1:0"),
                           [&](shard&) { return std::make_unique<bye_then_listen>(&cnt, &got, &mu); });
    test_client c(*bound);
    EXPECT_EQ(c.recv_exact(3), "bye");
    EXPECT_EQ(c.recv_exact(1, 2s), "");  // EOF: the server half-closed
    ASSERT_TRUE(c.send_all("still here"));
    EXPECT_TRUE(eventually([&] {
        std::lock_guard lk(mu);
        return got == "still here";
    }));
    ::shutdown(c.fd(), SHUT_WR);  // now the peer ends: default on_read_eof closes
    EXPECT_TRUE(eventually([&] { return cnt.closed_peer.load() == 1; }));
}

// ---- outbound connect ---------------------------------------------------------------------

class dialer : public counted {
public:
    dialer(counters* c, std::promise<std::string>* reply) : counted(c), reply_(reply) {}
    void on_open() override {
        counted::on_open();
        (void)send_copy(as_bytes("hi"));
    }
    void on_data(slice s) override {
        buf_ += as_string(s.view());
        if (buf_.size() >= 2) {
            reply_->set_value(buf_);
            close();
        }
    }

private:
    std::promise<std::string>* reply_;
    std::string buf_;
};

TEST(Connect, OutboundConnectExchangesData) {
    int ls = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    address lo = address::ipv4_loopback(0);
    ASSERT_EQ(::bind(ls, lo.sa(), lo.len()), 0);
    ASSERT_EQ(::listen(ls, 4), 0);
    address target = *local_address(ls);

    counters cnt;
    std::promise<std::string> reply;
    config cfg;
    cfg.shards = 2;
    auto e = start_engine(cfg);
    ASSERT_TRUE(e);
    run_on(*e, 1, [&](shard& s) {
        auto r = s.connect(target, std::make_unique<dialer>(&cnt, &reply));
        EXPECT_TRUE(r);
    });
    int fd = ::accept(ls, nullptr, nullptr);
    ASSERT_GE(fd, 0);
    char buf[2];
    ASSERT_EQ(::recv(fd, buf, 2, MSG_WAITALL), 2);
    EXPECT_EQ(std::string(buf, 2), "hi");
    ASSERT_EQ(::send(fd, "yo", 2, 0), 2);
    auto fut = reply.get_future();
    ASSERT_EQ(fut.wait_for(5s), std::future_status::ready);
    EXPECT_EQ(fut.get(), "yo");
    EXPECT_EQ(::recv(fd, buf, 1, 0), 0);  // the dialer closed
    ::close(fd);
    ::close(ls);
    EXPECT_TRUE(eventually([&] { return cnt.closed_ok.load() == 1; }));
    EXPECT_EQ(cnt.wrong_thread.load(), 0);
}

TEST(Connect, RefusedConnectReportsErrno) {
    // A port with nothing listening: bind, learn the port, close.
    int tmp = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    address lo = address::ipv4_loopback(0);
    ASSERT_EQ(::bind(tmp, lo.sa(), lo.len()), 0);
    address target = *local_address(tmp);
    ::close(tmp);

    counters cnt;
    std::promise<std::string> unused;
    config cfg;
    cfg.shards = 1;
    auto e = start_engine(cfg);
    ASSERT_TRUE(e);
    run_on(*e, 0, [&](shard& s) { EXPECT_TRUE(s.connect(target, std::make_unique<dialer>(&cnt, &unused))); });
    ASSERT_TRUE(eventually([&] { return cnt.closed.load() == 1; }));
    EXPECT_EQ(cnt.opened.load(), 0);
    EXPECT_EQ(cnt.closed_io.load(), 1);
    EXPECT_EQ(cnt.last_sys.load(), ECONNREFUSED);
}

// ---- cross-shard messages -----------------------------------------------------------------

TEST(Messages, RunOnTargetShardFromAnyThreadInOrder) {
    config cfg;
    cfg.shards = 2;
    auto e = start_engine(cfg);
    ASSERT_TRUE(e);
    // From a non-shard thread (eventfd wake-up), many messages: they run in order.
    std::vector<int> seen;  // shard 1 only
    std::promise<void> done;
    for (int i = 0; i < 1000; ++i) {
        e->post(1, [&, i](shard& s) {
            EXPECT_EQ(shard::current(), &s);
            EXPECT_EQ(s.id(), 1u);
            seen.push_back(i);
            if (i == 999) done.set_value();
        });
    }
    ASSERT_EQ(done.get_future().wait_for(5s), std::future_status::ready);
    ASSERT_EQ(seen.size(), 1000u);
    for (int i = 0; i < 1000; ++i) ASSERT_EQ(seen[i], i);

    // Shard to shard (IORING_OP_MSG_RING wake-up when available), and back.
    std::promise<unsigned> back;
    e->post(0, [&](shard& s0) {
        s0.post(1, [&](shard& s1) {
            s1.post(0, [&](shard& s) { back.set_value(s.id() * 10 + 1); });
        });
    });
    auto f = back.get_future();
    ASSERT_EQ(f.wait_for(5s), std::future_status::ready);
    EXPECT_EQ(f.get(), 1u);
    bool msg_ring = e->at(0).has_msg_ring();
    e->stop();
    e->wait();
    if (msg_ring) {
        EXPECT_GT(e->at(0).stats().msg_ring_wakes, 0u);
        EXPECT_GT(e->at(1).stats().msg_ring_wakes, 0u);
    }
    EXPECT_GE(e->total_stats().messages, 1003u);
}

// ---- hand-over ----------------------------------------------------------------------------

// Target side: announces its shard, then echoes everything (pre-read bytes first).
class adopted_echo : public counted {
public:
    using counted::counted;
    void on_open() override {
        counted::on_open();
        (void)send_copy(as_bytes("to=" + std::to_string(owner().id()) + "\n"));
    }
    void on_data(slice s) override {
        check();
        (void)send(std::move(s));
    }
};

// Source side: reads until the first newline, says where it is, then hands the socket (and
// every byte it has read, header included) to the next shard.
class router : public counted {
public:
    router(counters* c, counters* target_cnt) : counted(c), target_cnt_(target_cnt) {}
    void on_data(slice s) override {
        bool line = as_string(s.view()).find('\n') != std::string_view::npos;
        read_.append(std::move(s));  // may hold ring-backed slices: hand_over copies them
        if (!line || moved_) return;
        moved_ = true;
        (void)send_copy(as_bytes("from=" + std::to_string(owner().id()) + "\n"));
        unsigned next = (owner().id() + 1) % owner().count();
        counters* tc = target_cnt_;
        status st = hand_over(next, std::move(read_), [tc](shard&) { return std::make_unique<adopted_echo>(tc); });
        EXPECT_TRUE(st);
        EXPECT_FALSE(send_copy(as_bytes("x")));  // the connection is leaving
    }

private:
    counters* target_cnt_;
    buffer_chain read_;
    bool moved_ = false;
};

// A hand-over to the shard the connection is already on (the relay turns a consumer connection
// into an agent session this way): the message to ourselves must not wait for an unrelated
// wake-up (a self-post during the loop's work phase used to sit until the next completion).
TEST(Handover, ToTheSameShardCompletesPromptly) {
    counters src, dst;
    config cfg;
    cfg.shards = 1;
    auto e = start_engine(cfg);
    ASSERT_TRUE(e);
    auto bound = e->listen(*address::parse("127.0.0.1:0"),
                           [&](shard&) { return std::make_unique<router>(&src, &dst); });
    test_client c(*bound);
    ASSERT_TRUE(c.send_all("HELLO\n"));
    EXPECT_EQ(c.recv_line(), "from=0\n");
    // Nothing else happens on this engine: without the fix this line never came.
    EXPECT_EQ(c.recv_line(2s), "to=0\n");
    EXPECT_EQ(c.recv_exact(6, 2s), "HELLO\n");
}

TEST(Handover, ConnectionMovesWithPreReadAndInFlightBytes) {
    counters src, dst;
    config cfg;
    cfg.shards = 2;
    auto e = start_engine(cfg);
    ASSERT_TRUE(e);
    auto bound = e->listen(*address::parse("127.0.0.1:0"),
                           [&](shard&) { return std::make_unique<router>(&src, &dst); });
    constexpr int conns = 12;
    for (int i = 0; i < conns; ++i) {
        test_client c(*bound);
        ASSERT_TRUE(c.ok());
        // Header, then 1 MiB right behind it: part of it is read by the source shard while the
        // hand-over is under way and must travel with the socket, in order.
        std::string head = "HELLO " + std::to_string(i) + "\n";
        std::string burst(1u << 20, '\0');
        byte_stream(i + 1).fill(reinterpret_cast<unsigned char*>(burst.data()), burst.size());
        std::thread w([&] { c.send_all(head + burst); });
        std::string from = c.recv_line();
        std::string to = c.recv_line();
        ASSERT_EQ(from.rfind("from=", 0), 0u) << from;
        ASSERT_EQ(to.rfind("to=", 0), 0u) << to;
        unsigned a = std::stoul(from.substr(5)), b = std::stoul(to.substr(3));
        EXPECT_EQ(b, (a + 1) % 2);  // really another shard
        std::string echoed = c.recv_exact(head.size() + burst.size());
        w.join();
        EXPECT_TRUE(echoed == head + burst) << "connection " << i << " got " << echoed.size() << " bytes";
        // After the hand-over the socket keeps working on its new shard.
        ASSERT_TRUE(c.send_all("tail"));
        EXPECT_EQ(c.recv_exact(4), "tail");
    }
    EXPECT_TRUE(eventually([&] { return dst.closed.load() == conns; }));
    e->stop();
    e->wait();
    shard_stats st = e->total_stats();
    EXPECT_EQ(st.handovers_out, unsigned(conns));
    EXPECT_EQ(st.handovers_in, unsigned(conns));
    EXPECT_EQ(src.opened.load(), conns);
    EXPECT_EQ(src.closed.load(), 0);  // handed over: no on_close on the source handler
    EXPECT_EQ(src.destroyed.load(), conns);
    EXPECT_EQ(dst.opened.load(), conns);
    EXPECT_EQ(dst.destroyed.load(), conns);
    EXPECT_EQ(dst.wrong_thread.load(), 0);
    EXPECT_EQ(st.stale_cqes, 0u);
}

#ifdef FERRY_DEBUG
TEST(OwnershipDeathTest, TouchingAConnectionOffItsShardAborts) {
    GTEST_FLAG_SET(death_test_style, "threadsafe");
    counters cnt;
    std::atomic<int> released{0};
    std::atomic<bool> ready{false};
    connection_ptr slot;
    EXPECT_DEATH(
        {
            config cfg;
            cfg.shards = 1;
            auto e = engine::start(cfg);
            auto bound = (*e)->listen(*address::parse("127.0.0.1:0"), [&](shard&) {
                return std::make_unique<flooder>(&cnt, &released, &slot, &ready);
            });
            test_client c(*bound);
            while (!ready) std::this_thread::sleep_for(1ms);
            (void)slot->send_copy(as_bytes("from the wrong thread"));
        },
        "on_this_thread");
}
#endif

}  // namespace
}  // namespace ferry::reactor::testing
