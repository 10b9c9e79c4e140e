// Consumer connections: every accepted socket starts here. Reads a request head, then either
// hands the socket to an agent session (`GET /tunnel` upgrade), or to the shard that serves the
// tunnel, or runs the request through a forwarded-tcpip channel of a local agent session.
//
// One request at a time per connection (pipelined requests wait in in_ with reading paused).
// Flow control, both ways:
//  * consumer -> agent: the rewritten head and body bytes go through a link::channel_pipe: what
//    the agent's window does not take waits there and reading pauses until `writable`.
//  * agent -> consumer: channel data is written to our output (the head rewritten, the body
//    linked); the pipe acknowledges it (reopening the agent's window) only while our queued
//    output is at or below its watermark.
// Timeouts: the head (slowloris), idle keep-alive, the queue wait, time to the first response
// byte, and the flush before close.
#include <algorithm>
#include <chrono>
#include <cstdio>

#include "proto/base/log.hh"
#include "proto/http1/writer.hh"
#include "relay/conn_limits.hh"
#include "relay/ingress.hh"
#include "relay/admission.hh"
#include "relay/agent_conn.hh"
#include "relay/agent_ws_conn.hh"
#include "relay/consumer_conn.hh"
#include "relay/shard_state.hh"

namespace ferry::relay {

namespace {

constexpr std::size_t kOutputWatermark = 1 << 20;
// Bytes read ahead (pipelined requests, or the start of a body not yet sent) before reading
// pauses.
constexpr std::size_t kPipelineBuffer = 64 * 1024;

std::int64_t unix_now() {
    return std::chrono::duration_cast<std::chrono::seconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}


// Calls put(slice) with what pass_through said to forward of s[from, from + p.consumed): all of
// it but a chunked body's trailer field lines (p.dropped), which are never forwarded.
template <class Put>
void forward_part(const slice& s, std::size_t from, const http1::progress& p, Put&& put) {
    if (p.consumed == 0) return;
    if (p.dropped.empty()) return put(s.sub(from, p.consumed));
    const auto at = static_cast<std::size_t>(p.dropped.data() - s.data());
    const std::size_t end = from + p.consumed, cut_end = at + p.dropped.size();
    if (at > from) put(s.sub(from, at - from));
    if (end > cut_end) put(s.sub(cut_end, end - cut_end));
}

http1::limits head_limits(const relay_config& o) {
    http1::limits l = o.head_limits;
    l.max_body = o.max_body_bytes ? o.max_body_bytes : ~std::uint64_t(0);
    return l;
}

}  // namespace

consumer_conn::consumer_conn(relay& r, reactor::shard& s, unsigned hops, conn_limits::slot slot,
                             bool authenticated)
    : r_(r),
      st_(r.state(s.id())),
      cfg_(st_.cfg),
      slot_(std::move(slot)),
      hops_(hops),
      timer_(s, [this] { on_timer(); }),
      again_(s, [this] {
          if (ph_ == phase::head && !waiting_reader_) step();
      }),
      parser_(head_limits(*cfg_)),
      req_body_(head_limits(*cfg_)),
      pipe_(*this),
      resp_parser_(http1::limits{}),
      resp_body_(http1::limits{.max_body = ~std::uint64_t(0)}) {
    set_output_watermark(kOutputWatermark);
    authenticated_ = authenticated;
}

consumer_conn::~consumer_conn() {
    unlist();
}

// ---- connection caps (conn_limits) and the shard's evict lists -------------------------------

void consumer_conn::enter(phase p) {
    ph_ = p;
    relist();
}

void consumer_conn::relist() {
    // In a list while waiting for a request; which one depends on whether a valid token was
    // ever presented. Joining (again) puts it at the back: least recently active goes first.
    evict_list* want = nullptr;
    if (!gone_ && ph_ == phase::head) want = authenticated_ ? &st_.idle : &st_.unauthenticated;
    if (want == listed_) return;
    unlist();
    if (!want) return;
    st_.listed.fetch_add(1, std::memory_order_relaxed);
    listed_ = want;
    list_prev_ = want->last;
    list_next_ = nullptr;
    if (want->last)
        want->last->list_next_ = this;
    else
        want->first = this;
    want->last = this;
}

void consumer_conn::unlist() {
    if (!listed_) return;
    st_.listed.fetch_sub(1, std::memory_order_relaxed);
    if (list_prev_)
        list_prev_->list_next_ = list_next_;
    else
        listed_->first = list_next_;
    if (list_next_)
        list_next_->list_prev_ = list_prev_;
    else
        listed_->last = list_prev_;
    list_prev_ = list_next_ = nullptr;
    listed_ = nullptr;
}

void consumer_conn::authenticated() {
    authenticated_ = true;
    relist();
}

bool consumer_conn::evictable() const noexcept {
    // Waiting for a request, with nothing of the next one received yet.
    return listed_ != nullptr && head_.empty() && in_.empty();
}

void consumer_conn::evict() {
    gone_ = true;
    unlist();
    ph_ = phase::draining;
    timer_.cancel();
    close(reactor::close_mode::abort);
    slot_.release();  // the room is needed now, not when the socket is gone
}

// ---- socket events -----------------------------------------------------------------------

void consumer_conn::on_open() {
    reactor::address peer_addr;
    if (auto p = peer()) {
        peer_addr = *p;
        std::string a = p->to_string();
        auto colon = a.rfind(':');
        if (colon != std::string::npos) a.resize(colon);
        if (a.size() > 2 && a.front() == '[') a = a.substr(1, a.size() - 2);
        client_ip_ = std::move(a);
        client_port_ = p->port();
        for (const reactor::ip_prefix& t : cfg_->trusted_proxies)
            if (t.contains(*p)) trusted_proxy_ = true;
    }
    // Just accepted (a connection handed over brings its count). A trusted proxy speaks for
    // many clients: the per-address cap does not apply to it.
    if (!slot_.counted() && !r_.admit(owner(), slot_, peer_addr, !trusted_proxy_, client_ip_)) {
        gone_ = true;
        ph_ = phase::draining;
        close(reactor::close_mode::abort);
        return;
    }
    relist();
    timer_.arm_after(cfg_->head_timeout);
}

void consumer_conn::on_data(slice s) {
    if (ph_ == phase::head) {
        if (head_.empty()) timer_.arm_after(cfg_->head_timeout);  // a head starts
        head_.append(reinterpret_cast<const char*>(s.data()), s.size());
        step();
        return;
    }
    if (ph_ == phase::draining) return;
    in_.append(std::move(s));
    if (ph_ == phase::streaming) pump_up();
    update_reading();
}

void consumer_conn::on_read_eof() {
    eof_ = true;
    if (ph_ == phase::head && head_.empty()) {
        close();
        return;
    }
    if (ph_ == phase::head) {
        // Heads already received are answered (a client may pipeline requests and then shut
        // its side); a partial head and then EOF has nothing to answer (step() closes).
        if (!waiting_reader_ && !handover_pending_) step();
        return;
    }
    // The consumer half-closed while its request is in flight: the request body must be
    // complete by now (else the request is truncated).
    if (ph_ == phase::streaming) pump_up();
}

void consumer_conn::on_output_high() { pipe_.on_output_high(); }

void consumer_conn::on_output_low() { pipe_.on_output_low(); }

void consumer_conn::on_output_drained() {
    // The consumer read every answer it had been sent: go on with its pipelined requests (or
    // with the hand-over that waited for the output to be sent).
    if (handover_pending_) {
        handover_pending_ = false;
        timer_.cancel();
        if (ph_ == phase::head) dispatch();
        return;
    }
    if (!waiting_reader_) return;
    waiting_reader_ = false;
    unread_answers_ = 0;
    update_reading();
    if (ph_ == phase::head) step();
}

void consumer_conn::on_close(const error&) {
    gone_ = true;
    unlist();
    slot_.release();
    timer_.cancel();
    again_.cancel();
    if (ph_ == phase::waiting) leave_queue();
    close_channel();
}

// ---- head, routing -------------------------------------------------------------------------

void consumer_conn::step() {
    auto p = parser_.parse(bytes(reinterpret_cast<const std::byte*>(head_.data()), head_.size()));
    if (p.need_more()) {
        update_reading();
        if (eof_) close();  // half-closed in the middle of a head: nothing to answer
        return;
    }
    // Every answer waits in our output until the consumer reads it. A request that arrives
    // while an earlier answer is still unsent is pipelined; a client that pipelines and never
    // reads would otherwise make the relay answer, and hold the answers, for as long as it
    // keeps sending (relay-made answers cost no window, unlike responses from an agent): after
    // max_pipelined_requests such answers, reading stops until the output is empty, and this
    // request waits (on_output_drained parses it again). A client that waits for each answer
    // never gets here with output pending.
    if (!p.failed()) {
        if (output_pending() == 0) {
            unread_answers_ = 0;
        } else if (++unread_answers_ > cfg_->max_pipelined_requests) {
            waiting_reader_ = true;
            update_reading();
            notify_output_drained();
            return;
        }
    }
    st_.new_request_id(request_id_);
    if (p.failed()) {
        ex_.consumer_keep_alive = false;
        return fail(ingress::kind_for_http_error(p.err.code), p.err.detail ? p.err.detail : "malformed request");
    }
    // Bytes after the head belong to the body (or to the next requests).
    if (p.consumed < head_.size()) {
        buffer_chain rest;
        rest.append_copy(std::string_view(head_).substr(p.consumed));
        rest.append(std::move(in_));
        in_ = std::move(rest);
        head_.resize(p.consumed);
    }
    const http1::request_head& h = parser_.head();
    ex_.consumer_ver = h.ver;
    ex_.consumer_keep_alive = h.keep_alive;
    ex_.method = std::string(h.method);
    ex_.head_request = h.method == "HEAD";
    ++requests_;
    dispatch();
}

void consumer_conn::dispatch() {
    const http1::request_head& h = parser_.head();
    admission_view view{*cfg_, *st_.verifier, st_.directory, st_.local, st_.limiter, r_.names(), owner().id()};
    admission_request rq{h, client_ip_};
    rq.hops = hops_;
    rq.rate_counted = ex_.rate_counted;
    rq.unix_now = unix_now();
    rq.now = owner().now();
    rq.limiter_now = std::chrono::duration<double>(owner().now().time_since_epoch()).count();
    rq.route_scratch = &route_scratch_;
    admission_decision d = admit_request(rq, view);
    if (d.authenticated) authenticated();
    if (d.rate_counted) {
        ex_.rate_counted = true;
        ex_.rate_key = std::move(d.rate_key);
    }
    if (!d.tunnel.empty()) {
        ex_.tunnel = std::move(d.tunnel);
        ex_.route = d.route;
    }
    switch (d.what) {
    case admission_decision::kind::reject: return fail(d.error, d.message, d.extra);
    case admission_decision::kind::agent_upgrade: return become_agent(std::move(d.sub), d.expires);
    case admission_decision::kind::hand_over: return hand_to(d.shard);
    case admission_decision::kind::serve: return start_exchange(d.session);
    case admission_decision::kind::queue: return wait_for_tunnel();
    }
}

void consumer_conn::become_agent(std::string sub, std::int64_t expires) {
    // The upgrade took one of the owner's agent slots (admission): the agent connection gives
    // it back when it ends.
    const std::uint64_t id = r_.names().next_session();
    gone_ = true;
    unlist();
    buffer_chain all;
    all.append_copy(head_);
    all.append(std::move(in_));
    relay* rp = &r_;
    auto st = hand_over(owner().id(), std::move(all),
                        [rp, sub, id, expires, slot = std::move(slot_)](reactor::shard& s) mutable {
                            return std::make_unique<agent_ws_conn>(*rp, s, sub, id, expires, std::move(slot));
                        });
    if (!st) {
        r_.names().remove_agent(sub);
        close(reactor::close_mode::abort);
    }
    timer_.cancel();
}

void consumer_conn::hand_to(unsigned shard) {
    // The tunnel lives on another shard: the socket and what was read go there, once the
    // answers queued here are sent (a hand-over waits for them, and a consumer that does not
    // read them must not hold the socket in between for ever).
    if (output_pending() > 0) {
        handover_pending_ = true;
        update_reading();
        timer_.arm_after(cfg_->close_timeout);
        notify_output_drained();
        return;
    }
    buffer_chain all;
    all.append_copy(head_);
    all.append(std::move(in_));
    relay* rp = &r_;
    const unsigned hops = hops_ + 1;
    const bool authed = authenticated_;
    gone_ = true;
    unlist();
    auto st = hand_over(shard, std::move(all), [rp, hops, authed, slot = std::move(slot_)](reactor::shard& s) mutable {
        return std::make_unique<consumer_conn>(*rp, s, hops, std::move(slot), authed);
    });
    if (!st) close(reactor::close_mode::abort);
    timer_.cancel();
}

void consumer_conn::wait_for_tunnel(bool at_limit) {
    auto& q = st_.waiting[ex_.tunnel];
    ex_.at_limit = at_limit;
    if (q.size() >= cfg_->queue_max) {
        return fail(ingress::error_kind::tunnel_busy,
                    at_limit ? "the tunnel's channels are all in use and its queue is full"
                             : "tunnel offline and its queue is full",
                    at_limit ? 1 : 5);
    }
    q.push_back(reactor::ref_ptr<consumer_conn>(this));
    enter(phase::waiting);
    auto wait = cfg_->queue_wait;
    auto it = st_.directory.find(ex_.tunnel);
    if (it != st_.directory.end() && it->second.state == name_state::kind::leased) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(it->second.until - owner().now());
        if (left < wait) wait = std::max(left, std::chrono::milliseconds(1));
    }
    timer_.arm_after(wait);
    FERRY_LOG(debug, "request queued", {"request_id", request_id_}, {"tunnel", ex_.tunnel},
              {"queued", std::uint64_t(q.size())}, {"wait_ms", std::int64_t(wait.count())});
    update_reading();
}

