#pragma once
// Internals of the relay (relay.hh): the per-shard state and the two connection handlers.
// Included by relay.cc, agent_session.cc and consumer.cc only.
#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "proto/base/log.hh"
#include "proto/http1/body.hh"
#include "proto/http1/parser.hh"
#include "proto/jwt/verifier.hh"
#include "proto/ssh/crypto.hh"
#include "proto/ssh/session.hh"
#include "reactor/connection.hh"
#include "reactor/timer.hh"
#include "tunnel/conn_limits.hh"
#include "tunnel/ingress.hh"
#include "tunnel/rate_limit.hh"
#include "tunnel/registry.hh"
#include "tunnel/relay.hh"
#include "tunnel/ws_server.hh"

namespace ferry::tunnel {

class agent_session;
class consumer_conn;

// Consumer connections a shard may close to make room at max_connections (conn_limits),
// least recently active first (a connection joins at the back when it starts waiting for a
// request). Intrusive: the links are in consumer_conn.
struct evict_list {
    consumer_conn* first = nullptr;
    consumer_conn* last = nullptr;
};

// Everything a shard owns for the relay. Touched only by its shard's thread once prepared.
struct shard_state {
    relay* r = nullptr;
    unsigned id = 0;
    std::unique_ptr<ssh::system_rng> rng;
    std::optional<ssh::ed25519_private> host_key;
    std::unique_ptr<jwt::verifier> verifier;
    // Replica of the registry: what consumers on this shard route by. Updated by messages
    // (publish()); a message older than the entry (lower version) is ignored. Free names stay
    // as tombstones (state free) for a second, then go (forget_tombstones).
    std::unordered_map<std::string, name_state> directory;
    struct tombstone {
        steady::time_point at;
        std::string name;
        std::uint64_t version;
    };
    std::deque<tombstone> tombstones;
    void forget_tombstones();
    // Names whose session lives on this shard.
    std::unordered_map<std::string, agent_session*> local;
    // Live agent sessions on this shard by id (take-over messages find them here).
    std::unordered_map<std::uint64_t, agent_session*> sessions;
    // Consumers waiting for a name to come (back) online.
    std::unordered_map<std::string, std::vector<reactor::ref_ptr<consumer_conn>>> waiting;
    // Per-user request rate (counted where a request is served).
    rate_limiter limiter;
    // The registry's next lease end: the timer (made on the shard's thread at the first lease
    // released here) removes ended leases from the registry and publishes them. Every shard
    // that released a lease keeps one armed; expire() hands each ended lease out once.
    std::optional<reactor::timer> lease_timer;
    // Lines a peer can repeat at will, rate-limited per shard (log::gate).
    log::gate refused_forward_log{20, 1000};
    log::gate refused_connection_log{20, 1000};
    log::gate session_log{200, 1000};  // agent sessions and tunnel up/down
    // Consumer connections on this shard waiting for a request (none in flight), in two lists:
    // those that never presented a valid token go first when the process is at max_connections,
    // then idle keep-alive ones of token holders (a server may close an idle keep-alive
    // connection at any time). Agent sessions are never evicted: they keep the headroom.
    evict_list unauthenticated;
    evict_list idle;
    // Closes the first evictable one (an unauthenticated one if any); false when there is none.
    bool evict_one();
    // How many connections the two lists hold: written by this shard, read by the others when
    // the process is at its cap (consumers of a tunnel live on its agent's shard, so room is
    // often on another shard than the one that accepts).
    std::atomic<std::uint32_t> listed{0};

