#pragma once
// One forwarded-tcpip channel's TCP connection to its local target (and, between channels, an
// idle connection kept in the target_pool: upstream keep-alive).
#include <cstdint>
#include <memory>
#include <string>

#include "agent/agent_options.hh"
#include "agent/exchange_tracker.hh"
#include "link/channel_pipe.hh"
#include "link/ssh_endpoint.hh"
#include "proto/base/buffer.hh"
#include "reactor/connection.hh"
#include "reactor/timer.hh"

namespace ferry::agent {

class agent_link;
class target_pool;

class agent_target final : public reactor::connection, public link::channel_handler {
public:
    agent_target(reactor::shard& s, agent_link* link, std::uint32_t id, std::string name,
                 const agent_options& o, std::shared_ptr<target_pool> pool);

    std::uint32_t id() const noexcept { return id_; }
    const std::string& name() const noexcept { return name_; }
    bool opened() const noexcept { return opened_; }

    // A new connection takes channel `id` in the link's channel table (after shard::connect).
    void attach();
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
    // link::channel_handler
    void channel_data(slice piece) override;
    void channel_eof() override;
    void channel_writable() override { pipe_.pump(); }
    // The peer's CLOSE (or its answer to ours): keep the connection for the next channel, or
    // flush and go.
    void channel_closed() override;
    void session_gone() override;  // the session ended: abort
    void session_backpressure(bool on) override { pipe_.link_backpressure(on); }

    // reactor::connection
    void on_open() override;
    void on_data(slice s) override;
    void on_read_eof() override;
    void on_output_high() override { pipe_.on_output_high(); }
    void on_output_low() override { pipe_.on_output_low(); }
    void on_close(const error& why) override;

    void maybe_finish();
    void on_timer();
    bool keep_for_next() const;
    void watch_unused();
    bool try_replay();
    void drop_link() noexcept;  // the channel is not ours any more

    reactor::ref_ptr<agent_link> link_;  // null once the channel or the session is gone
    std::shared_ptr<target_pool> pool_;  // null: upstream keep-alive off
    std::uint32_t id_;
    std::string name_;
    milliseconds close_timeout_;
    reactor::timer timer_;  // connect timeout, idle and unused deadlines, then the close deadline
    link::channel_pipe pipe_;    // target socket <-> channel
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
    std::size_t replay_owed_ = 0;  // channel bytes that came while connecting, not yet acknowledged
    milliseconds idle_timeout_;
    reactor::timer::clock::time_point last_used_{};  // connected, or the last byte either way
    bool eof_in_ = false;   // the target's EOF was seen
    bool eof_out_ = false;  // the channel's EOF went to the target (SHUT_WR)
    bool closing_ = false;
};

}  // namespace ferry::agent