void consumer_conn::tunnel_changed() {
    if (ph_ != phase::waiting) return;
    enter(phase::head);  // parsed already: dispatch again with the new state
    timer_.cancel();
    dispatch();
}

void consumer_conn::leave_queue() {
    auto w = st_.waiting.find(ex_.tunnel);
    if (w == st_.waiting.end()) return;
    auto& v = w->second;
    v.erase(std::remove_if(v.begin(), v.end(), [this](auto& p) { return p.get() == this; }), v.end());
    if (v.empty()) st_.waiting.erase(w);
}

// ---- one exchange --------------------------------------------------------------------------

void consumer_conn::start_exchange(agent_conn* s) {
    const http1::request_head& h = parser_.head();
    auto grant = s->open_channel(*this, *this, ex_.tunnel, client_ip_, client_port_);
    if (!grant) {
        // At max_channels_per_tunnel: wait for one of its channels to end. Else the session is
        // ending (its names are about to be leased): wait for the next one.
        return wait_for_tunnel(grant.code() == errc::limit_exceeded);
    }
    ssh_ = s;
    ssh_keep_ = reactor::ref_ptr<reactor::connection>(&s->connection());
    pipe_.bind(s->endpoint(), grant->id, false);  // open below (a spare) or at channel_opened()
    ex_.spare = grant->ready;
    enter(phase::opening);
    // traceparent into a stack buffer: no allocation per request.
    char tp[ingress::traceparent_size];
    {
        std::byte rnd[24];
        st_.random(rnd);
        ingress::make_traceparent(ingress::incoming_traceparent(h), std::span<const std::byte, 24>(rnd), tp);
    }
    ingress::forward_context ctx;
    ctx.client_ip = client_ip_;
    ctx.trusted_proxy = trusted_proxy_;
    ctx.tls = cfg_->tls_context != nullptr;
    ctx.request_id = request_id_;
    ctx.traceparent = std::string_view(tp, sizeof tp);
    ctx.keep_authorization = cfg_->forward_authorization;
    buffer_chain head;
    if (auto st = ingress::write_upstream_head(head, h, ex_.route, ctx); !st) {
        return fail(ingress::error_kind::bad_request, "request head cannot be forwarded");
    }
    while (!head.empty()) pipe_.to_channel(head.pop_front());
    req_body_.start(h.body);
    ex_.req_body_done = h.body.kind == http1::body_kind::none;
    resp_parser_.reset();
    resp_parser_.set_request_method(ex_.method);
    timer_.arm_after(cfg_->first_byte_timeout);
    if (grant->ready) return channel_opened();  // a spare: the head goes out now
    update_reading();
}