    // Applies a registry change to the replica; wakes waiting consumers when the name is
    // online (here or elsewhere) or gone.
    void apply(const std::string& name, const name_state& s);
    // A name released on `sh` (this shard) is leased until `until`: sweep the registry then.
    void lease_until(reactor::shard& sh, steady::time_point until);
    void sweep_leases(reactor::shard& sh);
    std::int64_t log_now() const;  // the clock of the log gates (ms)
    void random(std::span<std::byte> out);
    // A fresh 32-character request id into `id` (a connection's string, reused per request).
    void new_request_id(std::string& id);
};

// Peer-chosen text for a log line: printable ASCII only, at most 100 bytes.
std::string printable(std::string_view s);

// Sends a registry change to every shard's replica (from a shard thread).
void publish(reactor::shard& from, relay& r, const std::string& name, const name_state& s);

// ---- agent side: WebSocket + SSH server --------------------------------------------------------

class agent_session final : public ws_server_connection,
                            private ssh::connection_policy,
                            private ssh::auth_policy {
public:
    // `expires`: the token's `exp` (unix seconds; 0 = none). The session ends when it passes
    // (plus the verifier's leeway): an agent must reconnect with a fresh token (R4).
    // `slot`: the connection's count in conn_limits, moved from the consumer connection.
    agent_session(relay& r, reactor::shard& s, std::string sub, std::uint64_t id, std::int64_t expires = 0,
                  conn_limits::slot slot = {});
    ~agent_session() override;

    // ---- for consumers on this shard ----
    struct channel_grant {
        std::uint32_t id = 0;
        bool ready = false;  // a spare channel, already open: no channel_opened() will follow
    };
    // A channel to `name` for `c`: a spare one when there is one (the open round trip is off
    // the request's path), else a new forwarded-tcpip open (channel_opened()/channel_failed()).
    result<channel_grant> open_channel(consumer_conn* c, std::string_view name,
                                       std::string_view origin_host, std::uint32_t origin_port);
    result<std::size_t> send_data(std::uint32_t id, bytes data);
    void consumed(std::uint32_t id, std::size_t n);
    void send_eof(std::uint32_t id);
    // The consumer is done with the channel (or gone): CLOSE it.
    void consumer_closed(std::uint32_t id, consumer_conn* c);
    bool output_high() const noexcept { return out_high_; }
    // Another session of the same owner took `name` over.
    void lose(const std::string& name);
    std::uint64_t session_id() const noexcept { return id_; }
    const std::string& owner_sub() const noexcept { return sub_; }

private:
    // Spare channels: opened ahead per tunnel name so that a request finds its channel open.
    // `want` grows by one each time a request finds none (up to kMaxSpare) and shrinks on the
    // ping timer when spares stayed unused; the agent's refusals or closes never trigger a
    // re-open by themselves (only requests do), so a failing target cannot cause a loop.
    // A spare unused for kSpareTtl is closed by the relay: it must never be the agent (whose
    // upstream idle limit is 4 s by default, and which hands a spare only a connection with
    // half of that left) or the target that closes it while a request is on its way.
    struct spare_channel {
        std::uint32_t id;
        reactor::shard::clock::time_point since;
    };
    struct forward {
        std::string name;
        std::uint32_t port;
        std::vector<spare_channel> spare;  // open, unused (oldest first)
        unsigned opening = 0;              // spare opens in flight
        unsigned want = 1;                 // spares to keep
        unsigned low = ~0u;                // fewest spares seen at a take since the last ping tick
        bool refused = false;              // the agent refused a spare: none until the next ping tick
    };
    static constexpr unsigned kMaxSpare = 16;
    static constexpr std::chrono::milliseconds kSpareTtl{1000};
    void expire_spares();
    forward* find_forward(std::string_view name);
    void top_up(forward& f);
    void drop_spare(std::uint32_t id, bool close_it);
    void trim_spares();
    void close_spares(forward& f);
    void close_oldest_spare(forward& f);

    // ws_server_connection
    void on_ws_open() override;
    void on_ws_data(const ws::event& ev, slice payload) override;
    void on_ws_pong(bytes) override;
    void on_ws_closed(std::uint16_t code) override;
    void on_output_high() override;
    void on_output_low() override;
    void on_close(const error& why) override;

    // ssh::auth_policy
    bool allow_none(std::string_view user) override;
    bool check_password(std::string_view user, std::string_view password) override;
    // ssh::connection_policy
    bool tcpip_forward(std::string_view address, std::uint32_t port, std::uint32_t& bound) override;
    bool cancel_tcpip_forward(std::string_view address, std::uint32_t port) override;

    void on_event(const ssh::session_event& ev, const slice* in);
    void on_channel_event(const ssh::conn_event& ev, const slice* in);
    consumer_conn* find(std::uint32_t id);
    void on_ssh_timer();
    void on_ping_timer();
    void on_handshake_timeout();
    void on_expiry();
    // Wraps what the SSH session wrote into WebSocket binary messages; re-arms tick().
    void after_io();
    void end(std::string why, bool clean);
    void release_names(bool clean);
    ssh::millis now() const;
    static ssh::session_config make_config(agent_session* self, relay& r, reactor::shard& s);

    relay& r_;
    shard_state& st_;
    conn_limits::slot slot_;
    std::string sub_;
    std::uint64_t id_;
    bool counted_ = true;  // holds one of the owner's agent slots (registry)
    ssh::session sess_;
    buffer_chain ssh_out_;
    reactor::timer ssh_timer_;
    reactor::timer ping_timer_;
    reactor::timer expiry_timer_;
    reactor::timer spare_timer_;
    reactor::timer handshake_timer_;  // upgrade -> SSH authenticated (handshake_timeout)
    std::int64_t expires_ = 0;
    reactor::shard::clock::time_point last_pong_{};
    std::vector<forward> forwards_;
    std::unordered_map<std::uint32_t, reactor::ref_ptr<consumer_conn>> chans_;
    std::unordered_map<std::uint32_t, std::string> spares_;  // spare channel id -> tunnel name
    bool started_ = false;
    bool done_ = false;
    bool out_high_ = false;
    std::string end_reason_;
};

// ---- consumer side: HTTP/1.1 requests through channels ----------------------------------------

class consumer_conn final : public reactor::connection {
public:
    // `hops`: how many times this socket was already handed between shards for the request
    // being read (bounded, so replicas that briefly disagree cannot bounce it for ever; counted
    // per request, so a keep-alive connection alternating between tunnels on different shards
    // follows each of them).
    // `slot` and `authenticated` come with a connection handed over from another shard.
    consumer_conn(relay& r, reactor::shard& s, unsigned hops = 0, conn_limits::slot slot = {},
                  bool authenticated = false);
    ~consumer_conn() override;

