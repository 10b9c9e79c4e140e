#include "tunnel/agent.hh"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <deque>
#include <random>
#include <unordered_map>

#include "proto/base/log.hh"
#include "proto/jwt/token.hh"
#include "proto/ssh/session.hh"
#include "reactor/shard.hh"
#include "tunnel/exchange_tracker.hh"
#include "tunnel/tls_transform.hh"
#include "tunnel/ws_client.hh"

namespace ferry::tunnel {

using reactor::close_mode;
using reactor::ref_ptr;

const char* to_string(agent_state s) noexcept {
    switch (s) {
    case agent_state::idle: return "idle";
    case agent_state::connecting: return "connecting";
    case agent_state::handshaking: return "handshaking";
    case agent_state::up: return "up";
    case agent_state::waiting: return "waiting";
    case agent_state::draining: return "draining";
    case agent_state::stopped: return "stopped";
    }
    return "?";
}

// ---- backoff ------------------------------------------------------------------------------------

backoff::backoff(backoff_policy p, std::function<double()> uniform) : p_(p), uniform_(std::move(uniform)) {
    if (p_.factor < 1.0) p_.factor = 1.0;
    if (p_.jitter < 0.0) p_.jitter = 0.0;
    if (p_.jitter > 1.0) p_.jitter = 1.0;
    if (p_.cap < p_.base) p_.cap = p_.base;
}

milliseconds backoff::jittered(double nominal) {
    const double u = uniform_ ? std::clamp(uniform_(), 0.0, 1.0) : 0.5;
    double d = nominal * (1.0 + p_.jitter * (2.0 * u - 1.0));
    d = std::clamp(d, 0.0, double(p_.cap.count()));
    return milliseconds(std::int64_t(std::llround(d)));
}

milliseconds backoff::next() {
    const unsigned k = step_;
    if (step_ < 64) ++step_;
    if (k == 0) return milliseconds(0);
    // base * factor^(k-1), computed without overflow past the cap.
    double nominal = double(p_.base.count());
    for (unsigned i = 1; i < k && nominal < double(p_.cap.count()); ++i) nominal *= p_.factor;
    nominal = std::min(nominal, double(p_.cap.count()));
    return jittered(nominal);
}

milliseconds backoff::at_cap() {
    step_ = 64;
    return jittered(double(p_.cap.count()));
}

// ---- helpers --------------------------------------------------------------------------------------

namespace {

std::uint64_t to_ms(reactor::timer::clock::time_point t) {
    return std::uint64_t(std::chrono::duration_cast<milliseconds>(t.time_since_epoch()).count());
}
reactor::timer::clock::time_point from_ms(std::uint64_t m) {
    return reactor::timer::clock::time_point(milliseconds(m));
}

void set_nodelay(int fd) {
    int one = 1;
    if (fd >= 0) (void)::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

// Peer-chosen text for logs: printable ASCII, bounded.
std::string printable(std::string_view s, std::size_t max = 200) {
    std::string o;
    for (char c : s.substr(0, max)) o += (c >= ' ' && c <= '~') ? c : '?';
    return o;
}

std::string host_header(const std::string& host, std::uint16_t port, bool tls) {
    std::string h = host.find(':') != std::string::npos ? "[" + host + "]" : host;  // IPv6 literal
    if ((tls && port != 443) || (!tls && port != 80)) h += ":" + std::to_string(port);
    return h;
}

}  // namespace

class agent_link;

// ---- one channel's target connection --------------------------------------------------------------

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

    ref_ptr<agent_link> link_;  // null once the channel or the session is gone
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

// ---- idle upstream connections -------------------------------------------------------------------

// Target connections whose last exchange left them reusable, per tunnel name, newest last (the
// newest is taken first, so the oldest age out). Shared by the agent, its links and the
// targets; the agent empties it when it finishes.
class target_pool {
public:
    target_pool(std::uint32_t max_per_tunnel, milliseconds idle) : max_(max_per_tunnel), idle_(idle) {}
    milliseconds idle_timeout() const noexcept { return idle_; }
    bool put(agent_target* t) {
        if (closed_) return false;
        auto& v = idle_by_name_[t->name()];
        if (v.size() >= max_) return false;
        v.push_back(ref_ptr<agent_target>(t));
        return true;
    }
    // The newest idle connection with at least half its idle time left (a spare channel it
    // goes to must close from the relay's side, well before the agent's idle limit); staler
    // ones close.
    ref_ptr<agent_target> take(const std::string& name, reactor::timer::clock::time_point now) {
        auto it = idle_by_name_.find(name);
        if (it == idle_by_name_.end()) return {};
        while (!it->second.empty()) {
            ref_ptr<agent_target> t = std::move(it->second.back());
            it->second.pop_back();
            if (t->idle_since() + idle_ / 2 > now) return t;
            t->idle_expired();
        }
        return {};
    }
    void remove(agent_target* t) {
        auto it = idle_by_name_.find(t->name());
        if (it == idle_by_name_.end()) return;
        auto& v = it->second;
        v.erase(std::remove_if(v.begin(), v.end(), [t](auto& p) { return p.get() == t; }), v.end());
    }
    // The agent is finishing: every idle connection closes, none is kept afterwards.
    void close_all() {
        closed_ = true;
        auto all = std::move(idle_by_name_);
        idle_by_name_.clear();
        for (auto& [name, v] : all)
            for (auto& t : v) t->idle_expired();
    }

private:
    std::uint32_t max_;
    milliseconds idle_;
    bool closed_ = false;
    std::unordered_map<std::string, std::vector<ref_ptr<agent_target>>> idle_by_name_;
};

// ---- the link: one WebSocket + SSH session to the relay ----------------------------------------------

class agent_link final : public ws_client_connection {
public:
    agent_link(reactor::shard& s, agent& a, ws_client_options wo, ssh::rng& rng, std::string token,
               std::string user);
    ~agent_link() override;