void consumer_conn::channel_opened() {
    if (ph_ != phase::opening) return;
    enter(phase::streaming);
    pipe_.open();
    pump_up();
    update_reading();
}

void consumer_conn::channel_failed(ssh::open_failure why) {
    detach();
    if (why == ssh::open_failure::resource_shortage) {
        return fail(ingress::error_kind::tunnel_offline, "the agent has no capacity left", 1);
    }
    fail(ingress::error_kind::bad_gateway, why == ssh::open_failure::connect_failed
                                                ? "the agent could not reach its target"
                                                : "the agent refused the request");
}

void consumer_conn::pump_up() {
    // Request body bytes from in_ into the pipe (linked, not copied), as far as the framing says.
    while (!ex_.req_body_done && !in_.empty()) {
        const slice& f = in_.front();
        auto p = req_body_.pass_through(f.view());
        if (p.failed()) {
            ex_.consumer_keep_alive = false;
            if (!ex_.any_response) {
                const bool too_big = p.err.code == errc::http_body_too_large;
                return fail(too_big ? ingress::error_kind::payload_too_large : ingress::error_kind::bad_request,
                            too_big ? "request body too large" : "malformed request body");
            }
            return abort_now();
        }
        if (p.consumed > 0) {
            forward_part(f, 0, p, [this](slice part) { pipe_.to_channel(std::move(part)); });
            in_.consume(p.consumed);
        }
        if (p.done()) ex_.req_body_done = true;
        if (p.consumed == 0 && !p.done()) break;
    }
    if (!ex_.req_body_done && eof_ && in_.empty()) {
        // The consumer closed its side in the middle of the body: the request is truncated.
        return abort_now();
    }
    // The pipe sends what the agent's window takes and pauses reading while the rest waits.
    update_reading();
}