    // ---- for the shard's eviction (max_connections) ----
    bool evictable() const noexcept;  // listed, and nothing of its next request received
    void evict();
    consumer_conn* list_next_ = nullptr;  // links of the evict_list it is in (shard_state)
    consumer_conn* list_prev_ = nullptr;

    // ---- events from the agent session ----
    void channel_opened();
    void channel_failed(ssh::open_failure why);
    void ssh_data(slice piece);
    void ssh_eof();
    void ssh_writable();
    void channel_closed();
    void ssh_gone();
    void ssh_backpressure(bool on);
    // ---- from the shard's waiting list: the name's state changed ----
    void tunnel_changed();

private:
    enum class phase : std::uint8_t {
        head,       // reading a request head
        waiting,    // the tunnel is reconnecting: queued
        opening,    // channel open sent
        streaming,  // request going up, response coming down
        draining,   // flushing before close
    };

    void on_open() override;
    void on_data(slice s) override;
    void on_read_eof() override;
    void on_output_high() override;
    void on_output_low() override;
    void on_output_drained() override;
    void on_close(const error& why) override;

    void on_timer();
    std::chrono::milliseconds idle_limit() const;  // between requests (idle_timeout or the short one)
    void step();                // parse a head from head_ and act on it
    void dispatch();            // a parsed head: agent upgrade, hand-over, queue or exchange
    void wait_for_tunnel();
    void leave_queue();
    void start_exchange(agent_session* s);
    void pump_up();             // request head and body toward the channel
    void update_reading();
    void response_bytes(slice piece);
    void upstream_ended();
    void finish_exchange();     // response complete: next request or close
    void next_request();        // the answer is queued and the connection stays
    void fail(ingress::error_kind k, std::string_view message, std::uint32_t retry_after = 0);
    void fail(ingress::error_kind k, std::string_view message, const ingress::error_extra& x);
    void drain();
    void abort_now();
    void reset_request();
    void move_into_head();      // pipelined bytes in in_ start the next head
    void next_pipelined();      // parse the next pipelined head (bounded recursion)
    void detach();
    void settle();
    void repay();
    void enter(phase p);  // ph_ = p, and the evict_list it belongs in (relist)
    void relist();
    void unlist();
    void authenticated();  // a valid token was presented