    void detach_agent() noexcept { agent_ = nullptr; }
    bool ssh_up() const noexcept { return sess_ && sess_->authenticated() && !ending_; }
    void begin_drain(bool now);
    // Ends the link at once (no DISCONNECT): used when the agent goes away.
    void abandon(const char* why);

    // ---- for targets ----
    void target_connected(agent_target* t);
    void target_failed(agent_target* t, const std::string& why);
    result<std::size_t> send_data(std::uint32_t id, bytes data);
    void consumed(std::uint32_t id, std::size_t n);
    void send_eof(std::uint32_t id);
    void target_closed(agent_target* t);
    // `t` (a kept connection) failed before answering: a new connection takes its channel
    // and sends `req` again. False when that cannot be done (the caller closes the channel).
    bool replay(agent_target* t, buffer_chain&& req, bool eof);
    bool output_high() const noexcept { return out_high_; }
    void count_to_target(std::size_t n) {
        if (agent_) agent_->stats_.bytes_to_target += n;
    }

private:
    // ws_client_connection
    void on_open() override;
    void on_ws_open() override;
    void on_ws_data(const ws::event& ev, slice payload) override;
    void on_ws_pong(bytes payload) override;
    void on_ws_closed(std::uint16_t code) override;
    void on_ws_refused(const ws_refusal& why) override;
    void on_output_high() override;
    void on_output_low() override;
    void on_close(const error& why) override;

    void on_session_event(const ssh::session_event& ev, const slice* in);
    void on_channel_event(const ssh::conn_event& ev, const slice* in);
    void on_open_request(const ssh::conn_event& ev);
    void send_forwards();
    void on_ssh_error(const error& e);
    const agent_tunnel* find_tunnel(std::string_view name) const {
        for (const agent_tunnel& t : opt_.tunnels)
            if (t.name == name) return &t;
        return nullptr;
    }
    agent_target* find(std::uint32_t id) {
        auto it = chans_.find(id);
        return it == chans_.end() ? nullptr : it->second.get();
    }
    // What the session wrote goes out as WebSocket messages; re-arms the session's tick.
    void flush_ssh();
    // Ends the link: targets aborted, then TCP aborted (`abort`: a dead or hostile peer) or the
    // WebSocket closed with `code` after whatever the session still had to say (DISCONNECT).
    void fail_link(std::string reason, bool abort, std::uint16_t code = ws::close_code::going_away);
    void release_targets();
    void finish_drain();
    void check_drained();
    std::uint64_t now() const { return to_ms(shard_.now()); }