void consumer_conn::update_reading() {
    // Read when a head is expected, or while the request body flows and the agent takes it.
    // Otherwise (queued, opening, waiting for the response) reading stays on until
    // kPipelineBuffer bytes of what follows are held: a keep-alive client sends nothing until
    // it has its answer, so pausing there cost a cancel and a re-armed receive per request,
    // and a consumer that goes away is noticed at once (its channel is closed).
    bool want;
    if (waiting_reader_ || handover_pending_) {
        want = false;  // answers pile up unread: wait for the consumer (on_output_drained)
    } else if (ph_ == phase::head) {
        // Room for one whole head; pipelined requests beyond it wait in the socket until the
        // ones read are answered (reading faster than answering would buffer without bound,
        // and each pipelined head costs a copy of what follows it).
        want = head_.size() + in_.size() <= cfg_->head_limits.max_head_bytes;
    } else if (ph_ == phase::streaming && !ex_.req_body_done) {
        want = true;  // the pipe pauses reading while the agent's window (or link) holds the body back
    } else {
        want = ph_ != phase::draining && in_.size() < kPipelineBuffer;
    }
    if (want == !paused_) return;
    paused_ = !want;
    if (paused_) {
        pause_reading();
    } else {
        resume_reading();
    }
}

void consumer_conn::channel_writable() { pipe_.pump(); }

