#pragma once
// The relay's end of an agent: WebSocket server + SSH server session.
#include "relay/shard_state.hh"

namespace ferry::relay {

// ---- agent side: WebSocket + SSH server --------------------------------------------------------

class agent_conn final : public link::ws_server_connection,
                            private ssh::connection_policy,
                            private ssh::auth_policy {
public:
    // `expires`: the token's `exp` (unix seconds; 0 = none). The session ends when it passes
    // (plus the verifier's leeway): an agent must reconnect with a fresh token (R4).
    // `slot`: the connection's count in conn_limits, moved from the consumer connection.
    agent_conn(relay& r, reactor::shard& s, std::string sub, std::uint64_t id, std::int64_t expires = 0,
                  conn_limits::slot slot = {});
    ~agent_conn() override;

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
    void on_pong_deadline();
    void on_handshake_timeout();
    void on_expiry();
    // Wraps what the SSH session wrote into WebSocket binary messages; re-arms tick().
    void after_io();
    void end(std::string why, bool clean);
    void release_names(bool clean);
    ssh::millis now() const;
    static ssh::session_config make_config(agent_conn* self, relay& r, reactor::shard& s);

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
    reactor::timer pong_timer_;  // pong_timeout after the last pong (or the upgrade)
    reactor::timer expiry_timer_;
    reactor::timer spare_timer_;
    reactor::timer handshake_timer_;  // upgrade -> SSH authenticated (handshake_timeout)
    std::int64_t expires_ = 0;
    std::vector<forward> forwards_;
    std::unordered_map<std::uint32_t, reactor::ref_ptr<consumer_conn>> chans_;
    std::unordered_map<std::uint32_t, std::string> spares_;  // spare channel id -> tunnel name
    bool started_ = false;
    bool done_ = false;
    bool out_high_ = false;
    std::string end_reason_;
};

}  // namespace ferry::relay