    agent* agent_;
    reactor::shard& shard_;
    const agent_options opt_;  // a copy: the link may outlive its agent by a few events
    ssh::rng& rng_;
    std::string token_;
    std::string user_;
    std::shared_ptr<target_pool> pool_;  // null: upstream keep-alive off
    std::unique_ptr<ssh::session> sess_;
    buffer_chain sshout_;
    buffer_chain sink_;
    std::unordered_map<std::uint32_t, ref_ptr<agent_target>> chans_;
    std::deque<std::string> pending_forwards_;   // sent, awaiting the relay's reply (in order)
    std::size_t next_forward_ = 0;               // the next of opt_.tunnels to ask for
    static constexpr std::size_t kForwardWindow = 32;
    std::vector<std::string> forwards_ok_;
    unsigned pending_cancels_ = 0;
    unsigned keepalives_out_ = 0;
    reactor::timer ssh_timer_, ping_timer_, pong_timer_, keepalive_timer_, setup_timer_, drain_timer_;
    reactor::timer::clock::time_point ping_sent_{};
    bool out_high_ = false;
    bool draining_ = false;
    bool drain_finished_ = false;
    bool ending_ = false;
    bool reported_ = false;
    // What on_close reports to the agent.
    std::string reason_;
    bool fatal_ = false;
    bool at_cap_ = false;
    std::uint32_t retry_after_ = 0;
};

// ---- agent_target implementation ----------------------------------------------------------------

agent_target::agent_target(reactor::shard& s, agent_link* link, std::uint32_t id, std::string name,
                           const agent_options& o, std::shared_ptr<target_pool> pool)
    : link_(link), pool_(std::move(pool)), id_(id), name_(std::move(name)), watermark_(o.target_watermark),
      close_timeout_(o.timings.close_timeout), timer_(s, [this] { on_timer(); }) {
    idle_timeout_ = o.timings.upstream_idle;
    set_output_watermark(watermark_);
    timer_.arm_after(o.timings.target_connect_timeout);
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
        if (link_->output_high()) backpressure(true);
        return;
    }
    watch_unused();
    link_->target_connected(this);
    if (link_ && link_->output_high()) backpressure(true);
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
        link_.reset();
        close(close_mode::abort);
    } else if (closing_) {
        close(close_mode::abort);  // a target that stopped reading must not hold the socket
    } else if (owed_ > 0) {
        settle();
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
    to_ssh_.append(std::move(s));
    pump();
}

void agent_target::on_read_eof() {
    if (pooled_) {  // the upstream closed an idle connection (its keep-alive timeout)
        idle_expired();
        return;
    }
    if (try_replay()) return;
    if (pool_) exchange_.response_eof();
    eof_in_ = true;
    pump();
    maybe_finish();
}

void agent_target::pump() {
    if (!link_ || !opened_) return;
    while (!to_ssh_.empty()) {
        const std::size_t len = to_ssh_.front().size();
        auto n = link_->send_data(id_, to_ssh_.front().view());
        if (!n || !link_) {  // the channel takes no more data (closing), or the session ended
            to_ssh_.clear();
            break;
        }
        to_ssh_.consume(*n);
        if (*n < len) break;
    }
    const bool waiting = !to_ssh_.empty();
    if (waiting != window_pause_) {
        window_pause_ = waiting;
        if (waiting) pause_reading();
        else resume_reading();
    }
    if (!waiting && eof_in_ && !eof_sent_ && link_) {
        eof_sent_ = true;
        link_->send_eof(id_);
    }
}

void agent_target::ssh_data(slice piece) {
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
        owed_ += n;
        settle();
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
    (void)send(std::move(piece));  // errc::closed once closing: nowhere to go, nothing owed
    owed_ += n;
    settle();
}

void agent_target::settle() {
    if (above_high_) return;  // on_output_low repays
    if (output_pending() <= watermark_) {
        repay();
    } else if (!closing_) {
        // Over the watermark without on_output_high yet (raised at the end of the loop
        // iteration): look again shortly.
        timer_.arm_after(milliseconds(1));
    }
}

void agent_target::repay() {
    if (owed_ == 0 || !link_) return;
    link_->consumed(id_, owed_);
    owed_ = 0;
}

void agent_target::ssh_eof() {
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
    if (eof_out_ && eof_sent_ && !closing_) {
        closing_ = true;
        timer_.arm_after(close_timeout_);
        close(close_mode::flush);
    }
}

bool agent_target::keep_for_next() const {
    return pool_ && opened_ && !closing_ && !eof_in_ && !eof_out_ && to_ssh_.empty() &&
           output_pending() == 0 && (exchange_.reusable() || unused_);
}

void agent_target::channel_closed() {
    link_.reset();
    if (!opened_) {
        close(close_mode::abort);
        return;
    }
    if (keep_for_next() && pool_->put(this)) {
        // Idle until the next channel of this tunnel; reading stays on so that the upstream
        // closing it (or saying anything) is seen at once.
        pooled_ = true;
        unused_ = false;
        owed_ = 0;
        to_ssh_.clear();
        // Idle counts from the last byte, not from now: a connection that already sat unused
        // under a spare channel must not get a second full idle period.
        timer_.arm_at(last_used_ + pool_->idle_timeout());
        if (window_pause_ || link_pause_) {
            window_pause_ = link_pause_ = false;
            resume_reading();
        }
        return;
    }
    closing_ = true;
    timer_.arm_after(close_timeout_);
    close(close_mode::flush);
}

void agent_target::ssh_gone() {
    link_.reset();
    close(close_mode::abort);
}

void agent_target::backpressure(bool on) {
    if (on == link_pause_) return;
    link_pause_ = on;
    if (on) pause_reading();
    else resume_reading();
}

void agent_target::bind(agent_link* link, std::uint32_t id) {
    pooled_ = false;
    timer_.cancel();
    link_ = ref_ptr<agent_link>(link);
    id_ = id;
    exchange_.reset();
    eof_in_ = eof_sent_ = eof_out_ = false;
    owed_ = 0;
    reused_ = true;
    replay_.clear();
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
    if (owed_ > 0) l->consumed(id_, owed_);  // what this connection took, acknowledged
    owed_ = 0;
    if (!l->replay(this, std::move(replay_), eof_out_)) return false;
    link_.reset();
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

// ---- agent_link implementation ----------------------------------------------------------------------

agent_link::agent_link(reactor::shard& s, agent& a, ws_client_options wo, ssh::rng& rng, std::string token,
                       std::string user)
    : ws_client_connection(s, std::move(wo), rng), agent_(&a), shard_(s), opt_(a.opt_), rng_(rng),
      token_(std::move(token)), user_(std::move(user)), pool_(a.pool_),
      ssh_timer_(s, [this] {
          if (!sess_ || ending_) return;
          auto ev = sess_->tick(sshout_, now());
          if (!ev) return on_ssh_error(ev.err());
          on_session_event(*ev, nullptr);
          flush_ssh();
      }),
      ping_timer_(s, [this] {
          if (ending_) return;
          ping_sent_ = shard_.now();
          (void)send_ping({});
          ping_timer_.arm_after(opt_.timings.ws_ping_interval);
      }),
      pong_timer_(s, [this] { fail_link("no WebSocket pong within the pong timeout", true); }),
      keepalive_timer_(s, [this] {
          if (!ssh_up()) return;
          if (keepalives_out_ >= opt_.timings.keepalive_max_outstanding) {
              fail_link("SSH keepalives unanswered", true);
              return;
          }
          if (auto st = sess_->conn().send_keepalive(sshout_); !st) return on_ssh_error(st.err());
          ++keepalives_out_;
          flush_ssh();
          keepalive_timer_.arm_after(opt_.timings.keepalive_interval);
      }),
      setup_timer_(s, [this] { fail_link("SSH session not up within the SSH timeout", true); }),
      drain_timer_(s, [this] {
          if (!chans_.empty()) {
              FERRY_LOG(warn, "drain timeout: abandoning channels", {"channels", std::uint64_t(chans_.size())});
          }
          finish_drain();
      }) {}

agent_link::~agent_link() { ssh::wipe(mut_bytes(reinterpret_cast<std::byte*>(token_.data()), token_.size())); }

void agent_link::on_open() {
    set_nodelay(fd());
    FERRY_LOG(debug, "relay tcp connected");
    ws_client_connection::on_open();
}

void agent_link::on_ws_open() {
    if (const tls::session* t = tls_of(*this)) {
        FERRY_LOG(info, "relay tls established", {"version", t->version_name()}, {"cipher", t->cipher_name()},
                  {"alpn", t->alpn()});
    }
    FERRY_LOG(info, "websocket upgraded", {"path", opt_.relay_path});
    if (agent_) agent_->state_ = agent_state::handshaking;

    ssh::session_config c;
    c.transport.self = ssh::role::client;
    c.transport.random = &rng_;
    c.transport.verifier = agent_ ? &agent_->verifier_ : nullptr;
    c.auth_client.user = user_;
    c.auth_client.password = token_;
    c.connection.limits.max_channels = opt_.max_channels;
    if (!c.transport.verifier) {
        fail_link("agent gone", true);
        return;
    }
    sess_ = std::make_unique<ssh::session>(std::move(c));
    if (auto st = sess_->start(sshout_, now()); !st) return on_ssh_error(st.err());
    flush_ssh();
    setup_timer_.arm_after(opt_.timings.ssh_timeout);
    ping_timer_.arm_after(opt_.timings.ws_ping_interval);
    pong_timer_.arm_after(opt_.timings.ws_pong_timeout);
}

void agent_link::on_ws_data(const ws::event& ev, slice payload) {
    if (ending_ || !sess_) return;
    if (ev.op != ws::opcode::binary) {
        fail_link("relay sent a text message (SSH travels in binary messages)", false,
                  ws::close_code::unsupported_data);
        return;
    }
    mut_bytes in = payload.mut_view();
    const std::uint64_t t = now();
    while (!ending_ && sess_) {
        auto sev = sess_->feed(in, sshout_, t);
        if (!sev) {
            on_ssh_error(sev.err());
            return;
        }
        if (sev->type == ssh::session_event_type::need_more) break;
        on_session_event(*sev, &payload);
    }
    flush_ssh();
}

void agent_link::on_ws_pong(bytes) {
    const auto t = shard_.now();
    if (agent_ && ping_sent_.time_since_epoch().count() != 0) {
        agent_->stats_.last_rtt_ms =
            std::uint32_t(std::chrono::duration_cast<milliseconds>(t - ping_sent_).count());
    }
    if (!ending_) pong_timer_.arm_after(opt_.timings.ws_pong_timeout);
}

void agent_link::on_ws_closed(std::uint16_t code) {
    if (drain_finished_) return;  // our own close 1000 completing
    if (reason_.empty()) reason_ = "WebSocket closed by the relay (code " + std::to_string(code) + ")";
    ending_ = true;
    release_targets();
}

void agent_link::on_ws_refused(const ws_refusal& r) {
    ending_ = true;
    if (r.status != 0) {
        reason_ = "relay refused the upgrade: HTTP " + std::to_string(r.status);
        if (!r.code.empty()) reason_ += " " + r.code;
        if (!r.message.empty()) reason_ += ": " + r.message;
        retry_after_ = r.retry_after;
        if (r.status == 401 || r.status == 403) {
            at_cap_ = true;
            FERRY_LOG(error, "relay refused the agent's token: check --token/--token-file (not retried soon)",
                      {"status", r.status}, {"code", r.code}, {"message", r.message});
        } else {
            FERRY_LOG(warn, "relay refused the upgrade", {"status", r.status}, {"code", r.code},
                      {"message", r.message}, {"retry_after", r.retry_after});
        }
    } else {
        reason_ = std::string(to_string(r.err.code)) + ": " + r.err.detail;
        if (r.err.code == errc::io && r.err.sys != 0) reason_ += std::string(" (") + std::strerror(r.err.sys) + ")";
    }
}

void agent_link::on_output_high() {
    out_high_ = true;
    for (auto& [id, t] : chans_) t->backpressure(true);
}

void agent_link::on_output_low() {
    out_high_ = false;
    for (auto& [id, t] : chans_) t->backpressure(false);
}

void agent_link::flush_ssh() {
    if (!sshout_.empty()) {
        if (ws_is_open()) {
            (void)send_binary(sshout_);  // errc::closed: the socket is going; nothing to save
        } else {
            sshout_.clear();
        }
    }
    if (!sess_ || ending_) return;
    std::uint64_t d = sess_->next_deadline();
    if (d == 0) {
        ssh_timer_.cancel();
        return;
    }
    const std::uint64_t t = now();
    if (d <= t) d = t + 20;  // a deadline already past must not make the timer spin
    ssh_timer_.arm_at(from_ms(d));
}

void agent_link::on_session_event(const ssh::session_event& ev, const slice* in) {
    switch (ev.type) {
    case ssh::session_event_type::need_more: break;
    case ssh::session_event_type::banner:
        FERRY_LOG(info, "relay banner", {"text", printable(ev.text, 512)});
        break;
    case ssh::session_event_type::authenticated: {
        setup_timer_.cancel();
        // The JWT is not needed any more on this link.
        ssh::wipe(mut_bytes(reinterpret_cast<std::byte*>(token_.data()), token_.size()));
        token_.clear();
        const ssh::algorithms& a = sess_->transport().negotiated();
        const std::string fp = ssh::fingerprint_sha256(sess_->transport().peer_host_key());
        FERRY_LOG(info, "ssh up", {"user", user_}, {"method", ev.method}, {"cipher", ssh::info(a.enc[0]).name},
                  {"host_key", fp}, {"strict_kex", sess_->transport().strict_kex() ? "yes" : "no"});
        if (agent_) {
            const known_hosts_verifier& v = agent_->verifier_;
            if (v.last() == known_hosts_verifier::outcome::learned) {
                FERRY_LOG(warn, "relay host key trusted on first use (pinned from now on)", {"relay", v.name()},
                          {"fingerprint", v.offered_fingerprint()}, {"known_hosts", opt_.known_hosts});
                if (!v.detail().empty()) FERRY_LOG(warn, "known_hosts not saved", {"detail", v.detail()});
            }
            agent_->link_up();
        }
        if (draining_) {
            begin_drain(false);
            break;
        }
        send_forwards();
        keepalive_timer_.arm_after(opt_.timings.keepalive_interval);
        break;
    }
    case ssh::session_event_type::channel: on_channel_event(ev.conn, in); break;
    case ssh::session_event_type::rekey_done:
        while (auto id = sess_->conn().writable_after_kex()) {
            if (agent_target* t = find(*id)) t->ssh_writable();
        }
        break;
    case ssh::session_event_type::disconnected:
        fail_link("relay sent DISCONNECT (" + std::string(ssh::to_string(ev.reason)) + "): " + printable(ev.text),
                  false);
        break;
    }
}

void agent_link::on_channel_event(const ssh::conn_event& ev, const slice* in) {
    using ssh::conn_event_type;
    switch (ev.type) {
    case conn_event_type::none:
    case conn_event_type::opened:
    case conn_event_type::open_failed: break;  // we open no channels
    case conn_event_type::global_reply:
        if (ev.request == ssh::global_kind::keepalive) {
            if (keepalives_out_ > 0) --keepalives_out_;
        } else if (ev.request == ssh::global_kind::cancel_tcpip_forward) {
            if (pending_cancels_ > 0) --pending_cancels_;
        } else if (!pending_forwards_.empty()) {
            std::string name = std::move(pending_forwards_.front());
            pending_forwards_.pop_front();
            if (ev.ok) {
                FERRY_LOG(info, "forward ok", {"tunnel", name});
                forwards_ok_.push_back(name);
                if (agent_) {
                    if (forwards_ok_.size() == 1) agent_->link_serving();
                    ++agent_->stats_.forwards_ok;
                }
            } else {
                FERRY_LOG(warn, "forward refused by the relay", {"tunnel", name});
                if (agent_) ++agent_->stats_.forwards_refused;
            }
            send_forwards();
        }
        break;
    case conn_event_type::open_request: on_open_request(ev); break;
    case conn_event_type::data: {
        const std::size_t n = ev.data.size();
        agent_target* t = ev.ext == 0 ? find(ev.id) : nullptr;
        if (!t) {  // extended data means nothing on a TCP channel: acknowledge and drop
            consumed(ev.id, n);
            break;
        }
        // Zero copy when decrypted in place in the receive buffer; else reassembled in the
        // transport's own buffer and copied.
        t->ssh_data(slice::part_or_copy(in, ev.data));
        break;
    }
    case conn_event_type::eof:
        if (agent_target* t = find(ev.id)) t->ssh_eof();
        break;
    case conn_event_type::closed:
        if (auto it = chans_.find(ev.id); it != chans_.end()) {
            auto t = std::move(it->second);
            chans_.erase(it);
            t->channel_closed();
            check_drained();
        }
        break;
    case conn_event_type::writable:
        if (agent_target* t = find(ev.id)) t->ssh_writable();
        break;
    }
}

void agent_link::on_open_request(const ssh::conn_event& ev) {
    const ssh::open_info& o = ev.open;
    auto refuse = [&](ssh::open_failure why, const char* text) {
        if (agent_) ++agent_->stats_.channels_refused;
        if (auto st = sess_->conn().refuse_open(ev.id, why, text, sshout_); !st) on_ssh_error(st.err());
    };
    if (o.type != "forwarded-tcpip") {
        FERRY_LOG(warn, "channel refused: not forwarded-tcpip", {"type", printable(o.type, 64)});
        return refuse(ssh::open_failure::unknown_channel_type, "only forwarded-tcpip channels are served");
    }
    const agent_tunnel* tun = find_tunnel(o.host);
    if (!tun) {
        FERRY_LOG(warn, "channel refused: tunnel not configured", {"tunnel", printable(o.host, 253)});
        return refuse(ssh::open_failure::administratively_prohibited, "tunnel not configured on this agent");
    }
    if (draining_) {
        FERRY_LOG(info, "channel refused: agent shutting down", {"tunnel", tun->name});
        return refuse(ssh::open_failure::administratively_prohibited, "agent shutting down");
    }
    if (pool_) {
        if (ref_ptr<agent_target> kept = pool_->take(tun->name, shard_.now())) {
            // A kept upstream connection: no connect, the channel is confirmed at once.
            kept->bind(this, ev.id);
            chans_[ev.id] = kept;
            if (agent_) ++agent_->stats_.upstream_reused;
            target_connected(kept.get());
            if (output_high()) kept->backpressure(true);
            return;
        }
    }
    auto up = std::make_unique<agent_target>(shard_, this, ev.id, tun->name, opt_, pool_);
    auto c = shard_.connect(tun->target, std::move(up));
    if (c && agent_) ++agent_->stats_.upstream_connects;
    if (!c) {
        FERRY_LOG(warn, "channel refused: cannot connect to target", {"tunnel", tun->name},
                  {"target", tun->target_text}, {"error", c.err().detail});
        return refuse(ssh::open_failure::connect_failed, "cannot connect to the target");
    }
    FERRY_LOG(debug, "channel opening", {"tunnel", tun->name}, {"target", tun->target_text},
              {"origin", printable(o.origin_host, 64)}, {"origin_port", o.origin_port});
    chans_[ev.id] = ref_ptr<agent_target>(static_cast<agent_target*>(*c));
}

void agent_link::send_forwards() {
    // One tcpip-forward per tunnel, at most kForwardWindow awaiting their replies (the session
    // bounds our outstanding global requests; keepalives need room too): the rest go out as
    // replies come back, so an agent with many tunnels registers them all.
    while (!ending_ && !draining_ && sess_ && next_forward_ < opt_.tunnels.size() &&
           pending_forwards_.size() < kForwardWindow) {
        const agent_tunnel& t = opt_.tunnels[next_forward_];
        if (auto st = sess_->conn().request_tcpip_forward(t.name, opt_.forward_port, sshout_); !st) {
            return on_ssh_error(st.err());
        }
        pending_forwards_.push_back(t.name);
        ++next_forward_;
    }
}

void agent_link::target_connected(agent_target* t) {
    if (ending_ || !sess_) return;
    if (auto st = sess_->conn().confirm_open(t->id(), sshout_); !st) {
        if (sess_->closed()) return on_ssh_error(st.err());
    }
    if (agent_) ++agent_->stats_.channels;
    FERRY_LOG(debug, "channel open", {"tunnel", t->name()}, {"id", t->id()});
    flush_ssh();
}

void agent_link::target_failed(agent_target* t, const std::string& why) {
    auto it = chans_.find(t->id());
    if (it == chans_.end() || it->second.get() != t) return;
    auto keep = std::move(it->second);
    chans_.erase(it);
    if (ending_ || !sess_) return;
    const agent_tunnel* tun = find_tunnel(t->name());
    FERRY_LOG(warn, "channel refused: target unreachable", {"tunnel", t->name()},
              {"target", tun ? tun->target_text : std::string()}, {"error", why});
    if (agent_) ++agent_->stats_.channels_refused;
    if (auto st = sess_->conn().refuse_open(t->id(), ssh::open_failure::connect_failed, "target unreachable", sshout_);
        !st && sess_->closed()) {
        return on_ssh_error(st.err());
    }
    flush_ssh();
    check_drained();
}

result<std::size_t> agent_link::send_data(std::uint32_t id, bytes data) {
    if (ending_ || !sess_) return fail(errc::closed, "session over");
    if (data.empty()) return std::size_t(0);
    auto n = sess_->conn().send_data(id, data, sshout_);
    if (n) {
        if (agent_) agent_->stats_.bytes_from_target += *n;
    } else if (sess_->closed()) {
        on_ssh_error(n.err());
        return n;
    }
    flush_ssh();
    return n;
}

void agent_link::consumed(std::uint32_t id, std::size_t n) {
    if (ending_ || !sess_) return;
    if (auto st = sess_->conn().consumed(id, n, sshout_); !st && sess_->closed()) return on_ssh_error(st.err());
    flush_ssh();
}

void agent_link::send_eof(std::uint32_t id) {
    if (ending_ || !sess_) return;
    if (auto st = sess_->conn().send_eof(id, sshout_); !st && sess_->closed()) return on_ssh_error(st.err());
    flush_ssh();
}

bool agent_link::replay(agent_target* t, buffer_chain&& req, bool eof) {
    auto it = chans_.find(t->id());
    if (it == chans_.end() || it->second.get() != t || ending_ || !sess_) return false;
    const agent_tunnel* tun = find_tunnel(t->name());
    if (!tun) return false;
    auto fresh = std::make_unique<agent_target>(shard_, this, t->id(), t->name(), opt_, pool_);
    fresh->prepare_replay(std::move(req), eof);
    auto c = shard_.connect(tun->target, std::move(fresh));
    if (!c) return false;
    it->second = ref_ptr<agent_target>(static_cast<agent_target*>(*c));
    FERRY_LOG(info, "upstream closed a kept connection before answering: request sent again on a new one",
              {"tunnel", t->name()}, {"target", tun->target_text});
    if (agent_) {
        ++agent_->stats_.upstream_replays;
        ++agent_->stats_.upstream_connects;
    }
    return true;
}

void agent_link::target_closed(agent_target* t) {
    auto it = chans_.find(t->id());
    if (it == chans_.end() || it->second.get() != t) return;
    // The id stays reserved in the session until the peer's CLOSE; the target is done.
    auto keep = std::move(it->second);
    chans_.erase(it);
    if (!ending_ && sess_) {
        if (auto st = sess_->conn().close(t->id(), sshout_); !st && sess_->closed()) return on_ssh_error(st.err());
        flush_ssh();
    }
    check_drained();
}

void agent_link::on_ssh_error(const error& e) {
    if (e.code == errc::ssh_host_key && agent_) {
        const known_hosts_verifier& v = agent_->verifier_;
        if (v.last() == known_hosts_verifier::outcome::mismatch) {
            FERRY_LOG(error,
                      "RELAY HOST KEY MISMATCH: the relay's SSH host key is not the one on record. "
                      "Someone may be intercepting the connection, or the relay's key changed; if the "
                      "change is expected, remove the old line from the known_hosts file.",
                      {"relay", v.name()}, {"expected", v.expected_fingerprints()},
                      {"offered", v.offered_fingerprint()}, {"known_hosts", opt_.known_hosts});
            fatal_ = true;
            reason_ = "host key mismatch";
        } else {
            FERRY_LOG(error, "relay host key refused", {"relay", v.name()}, {"offered", v.offered_fingerprint()},
                      {"detail", v.detail()});
            fatal_ = true;
            reason_ = "host key refused: " + v.detail();
        }
    }
    fail_link(std::string("SSH: ") + to_string(e.code) + ": " + e.detail, false);
}

void agent_link::fail_link(std::string reason, bool abort, std::uint16_t code) {
    if (ending_) return;
    ending_ = true;
    if (reason_.empty()) reason_ = std::move(reason);
    release_targets();
    ssh_timer_.cancel();
    ping_timer_.cancel();
    pong_timer_.cancel();
    keepalive_timer_.cancel();
    setup_timer_.cancel();
    drain_timer_.cancel();
    if (abort) {
        close(close_mode::abort);
        return;
    }
    // A DISCONNECT the session wrote is still in sshout_: send it, then close.
    if (!sshout_.empty() && ws_is_open()) (void)send_binary(sshout_);
    sshout_.clear();
    if (ws_is_open()) {
        ws_close(code, code == ws::close_code::going_away ? "agent closing the session" : "binary messages only");
    } else {
        close(close_mode::flush);
    }
}

void agent_link::abandon(const char* why) {
    if (reason_.empty()) reason_ = why;
    fail_link(why, true);
}

void agent_link::release_targets() {
    auto chans = std::move(chans_);
    chans_.clear();
    for (auto& [id, t] : chans) t->ssh_gone();
}

void agent_link::begin_drain(bool now_) {
    draining_ = true;
    if (ending_) return;
    if (!ssh_up()) {
        // Not serving anything yet: nothing to finish.
        reason_ = "stopped";
        fail_link("stopped", true);
        return;
    }
    if (now_) {
        finish_drain();
        return;
    }
    // The relay stops routing new requests here; in-flight channels go on.
    for (const std::string& name : forwards_ok_) {
        if (sess_->conn().cancel_tcpip_forward(name, opt_.forward_port, sshout_)) ++pending_cancels_;
    }
    forwards_ok_.clear();
    flush_ssh();
    FERRY_LOG(info, "draining: waiting for in-flight channels", {"channels", std::uint64_t(chans_.size())},
              {"timeout_ms", std::int64_t(opt_.timings.drain_timeout.count())});
    if (chans_.empty()) {
        finish_drain();
    } else {
        drain_timer_.arm_after(opt_.timings.drain_timeout);
    }
}

void agent_link::check_drained() {
    if (draining_ && !drain_finished_ && !ending_ && chans_.empty() && ssh_up()) finish_drain();
}

void agent_link::finish_drain() {
    if (drain_finished_ || ending_) return;
    drain_finished_ = true;
    drain_timer_.cancel();
    release_targets();
    if (sess_) sess_->disconnect(ssh::disconnect_reason::by_application, "agent shutting down", sshout_);
    if (!sshout_.empty() && ws_is_open()) (void)send_binary(sshout_);
    sshout_.clear();
    ending_ = true;
    reason_ = "stopped";
    ssh_timer_.cancel();
    ping_timer_.cancel();
    pong_timer_.cancel();
    keepalive_timer_.cancel();
    setup_timer_.cancel();
    FERRY_LOG(info, "ssh disconnect sent; closing the WebSocket (1000)");
    ws_close(ws::close_code::normal, "agent shutting down");
}

void agent_link::on_close(const error& why) {
    ws_client_connection::on_close(why);
    ending_ = true;
    release_targets();
    ssh_timer_.cancel();
    ping_timer_.cancel();
    pong_timer_.cancel();
    keepalive_timer_.cancel();
    setup_timer_.cancel();
    drain_timer_.cancel();
    if (reason_.empty()) {
        reason_ = why.code == errc::ok ? "closed" : std::string(to_string(why.code)) + ": " + why.detail;
        if (why.code == errc::io && why.sys != 0) reason_ += std::string(" (") + std::strerror(why.sys) + ")";
    }
    if (!reported_ && agent_) {
        reported_ = true;
        agent* a = agent_;
        agent_ = nullptr;
        a->link_down(this, reason_, fatal_, at_cap_, retry_after_);
    }
}

// ---- agent ------------------------------------------------------------------------------------------

namespace {
std::function<double()> default_uniform() {
    auto gen = std::make_shared<std::mt19937_64>(std::random_device{}());
    return [gen] { return std::uniform_real_distribution<double>(0.0, 1.0)(*gen); };
}
}  // namespace

agent::agent(reactor::shard& s, agent_options o, ssh::rng& random, std::function<void(int)> on_exit)
    : shard_(s), opt_(std::move(o)), rng_(random), on_exit_(std::move(on_exit)),
      verifier_(opt_.known_hosts, known_hosts_name(opt_.relay_host, opt_.relay_port)),
      backoff_(opt_.timings.backoff, opt_.uniform ? opt_.uniform : default_uniform()),
      retry_timer_(s, [this] { attempt(); }) {
    if (opt_.upstream_keepalive > 0) {
        pool_ = std::make_shared<target_pool>(opt_.upstream_keepalive, opt_.timings.upstream_idle);
    }
}

agent::~agent() {
    retry_timer_.cancel();
    if (pool_) pool_->close_all();
    if (link_) {
        link_->detach_agent();
        link_->abandon("agent destroyed");
        link_.reset();
    }
}

std::uint64_t agent::now_ms() const noexcept { return to_ms(shard_.now()); }

void agent::start() {
    if (state_ != agent_state::idle) return;
    attempt();
}

void agent::attempt() {
    if (stopping_ || finished_) return;
    state_ = agent_state::connecting;
    ++stats_.attempts;
    const bool tls = opt_.tls != nullptr;
    FERRY_LOG(info, "connecting to relay", {"relay", opt_.relay_host}, {"port", unsigned(opt_.relay_port)},
              {"tls", tls ? "yes" : "no"}, {"attempt", stats_.attempts});

    auto fail_attempt = [this](std::string why) { link_down(nullptr, why, false, false, 0); };

    // Where to.
    result<reactor::address> addr = fail(errc::invalid_argument, "no address");
    {
        std::string lit = opt_.relay_host.find(':') != std::string::npos ? "[" + opt_.relay_host + "]" : opt_.relay_host;
        addr = reactor::address::parse(lit + ":" + std::to_string(opt_.relay_port));
        if (!addr && opt_.resolve) addr = opt_.resolve(opt_.relay_host, opt_.relay_port);
        if (!addr) return fail_attempt(std::string("cannot resolve ") + opt_.relay_host + ": " + addr.err().detail);
    }
    // The token (re-read every time: it may have been rotated).
    if (!opt_.token) return fail_attempt("no token source");
    auto token = opt_.token();
    if (!token) return fail_attempt(std::string("cannot get the token: ") + token.err().detail);
    std::string user = opt_.ssh_user;
    if (user.empty()) {
        auto c = jwt::inspect(*token);
        if (c && !c->sub.empty() && c->sub.size() <= 256) user = c->sub;
        else user = "ferry";
    }

    ws_client_options wo;
    wo.host = host_header(opt_.relay_host, opt_.relay_port, tls);
    wo.target = opt_.relay_path;
    wo.extra_headers = "Authorization: Bearer " + *token + "\r\n";
    wo.limits = opt_.ws_limits;
    wo.handshake_timeout = opt_.timings.connect_timeout;
    wo.close_timeout = opt_.timings.close_timeout;
    auto l = std::make_unique<agent_link>(shard_, *this, std::move(wo), rng_, std::move(*token), std::move(user));
    if (tls) {
        auto x = tls_transform::client(opt_.tls, opt_.relay_host);
        if (!x) return fail_attempt(std::string("TLS set-up failed: ") + x.err().detail);
        l->set_transform(std::move(*x));
    }
    agent_link* raw = l.get();
    auto c = shard_.connect(*addr, std::move(l));
    if (!c) return fail_attempt(std::string("connect: ") + c.err().detail);
    link_ = ref_ptr<agent_link>(raw);
}

void agent::link_up() {
    state_ = stopping_ ? agent_state::draining : agent_state::up;
    ++stats_.sessions;
}

void agent::link_serving() {
    // A link counts as a success once the relay registered a tunnel on it, not when SSH is up:
    // a relay (or a path) that lets SSH through and then drops the link at once must not turn
    // "the first retry is immediate" into a reconnect loop without delay.
    failures_ = 0;
    backoff_.reset();
}

void agent::link_down(agent_link* l, const std::string& reason, bool fatal, bool at_cap, std::uint32_t retry_after_s) {
    if (l && link_.get() == l) link_.reset();
    if (finished_) return;
    if (stopping_) {
        FERRY_LOG(info, "agent stopped", {"reason", reason});
        return finish(0);
    }
    if (fatal) {
        FERRY_LOG(error, "agent giving up", {"reason", reason});
        return finish(1);
    }
    ++failures_;
    if (opt_.max_attempts != 0 && failures_ >= opt_.max_attempts) {
        FERRY_LOG(error, "agent giving up: too many failed attempts", {"reason", reason},
                  {"attempts", failures_});
        return finish(1);
    }
    milliseconds d = at_cap ? backoff_.at_cap() : backoff_.next();
    if (retry_after_s > 0) d = std::max(d, milliseconds(std::int64_t(retry_after_s) * 1000));
    state_ = agent_state::waiting;
    FERRY_LOG(warn, "disconnected", {"reason", reason}, {"retry_in_ms", std::int64_t(d.count())},
              {"failures", failures_});
    retry_timer_.arm_after(d);
}

void agent::stop(bool now) {
    if (finished_) return;
    const bool again = stopping_;
    stopping_ = true;
    retry_timer_.cancel();
    if (!link_) {
        FERRY_LOG(info, "agent stopped");
        return finish(0);
    }
    state_ = agent_state::draining;
    FERRY_LOG(info, again || now ? "stopping now" : "stopping: draining in-flight channels");
    link_->begin_drain(again || now);
}

void agent::finish(int code) {
    if (finished_) return;
    finished_ = true;
    state_ = agent_state::stopped;
    if (pool_) pool_->close_all();
    exit_code_ = code;
    // on_exit runs from a timer, never from inside a link's callbacks, so the embedder may
    // react (post, stop the engine) without the agent's call stack under it.
    retry_timer_.set_callback([this] {
        if (on_exit_) on_exit_(exit_code_);
    });
    retry_timer_.arm_after(milliseconds(0));
}

}  // namespace ferry::tunnel