void consumer_conn::channel_data(slice piece) {
    const std::size_t n = piece.size();
    // The last bytes of a response may finish the exchange and start the next pipelined
    // request on a new channel: these bytes are acknowledged only on their own channel (a
    // channel that is gone needs no credit).
    const std::uint64_t gen = pipe_.generation();
    if (ph_ == phase::opening || ph_ == phase::streaming) response_bytes(std::move(piece));
    if (pipe_.generation() == gen) pipe_.delivered(n);  // acknowledged once our output is low
}

void consumer_conn::response_bytes(slice piece) {
    if (!ex_.resp_started) {
        // Heads are small: collect them contiguously (1xx heads first, then the final one).
        resp_head_.append(reinterpret_cast<const char*>(piece.data()), piece.size());
        for (;;) {
            auto p = resp_parser_.parse(bytes(reinterpret_cast<const std::byte*>(resp_head_.data()), resp_head_.size()));
            if (p.need_more()) return;
            if (p.failed()) {
                if (!ex_.any_response) return fail(ingress::error_kind::upstream_bad_response, "the upstream sent a malformed response");
                return abort_now();
            }
            const http1::response_head& h = resp_parser_.head();
            buffer_chain* out = output();
            if (!out) return;
            if (h.status_code >= 100 && h.status_code < 200) {
                // 100 Continue, 103 Early Hints (a 101 fails: upgrades are not relayed).
                if (!ingress::write_consumer_response_head(*out, h, ex_.consumer_ver, false, request_id_)) {
                    return fail(ingress::error_kind::upstream_bad_response, "the upstream switched protocols");
                }
                commit_output();
                ex_.any_response = true;
                resp_head_.erase(0, p.consumed);
                resp_parser_.reset();
                continue;
            }
            timer_.cancel();  // first byte arrived
            ex_.resp_status = h.status_code;
            ex_.resp_keep_alive = ingress::consumer_keep_alive(h, ex_.consumer_ver, ex_.consumer_keep_alive);
            ex_.dechunk = ingress::consumer_needs_dechunk(h, ex_.consumer_ver);
            if (auto st = ingress::write_consumer_response_head(*out, h, ex_.consumer_ver, ex_.resp_keep_alive, request_id_); !st) {
                return fail(ingress::error_kind::upstream_bad_response, "the upstream's response head cannot be forwarded");
            }
            commit_output();
            ex_.any_response = true;
            ex_.resp_started = true;
            resp_body_.start(h.body);
            std::string rest = resp_head_.substr(p.consumed);
            resp_head_.clear();
            resp_head_.shrink_to_fit();
            if (h.body.kind == http1::body_kind::none) return finish_exchange();
            if (!rest.empty()) {
                slice s = slice::copy_of(bytes(reinterpret_cast<const std::byte*>(rest.data()), rest.size()));
                return response_bytes(std::move(s));
            }
            return;
        }
    }
    if (ex_.resp_done) return;  // bytes after the end of the body: dropped
    bytes v = piece.view();
    std::size_t off = 0;
    while (off < v.size() && !ex_.resp_done) {
        auto p = ex_.dechunk ? resp_body_.decode(v.subspan(off)) : resp_body_.pass_through(v.subspan(off));
        if (p.failed()) return abort_now();
        if (ex_.dechunk) {
            if (!p.data.empty()) {
                const auto at = static_cast<std::size_t>(p.data.data() - piece.data());
                (void)send(piece.sub(at, p.data.size()));
            }
        } else {
            forward_part(piece, off, p, [this](slice part) { (void)send(std::move(part)); });
        }
        off += p.consumed;
        if (p.done()) {
            ex_.resp_done = true;
            return finish_exchange();
        }
        if (p.consumed == 0) break;
    }
}