    relay& r_;
    shard_state& st_;
    conn_limits::slot slot_;           // this connection's count in conn_limits
    evict_list* listed_ = nullptr;     // the shard_state list it is in, if any
    bool gone_ = false;                // handed over or closing: in no list again
    unsigned hops_ = 0;
    phase ph_ = phase::head;
    reactor::timer timer_;             // the phase's deadline
    reactor::timer recheck_;           // settle() again after the loop raised output events
    reactor::timer again_;             // the next pipelined head, from the loop
    unsigned pipelined_ = 0;           // pipelined heads handled in a row without the loop
    // Answers queued while earlier ones were still unsent: a client that pipelines requests and
    // never reads gets at most max_pipelined_requests of them; then the relay stops reading it
    // until its output is empty (waiting_reader_).
    unsigned unread_answers_ = 0;
    bool waiting_reader_ = false;
    bool handover_pending_ = false;    // a hand-over waits for our output to be sent
    std::string head_;                 // the request head as it accumulates (contiguous)
    http1::request_parser parser_;
    buffer_chain in_;                  // received after the parsed head (body, next requests)
    std::string client_ip_;
    std::uint32_t client_port_ = 0;
    bool trusted_proxy_ = false;       // the peer is in relay_options::trusted_proxies
    bool authenticated_ = false;       // a valid token was presented on this connection
    bool eof_ = false;                 // the consumer shut its write side
    bool paused_ = false;              // our pause_reading() is in force
    // The request in progress.
    std::string request_id_;
    std::string tunnel_;
    ingress::route route_{};           // views into head_ or route_scratch_
    std::string route_scratch_;
    std::string method_;
    bool head_request_ = false;
    bool rate_counted_ = false;        // this request went through the rate limiter
    std::string rate_key_;             // its subject, or "ip:ADDR" for a public tunnel without token
    bool consumer_keep_alive_ = false;
    http1::version consumer_ver_ = http1::version::http_1_1;
    buffer_chain up_;                  // rewritten head + body bytes not yet taken by the channel
    http1::body_reader req_body_;
    bool req_body_done_ = false;
    // The channel.
    reactor::ref_ptr<agent_session> ssh_;
    std::uint32_t chan_ = 0;
    bool ssh_pause_ = false;
    // The response.
    std::string resp_head_;
    http1::response_parser resp_parser_;
    http1::body_reader resp_body_;
    bool resp_started_ = false;        // the final head went to the consumer
    bool resp_done_ = false;
    bool resp_keep_alive_ = false;
    int resp_status_ = 0;
    bool dechunk_ = false;             // HTTP/1.0 consumer, chunked response: payload only
    bool any_response_ = false;        // some byte (1xx included) went to the consumer
    bool spare_ = false;               // the channel was a spare (logs)
    bool above_high_ = false;
    std::size_t owed_ = 0;             // channel bytes delivered but not yet consumed()
    unsigned requests_ = 0;
};

}  // namespace ferry::tunnel
