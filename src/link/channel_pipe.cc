#include "link/channel_pipe.hh"

#include "link/ssh_endpoint.hh"

namespace ferry::link {

channel_pipe::~channel_pipe() = default;

void channel_pipe::bind(ssh_endpoint& ep, std::uint32_t id, bool open) noexcept {
    ++gen_;
    ep_ = &ep;
    id_ = id;
    open_ = open;
    eof_in_ = eof_sent_ = false;
    owed_ = 0;
    if (ep.output_high()) link_backpressure(true);
    if (open_) pump();
}

void channel_pipe::open() noexcept {
    open_ = true;
    pump();
}

void channel_pipe::unbind() noexcept {
    ++gen_;
    ep_ = nullptr;
    open_ = false;
    to_channel_.clear();
    owed_ = 0;
    set_pause(window_pause_, false);
    set_pause(link_pause_, false);
}

void channel_pipe::set_pause(bool& flag, bool on) noexcept {
    if (flag == on) return;
    flag = on;
    if (on) {
        sock_.pause_reading();
    } else {
        sock_.resume_reading();
    }
}

// ---- socket -> channel ----

void channel_pipe::to_channel(slice s) {
    if (!ep_ || s.empty()) return;
    to_channel_.append(std::move(s));
    pump();
}

void channel_pipe::socket_eof() noexcept {
    eof_in_ = true;
    pump();
}

void channel_pipe::pump() noexcept {
    if (!ep_ || !open_) return;
    const std::uint64_t gen = gen_;
    while (!to_channel_.empty()) {
        const std::size_t len = to_channel_.front().size();
        auto n = ep_->send_data(id_, to_channel_.front().view());
        // The session failed and our owner was told inside the call: it may have bound us to
        // another channel already, whose bytes are not ours to drop.
        if (gen_ != gen) return;
        // Failing, the channel takes no more data (its close is on the way).
        if (!n) {
            to_channel_.clear();
            break;
        }
        to_channel_.consume(*n);
        if (*n < len) break;
    }
    set_pause(window_pause_, !to_channel_.empty());
    if (to_channel_.empty() && eof_in_ && !eof_sent_ && ep_ && gen_ == gen) {
        eof_sent_ = true;
        ep_->send_eof(id_);
    }
}

// ---- channel -> socket ----

void channel_pipe::to_socket(slice piece) {
    const std::size_t n = piece.size();
    (void)sock_.send(std::move(piece));  // errc::closed once closing: nowhere to go
    delivered(n);
}

void channel_pipe::delivered(std::size_t n) noexcept {
    owed_ += n;
    settle();
}

void channel_pipe::settle() noexcept {
    // Above the watermark the reactor raises on_output_high and then, once the output is
    // down to half of it, on_output_low (even when the kernel took the bytes in this same
    // iteration): the debt is paid there.
    if (above_high_) return;
    if (sock_.output_pending() <= sock_.output_watermark()) repay();
}

void channel_pipe::on_output_low() noexcept {
    above_high_ = false;
    repay();
}

void channel_pipe::repay() noexcept {
    if (owed_ == 0 || !ep_) return;
    const std::size_t n = owed_;
    owed_ = 0;
    ep_->consumed(id_, n);
}

void channel_pipe::link_backpressure(bool on) noexcept { set_pause(link_pause_, on && ep_ != nullptr); }

}  // namespace ferry::link