void consumer_conn::channel_eof() {
    if (ph_ != phase::opening && ph_ != phase::streaming) return;
    upstream_ended();
}

void consumer_conn::channel_closed() {
    detach();
    if (ph_ == phase::opening || ph_ == phase::streaming) upstream_ended();
}

void consumer_conn::upstream_ended() {
    if (!ex_.resp_started) {
        if (!ex_.any_response) return fail(ingress::error_kind::bad_gateway, "the upstream closed without a response");
        return abort_now();
    }
    if (ex_.resp_done) return;
    auto p = resp_body_.finish();
    if (p.done()) {
        ex_.resp_done = true;
        return finish_exchange();
    }
    abort_now();  // truncated: the consumer must not see a clean end
}

void consumer_conn::session_gone() {
    detach();
    if (ph_ == phase::opening || ph_ == phase::streaming) {
        if (!ex_.any_response) return fail(ingress::error_kind::bad_gateway, "the agent disconnected");
        abort_now();
    }
}

void consumer_conn::finish_exchange() {
    close_channel();
    timer_.cancel();
    FERRY_LOG(debug, "request", {"request_id", request_id_}, {"tunnel", ex_.tunnel}, {"method", ex_.method},
              {"status", ex_.resp_status}, {"shard", owner().id()}, {"spare_channel", ex_.spare});
    // After the consumer half-closed, requests it pipelined before are still answered.
    const bool again = ex_.resp_keep_alive && ex_.req_body_done && (!eof_ || !in_.empty());
    if (!again) {
        reset_request();
        return drain();
    }
    next_request();
}

