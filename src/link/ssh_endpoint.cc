#include "link/ssh_endpoint.hh"

#include <chrono>

#include "reactor/shard.hh"

namespace ferry::link {

void endpoint_events::on_open_request(const ssh::conn_event&) {}

ssh_endpoint::ssh_endpoint(reactor::shard& s, ssh_carrier& carrier, endpoint_events& events)
    : shard_(s), carrier_(carrier), events_(events), timer_(s, [this] { on_timer(); }) {}

ssh_endpoint::~ssh_endpoint() { timer_.cancel(); }

ssh::millis ssh_endpoint::now() const {
    return ssh::millis(
        std::chrono::duration_cast<std::chrono::milliseconds>(shard_.now().time_since_epoch()).count());
}

status ssh_endpoint::start(ssh::session_config cfg) {
    sess_ = std::make_unique<ssh::session>(std::move(cfg));
    status st = sess_->start(out_, now());
    flush();
    return st;
}

void ssh_endpoint::feed(slice piece) {
    if (ended_ || !sess_) return;
    // The transport decrypts in place in `piece`; channel data can then be linked out of it.
    mut_bytes in = piece.mut_view();
    const ssh::millis t = now();
    while (!ended_) {
        auto ev = sess_->feed(in, out_, t);
        if (!ev) return failed(ev.err());
        if (ev->type == ssh::session_event_type::need_more) break;
        dispatch(*ev, &piece);
    }
    flush();
}

void ssh_endpoint::on_timer() {
    if (ended_ || !sess_) return;
    auto ev = sess_->tick(out_, now());
    if (!ev) return failed(ev.err());
    dispatch(*ev, nullptr);
    flush();
}

void ssh_endpoint::flush() {
    if (!out_.empty()) carrier_.carry(out_);
    if (ended_ || !sess_) return;
    ssh::millis d = sess_->next_deadline();
    if (d == 0) {
        timer_.cancel();
        return;
    }
    const ssh::millis t = now();
    if (d <= t) d = t + 20;  // a deadline already past must not make the timer spin
    timer_.arm_at(reactor::shard::clock::time_point(std::chrono::milliseconds(d)));
}

status ssh_endpoint::check(status st) {
    if (!st && sess_ && sess_->closed()) {
        failed(st.err());
    } else {
        flush();
    }
    return st;
}

void ssh_endpoint::failed(const error& e) {
    if (ended_) return;
    flush();  // the DISCONNECT the session wrote
    ended_ = true;
    timer_.cancel();
    events_.on_ssh_failed(e);
    end();
}

void ssh_endpoint::end() {
    ended_ = true;
    timer_.cancel();
    auto chans = std::move(chans_);
    chans_.clear();
    for (auto& [id, e] : chans) e.h->session_gone();
}

void ssh_endpoint::disconnect(ssh::disconnect_reason why, std::string_view text) {
    if (ended_ || !sess_) return end();
    sess_->disconnect(why, text, out_);
    flush();
    end();
}

// ---- dispatch ----

void ssh_endpoint::dispatch(const ssh::session_event& ev, const slice* in) {
    switch (ev.type) {
    case ssh::session_event_type::need_more: break;
    case ssh::session_event_type::banner: events_.on_banner(ev.text); break;
    case ssh::session_event_type::authenticated: events_.on_authenticated(ev); break;
    case ssh::session_event_type::channel: dispatch_channel(ev.conn, in); break;
    case ssh::session_event_type::rekey_done: {
        std::size_t resumed = 0;
        while (auto id = sess_->conn().writable_after_kex()) {
            ++resumed;
            if (channel_handler* h = handler(*id)) h->channel_writable();
        }
        events_.on_rekey_done(resumed);
        break;
    }
    case ssh::session_event_type::disconnected: events_.on_disconnected(ev); break;
    }
}

void ssh_endpoint::dispatch_channel(const ssh::conn_event& ev, const slice* in) {
    using ssh::conn_event_type;
    switch (ev.type) {
    case conn_event_type::none: break;
    case conn_event_type::global_reply: events_.on_global_reply(ev); break;
    case conn_event_type::open_request: events_.on_open_request(ev); break;
    case conn_event_type::opened:
        if (channel_handler* h = handler(ev.id)) {
            h->channel_opened();
        } else {
            events_.on_unowned(ev);
        }
        break;
    case conn_event_type::open_failed:
        if (auto it = chans_.find(ev.id); it != chans_.end()) {
            entry e = std::move(it->second);
            chans_.erase(it);
            e.h->channel_failed(ev.reason);
            events_.on_channel_done(ev.id);
        } else {
            events_.on_unowned(ev);
        }
        break;
    case conn_event_type::data: {
        stats_.channel_bytes_in += ev.data.size();
        channel_handler* h = ev.ext == 0 ? handler(ev.id) : nullptr;
        if (!h) {
            // Extended data means nothing on a TCP channel, and a channel nobody serves has
            // nowhere to put it: acknowledged and dropped.
            if (!ended_) (void)check(sess_->conn().consumed(ev.id, ev.data.size(), out_));
            if (!ended_ && ev.ext == 0) events_.on_unowned(ev);
            break;
        }
        // Zero copy when the payload was decrypted in place in the carrier's buffer; else it
        // was reassembled in the transport's own buffer and is copied.
        h->channel_data(slice::part_or_copy(in, ev.data));
        break;
    }
    case conn_event_type::eof:
        if (channel_handler* h = handler(ev.id)) {
            h->channel_eof();
        } else {
            events_.on_unowned(ev);
        }
        break;
    case conn_event_type::closed:
        if (auto it = chans_.find(ev.id); it != chans_.end()) {
            entry e = std::move(it->second);
            chans_.erase(it);
            e.h->channel_closed();
            events_.on_channel_done(ev.id);
        } else {
            events_.on_unowned(ev);
        }
        break;
    case conn_event_type::writable:
        if (channel_handler* h = handler(ev.id)) h->channel_writable();
        break;
    }
}

// ---- channels ----

void ssh_endpoint::attach(std::uint32_t id, channel_handler& h, reactor::connection& keep) {
    chans_[id] = entry{&h, reactor::ref_ptr<reactor::connection>(&keep)};
    ++stats_.channels_attached;
}

void ssh_endpoint::detach(std::uint32_t id, const channel_handler& h) noexcept {
    auto it = chans_.find(id);
    if (it != chans_.end() && it->second.h == &h) chans_.erase(it);
}

channel_handler* ssh_endpoint::handler(std::uint32_t id) const noexcept {
    auto it = chans_.find(id);
    return it == chans_.end() ? nullptr : it->second.h;
}

result<std::size_t> ssh_endpoint::send_data(std::uint32_t id, bytes data) {
    if (ended_ || !sess_) return fail(errc::closed, "ssh session over");
    if (data.empty()) return std::size_t(0);
    auto n = sess_->conn().send_data(id, data, out_);
    if (n) stats_.channel_bytes_out += *n;
    if (!n && sess_->closed()) {
        failed(n.err());
        return n;
    }
    flush();
    return n;
}

void ssh_endpoint::consumed(std::uint32_t id, std::size_t n) {
    if (ended_ || !sess_) return;
    (void)check(sess_->conn().consumed(id, n, out_));
}

void ssh_endpoint::send_eof(std::uint32_t id) {
    if (ended_ || !sess_) return;
    (void)check(sess_->conn().send_eof(id, out_));
}

void ssh_endpoint::close(std::uint32_t id) {
    chans_.erase(id);
    if (ended_ || !sess_) return;
    (void)check(sess_->conn().close(id, out_));
}

void ssh_endpoint::confirm(std::uint32_t id) {
    if (ended_ || !sess_) return;
    (void)check(sess_->conn().confirm_open(id, out_));
}

void ssh_endpoint::refuse(std::uint32_t id, ssh::open_failure why, std::string_view text) {
    chans_.erase(id);
    if (ended_ || !sess_) return;
    (void)check(sess_->conn().refuse_open(id, why, text, out_));
}

result<std::uint32_t> ssh_endpoint::open_forwarded(std::string_view bound, std::uint32_t port,
                                                   std::string_view origin_host, std::uint32_t origin_port) {
    if (ended_ || !sess_) return fail(errc::closed, "ssh session over");
    auto id = sess_->conn().open_forwarded_tcpip(bound, port, origin_host, origin_port, out_);
    if (!id && sess_->closed()) {
        failed(id.err());
        return id;
    }
    flush();
    return id;
}

void ssh_endpoint::backpressure(bool on) {
    out_high_ = on;
    // A copy: a handler may detach itself.
    std::vector<channel_handler*> hs;
    hs.reserve(chans_.size());
    for (auto& [id, e] : chans_) hs.push_back(e.h);
    for (channel_handler* h : hs) h->session_backpressure(on);
}

}  // namespace ferry::link
