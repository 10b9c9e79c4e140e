#pragma once
// A consumer connection: HTTP/1.1 requests routed to tunnels.
#include "link/channel_pipe.hh"
#include "link/ssh_endpoint.hh"
#include "relay/shard_state.hh"

namespace ferry::relay {

// ---- consumer side: HTTP/1.1 requests through channels ----------------------------------------

class consumer_conn final : public reactor::connection, public link::channel_handler {
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

    // ---- events from the agent session (link::channel_handler) ----
    void channel_opened() override;
    void channel_failed(ssh::open_failure why) override;
    void channel_data(slice piece) override;
    void channel_eof() override;
    void channel_writable() override;
    void channel_closed() override;
    void session_gone() override;
    void session_backpressure(bool on) override { pipe_.link_backpressure(on); }
    // ---- from the shard's waiting list: the name's state changed, or a channel freed ----
    void tunnel_changed();
    // An exchange holds (or is opening) a channel.
    bool has_channel() const noexcept { return ssh_ != nullptr; }

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
    void dispatch();            // a parsed head: admission decides, this carries it out
    void become_agent(std::string sub, std::int64_t expires);  // hand the socket to an agent_ws_conn
    void hand_to(unsigned shard);  // the tunnel's shard serves it
    // Queued until the tunnel is online (`at_limit` false) or one of its channels ends (true).
    void wait_for_tunnel(bool at_limit = false);
    void leave_queue();
    void start_exchange(agent_conn* s);
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
    void detach();              // the channel is not ours any more (pipe unbound, no CLOSE)
    void close_channel();       // done with the channel: CLOSE it, detach
    void enter(phase p);  // ph_ = p, and the evict_list it belongs in (relist)
    void relist();
    void unlist();
    void authenticated();  // a valid token was presented

    relay& r_;
    shard_state& st_;
    std::shared_ptr<const relay_config> cfg_;  // the shard's snapshot when this connection started
    conn_limits::slot slot_;           // this connection's count in conn_limits
    evict_list* listed_ = nullptr;     // the shard_state list it is in, if any
    bool gone_ = false;                // handed over or closing: in no list again
    unsigned hops_ = 0;
    phase ph_ = phase::head;
    reactor::timer timer_;             // the phase's deadline
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
    bool trusted_proxy_ = false;       // the peer is in relay_config::trusted_proxies
    bool authenticated_ = false;       // a valid token was presented on this connection
    bool eof_ = false;                 // the consumer shut its write side
    bool paused_ = false;              // our pause_reading() is in force
    // The request in progress: everything about one exchange, reset as a whole between
    // requests (reset_request), so no flag of one request can leak into the next.
    struct exchange {
        std::string tunnel;
        ingress::route route{};            // views into head_ or route_scratch_
        std::string method;
        bool head_request = false;
        bool consumer_keep_alive = false;  // the consumer's head allows keep-alive
        http1::version consumer_ver = http1::version::http_1_1;
        bool rate_counted = false;         // went through the rate limiter
        std::string rate_key;              // its subject, or "ip:ADDR" for a public tunnel without token
        bool at_limit = false;             // queued because the tunnel's channels are all in use
        bool spare = false;                // its channel was a spare (logs)
        bool req_body_done = false;        // the request body went up whole
        bool any_response = false;         // some byte (1xx included) went to the consumer
        bool resp_started = false;         // the final head went to the consumer
        bool resp_done = false;
        bool resp_keep_alive = false;
        int resp_status = 0;
        bool dechunk = false;              // HTTP/1.0 consumer, chunked response: payload only
    };
    exchange ex_;
    std::string request_id_;  // reused between requests (new_request_id)
    std::string route_scratch_;
    http1::body_reader req_body_;
    // The channel: the rewritten head and the body go up through the pipe (what the agent's
    // window does not take waits there, reading paused); the response comes down through it
    // (acknowledged once our output is at or below its watermark).
    agent_conn* ssh_ = nullptr;
    reactor::ref_ptr<reactor::connection> ssh_keep_;  // the agent's connection, alive while we use it
    link::channel_pipe pipe_;
    // The response.
    std::string resp_head_;
    http1::response_parser resp_parser_;
    http1::body_reader resp_body_;
    unsigned requests_ = 0;
};

}  // namespace ferry::relay