void consumer_conn::next_request() {
    reset_request();
    enter(phase::head);
    timer_.arm_after(idle_limit());
    // Pipelined bytes already here start the next head (which must then come in time).
    if (!in_.empty()) move_into_head();
    if (!head_.empty()) timer_.arm_after(cfg_->head_timeout);
    update_reading();
    if (!head_.empty()) return next_pipelined();
    pipelined_ = 0;
    if (eof_) drain();  // half-closed and nothing more to answer
}

void consumer_conn::move_into_head() {
    while (!in_.empty()) {
        slice f = in_.pop_front();
        head_.append(reinterpret_cast<const char*>(f.data()), f.size());
    }
}

void consumer_conn::reset_request() {
    head_.clear();
    parser_.reset();
    resp_head_.clear();
    resp_parser_.reset();
    ex_ = exchange{};
    hops_ = 0;  // the hand-over budget is per request: the next one may need its own
}

void consumer_conn::fail(ingress::error_kind k, std::string_view message, std::uint32_t retry_after) {
    ingress::error_extra x;
    x.retry_after_s = retry_after;
    fail(k, message, x);
}

void consumer_conn::fail(ingress::error_kind k, std::string_view message, const ingress::error_extra& extra) {
    close_channel();
    timer_.cancel();
    if (ph_ == phase::waiting) leave_queue();
    FERRY_LOG(debug, "request refused", {"request_id", request_id_}, {"tunnel", printable(ex_.tunnel)},
              {"code", ingress::info(k).code}, {"message", message});
    // Keep the connection only when no request body is left unread. Whatever the phase: a
    // request refused while routing (404, 401, queue timeout, ...) may have its body already
    // in in_, and those bytes must never be read as the next request (smuggling). keep can
    // only be true after a head was parsed (a malformed head or a head timeout clears
    // ex_.consumer_keep_alive), so parser_.head() is this request's.
    const bool body_left = !ex_.req_body_done && parser_.head().body.kind != http1::body_kind::none;
    // A connection that has never presented a valid token is closed after a refusal that is
    // its own fault (4xx): refusing costs the relay little, but a client that only collects
    // refusals (no token, a bad one, an unknown tunnel) gets one per connection, not a stream
    // of them, and does not keep a socket for free.
    const bool client_fault = ingress::info(k).status < 500;
    const bool keep = ex_.consumer_keep_alive && !body_left && (!eof_ || !in_.empty()) &&
                      !(client_fault && !authenticated_) && k != ingress::error_kind::bad_request &&
                      k != ingress::error_kind::headers_too_large &&
                      k != ingress::error_kind::payload_too_large;
    if (buffer_chain* out = output()) {
        ingress::error_extra x = extra;
        x.consumer_version = ex_.consumer_ver;
        x.head_request = ex_.head_request;
        (void)ingress::write_error(*out, k, message, request_id_, keep, x);
        commit_output();
    }
    if (!keep) {
        reset_request();
        return drain();
    }
    // The request had no body (or it was all read): the next head may follow.
    next_request();
}

