#pragma once
// One forwarded-tcpip channel's TCP connection to its local target (and, between channels, an
// idle connection kept in the target_pool: upstream keep-alive).
#include <cstdint>
#include <memory>
#include <string>

#include "agent/agent_options.hh"
#include "agent/exchange_tracker.hh"
#include "proto/base/buffer.hh"
#include "reactor/connection.hh"
#include "reactor/timer.hh"

namespace ferry::agent {

class agent_link;
class target_pool;

class agent_target final : public reactor::connection {
public:
    agent_target(reactor::shard& s, agent_link* link, std::uint32_t id, std::string name,
                 const agent_options& o, std::shared_ptr<target_pool> pool);

    std::uint32_t id() const noexcept { return id_; }
    const std::string& name() const noexcept { return name_; }
    bool opened() const noexcept { return opened_; }

    // ---- from the link ----
    void ssh_data(slice piece);
    void ssh_eof();
    void ssh_writable() { pump(); }
    void channel_closed();  // the peer's CLOSE (or ours answered): keep for the next channel, or flush and go
    void ssh_gone();        // the session ended: abort
    void backpressure(bool on);

    // ---- from the pool ----
    // A kept connection serves channel `id` of `link` (the channel is confirmed at once).
    void bind(agent_link* link, std::uint32_t id);
    // ---- replay (the keep-alive race) ----
    // This new connection carries a request that a kept one failed to answer: `req` goes out
    // once connected (then `eof`), and the channel, already confirmed, is not confirmed again.
    void prepare_replay(buffer_chain&& req, bool eof);
    void idle_expired();
    reactor::timer::clock::time_point idle_since() const noexcept { return last_used_; }

private:
    void on_open() override;
    void on_data(slice s) override;
    void on_read_eof() override;
    void on_output_high() override { above_high_ = true; }
    void on_output_low() override {
        above_high_ = false;
        repay();
    }
    void on_close(const error& why) override;

    void pump();
    void settle();
    void repay();
    void maybe_finish();
    void on_timer();
    bool keep_for_next() const;
    void watch_unused();
    bool try_replay();

    reactor::ref_ptr<agent_link> link_;  // null once the channel or the session is gone
    std::shared_ptr<target_pool> pool_;  // null: upstream keep-alive off
    std::uint32_t id_;
    std::string name_;
    std::size_t watermark_;
    milliseconds close_timeout_;
    reactor::timer timer_;  // connect timeout, then settle re-checks, then the close deadline
    buffer_chain to_ssh_;   // read from the target, not yet taken by the channel
    exchange_tracker exchange_;  // is the connection reusable after this channel?
    bool opened_ = false;
    bool pooled_ = false;   // idle in the pool, bound to no channel
    bool unused_ = false;   // bound to a channel that has carried no byte yet (a relay's spare)
    // A kept connection may be closed by the upstream just as a request is written to it (its
    // own keep-alive timeout): until the first response byte, the request's bytes are kept
    // (up to kReplayMax) to send them again on a new connection, once, if the method allows.
    static constexpr std::size_t kReplayMax = 64 * 1024;
    bool reused_ = false;         // bound from the pool: replay_ collects the request
    bool replay_target_ = false;  // a new connection carrying a replayed request
    bool replay_eof_ = false;
    buffer_chain replay_;
    milliseconds idle_timeout_;
    reactor::timer::clock::time_point last_used_{};  // connected, or the last byte either way
    bool window_pause_ = false, link_pause_ = false;
    bool eof_in_ = false, eof_sent_ = false, eof_out_ = false;
    bool above_high_ = false;
    bool closing_ = false;
    std::size_t owed_ = 0;  // bytes delivered to our output, not yet consumed() on the channel
};

}  // namespace ferry::agent
