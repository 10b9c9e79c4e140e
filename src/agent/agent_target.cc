#include "agent/agent_target.hh"

#include <cstring>

#include "agent/agent_link.hh"
#include "agent/detail.hh"
#include "agent/target_pool.hh"
#include "proto/base/log.hh"
#include "reactor/shard.hh"

namespace ferry::agent {

using detail::set_nodelay;
using reactor::close_mode;
using reactor::ref_ptr;

agent_target::agent_target(reactor::shard& s, agent_link* link, std::uint32_t id, std::string name,
                           const agent_options& o, std::shared_ptr<target_pool> pool)
    : link_(link), pool_(std::move(pool)), id_(id), name_(std::move(name)),
      close_timeout_(o.timings.close_timeout), timer_(s, [this] { on_timer(); }), pipe_(*this) {
    idle_timeout_ = o.timings.upstream_idle;
    set_output_watermark(o.target_watermark);  // the pipe acknowledges channel data against it
    timer_.arm_after(o.timings.target_connect_timeout);
}

void agent_target::attach() {
    if (!link_) return;
    link::ssh_endpoint& ep = link_->endpoint();
    ep.attach(id_, *this, *this);
    // Bytes toward the channel flow once the socket is connected (on_open).
    pipe_.bind(ep, id_, false);
}

void agent_target::drop_link() noexcept {
    pipe_.unbind();
    link_.reset();
}

void agent_target::on_open() {
    timer_.cancel();
    set_nodelay(fd());
    opened_ = true;
    last_used_ = reactor::timer::clock::now();
    if (!link_) {
        close(close_mode::abort);
        return;
    }
    pipe_.open();
    if (replay_target_) {  // the channel is open already: send what the failed connection got
        buffer_chain req = std::move(replay_);
        while (!req.empty()) {
            slice piece = req.pop_front();
            if (pool_) exchange_.request_bytes(piece.view());
            (void)send(std::move(piece));
        }
        if (replay_eof_) {
            eof_out_ = true;
            shutdown_write();
        }
        const std::size_t owed = replay_owed_;
        replay_owed_ = 0;
        pipe_.delivered(owed);
        return;
    }
    watch_unused();
    link_->target_connected(this);
}

void agent_target::on_timer() {
    if (pooled_) {
        idle_expired();
    } else if (unused_ && opened_ && !closing_) {
        // A channel opened ahead by the relay that no request used within the idle time: the
        // upstream connection is not kept open for it (the relay opens another when needed).
        unused_ = false;
        closing_ = true;
        timer_.arm_after(close_timeout_);
        close(close_mode::flush);
    } else if (!opened_) {
        // Connect timeout: on_close reports the refusal.
        if (link_ && replay_target_) link_->target_closed(this);
        else if (link_) link_->target_failed(this, "connect timeout");
        drop_link();
        close(close_mode::abort);
    } else if (closing_) {
        close(close_mode::abort);  // a target that stopped reading must not hold the socket
    }
}

void agent_target::on_data(slice s) {
    if (pooled_) {  // an idle upstream has nothing to say: it cannot be trusted for the next request
        idle_expired();
        return;
    }
    last_used_ = owner().now();
    if (unused_) {  // the upstream spoke first: this connection carries no request any more
        unused_ = false;
        timer_.cancel();
    }
    if (reused_) {  // answered: nothing to replay any more
        reused_ = false;
        replay_.clear();
    }
    if (pool_) exchange_.response_bytes(s.view());
    if (link_) link_->count_from_target(s.size());
    pipe_.to_channel(std::move(s));
}

void agent_target::on_read_eof() {
    if (pooled_) {  // the upstream closed an idle connection (its keep-alive timeout)
        idle_expired();
        return;
    }
    if (try_replay()) return;
    if (pool_) exchange_.response_eof();
    eof_in_ = true;
    pipe_.socket_eof();
    maybe_finish();
}

void agent_target::channel_data(slice piece) {
    const std::size_t n = piece.size();
    if (link_) link_->count_to_target(n);
    last_used_ = owner().now();
    if (unused_) {
        unused_ = false;
        timer_.cancel();
    }
    if (replay_target_ && !opened_) {
        // Still connecting: after what is to be sent again, in order (copied: ring buffers are
        // not held across a connect).
        replay_.append(slice::copy_of(piece.view()));
        replay_owed_ += n;  // acknowledged once connected and queued (on_open): bounded by the window
        return;
    }
    if (pool_) exchange_.request_bytes(piece.view());
    if (reused_) {
        if (replay_.size() + n <= kReplayMax) {
            replay_.append(slice::copy_of(piece.view()));  // a copy: ring buffers are not held
        } else {
            reused_ = false;  // too large to send again
            replay_.clear();
        }
    }
    pipe_.to_socket(std::move(piece));  // errc::closed once closing: nowhere to go, nothing owed
}

void agent_target::channel_eof() {
    if (replay_target_ && !opened_) {
        replay_eof_ = true;  // after the replayed bytes, once connected
        return;
    }
    eof_out_ = true;
    shutdown_write();
    maybe_finish();
}

void agent_target::maybe_finish() {
    // Both directions ended: what is queued still goes out, then the socket closes and
    // on_close closes the channel.
    if (eof_out_ && pipe_.eof_sent() && !closing_) {
        closing_ = true;
        timer_.arm_after(close_timeout_);
        close(close_mode::flush);
    }
}

bool agent_target::keep_for_next() const {
    return pool_ && opened_ && !closing_ && !eof_in_ && !eof_out_ && !pipe_.waiting() &&
           output_pending() == 0 && (exchange_.reusable() || unused_);
}

void agent_target::channel_closed() {
    const bool keep = keep_for_next();
    drop_link();  // also releases the pipe's pauses: an idle connection keeps reading
    if (!opened_) {
        close(close_mode::abort);
        return;
    }
    if (keep && pool_->put(this)) {
        // Idle until the next channel of this tunnel; reading stays on so that the upstream
        // closing it (or saying anything) is seen at once.
        pooled_ = true;
        unused_ = false;
        // Idle counts from the last byte, not from now: a connection that already sat unused
        // under a spare channel must not get a second full idle period.
        timer_.arm_at(last_used_ + pool_->idle_timeout());
        return;
    }
    closing_ = true;
    timer_.arm_after(close_timeout_);
    close(close_mode::flush);
}

void agent_target::session_gone() {
    drop_link();
    close(close_mode::abort);
}

void agent_target::bind(agent_link* link, std::uint32_t id) {
    pooled_ = false;
    timer_.cancel();
    link_ = ref_ptr<agent_link>(link);
    id_ = id;
    exchange_.reset();
    eof_in_ = eof_out_ = false;
    reused_ = true;
    replay_.clear();
    link::ssh_endpoint& ep = link->endpoint();
    ep.attach(id_, *this, *this);
    pipe_.bind(ep, id_, true);
    watch_unused();
}

void agent_target::prepare_replay(buffer_chain&& req, bool eof) {
    replay_target_ = true;
    replay_ = std::move(req);
    replay_eof_ = eof;
}

bool agent_target::try_replay() {
    // The upstream closed (or reset) a kept connection before answering the request written
    // to it: the request goes again on a new connection, once.
    if (!reused_ || !link_ || !opened_ || closing_ || replay_.empty() || exchange_.response_started() ||
        !exchange_.request_idempotent()) {
        return false;
    }
    reused_ = false;
    ref_ptr<agent_link> l = link_;
    pipe_.acknowledge_all();  // what this connection took: the new one sends it without owing
    if (!l->replay(this, std::move(replay_), eof_out_)) return false;
    drop_link();
    if (!is_closed()) close(close_mode::abort);
    return true;
}

void agent_target::watch_unused() {
    unused_ = true;
    timer_.arm_at(last_used_ + idle_timeout_);
}

void agent_target::idle_expired() {
    if (!pooled_) return;
    pooled_ = false;
    if (pool_) pool_->remove(this);
    closing_ = true;
    timer_.arm_after(close_timeout_);
    close(close_mode::flush);
}

void agent_target::on_close(const error& why) {
    timer_.cancel();
    if (pooled_) {
        pooled_ = false;
        if (pool_) pool_->remove(this);
    }
    if (!link_) return;
    if (opened_ && try_replay()) return;
    auto l = std::move(link_);
    pipe_.unbind();
    if (!opened_ && replay_target_) {
        l->target_closed(this);  // the channel is open: it closes without an answer (502)
    } else if (!opened_) {
        std::string r = why.code == errc::io && why.sys != 0 ? std::string(std::strerror(why.sys))
                                                             : std::string(why.detail);
        l->target_failed(this, r.empty() ? "connect failed" : r);
    } else {
        l->target_closed(this);
    }
}

}  // namespace ferry::agent