void consumer_conn::next_pipelined() {
    // Pipelined requests answered without a channel (errors) would otherwise recurse
    // fail() -> step() once per request: after a few in a row, go on from the loop.
    if (++pipelined_ <= 8) return step();
    pipelined_ = 0;
    again_.arm_after(std::chrono::milliseconds(0));
}

void consumer_conn::drain() {
    enter(phase::draining);
    in_.clear();
    timer_.arm_after(cfg_->close_timeout);
    close();
}

void consumer_conn::abort_now() {
    close_channel();
    if (ph_ == phase::waiting) leave_queue();
    enter(phase::draining);
    timer_.cancel();
    close(reactor::close_mode::abort);
}

std::chrono::milliseconds consumer_conn::idle_limit() const {
    // A connection that never presented a valid token is a cheap way to hold a socket: it gets
    // the short limit (anonymous consumers of a public tunnel too).
    return authenticated_ ? cfg_->idle_timeout : cfg_->unauthenticated_idle_timeout;
}

void consumer_conn::on_timer() {
    if (handover_pending_) {
        FERRY_LOG(debug, "hand-over given up: the consumer does not read its answers",
                  {"request_id", request_id_}, {"tunnel", ex_.tunnel}, {"unsent", std::uint64_t(output_pending())});
        return abort_now();
    }
    switch (ph_) {
    case phase::head:
        if (head_.empty()) {
            close();  // idle keep-alive connection
        } else {
            ex_.consumer_keep_alive = false;
            st_.new_request_id(request_id_);
            fail(ingress::error_kind::request_timeout, "request head not received in time");
        }
        break;
    case phase::waiting:  // leaves the queue
        if (ex_.at_limit) {
            fail(ingress::error_kind::tunnel_busy, "no channel of the tunnel became free in time", 1);
        } else {
            fail(ingress::error_kind::tunnel_offline, "tunnel offline", 5);
        }
        break;
    case phase::opening:
    case phase::streaming:
        if (!ex_.any_response) {
            ex_.consumer_keep_alive = false;
            fail(ingress::error_kind::gateway_timeout, "no response from the upstream in time");
        } else {
            abort_now();
        }
        break;
    case phase::draining: close(reactor::close_mode::abort); break;
    }
}

// ---- the channel ----------------------------------------------------------------------------

void consumer_conn::detach() {
    // Window credit belongs to the channel that is gone, never to the next one (the pipe
    // forgets it).
    pipe_.unbind();
    ssh_ = nullptr;
    ssh_keep_.reset();
}

void consumer_conn::close_channel() {
    if (!ssh_) return;
    agent_conn* s = ssh_;
    const std::uint32_t id = pipe_.id();
    auto keep = std::move(ssh_keep_);  // the agent's connection stays alive for the call
    detach();
    s->consumer_closed(id, *this);
}

}  // namespace ferry::relay
