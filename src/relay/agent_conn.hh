#pragma once
// The relay's end of an agent: the SSH server session (a link::ssh_endpoint) over whatever
// carries it, its tunnel names, spare channels, liveness, token expiry. Two transports carry
// it (agent_transport.hh): a WebSocket on /tunnel (agent_ws_conn: the upgrade's JWT names the
// owner) and raw SSH on ssh_listen (agent_tcp_conn: the JWT is the SSH password).
#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "link/ssh_endpoint.hh"
#include "relay/shard_state.hh"

namespace ferry::relay {

// What an agent_conn needs from the connection that carries it.
class agent_transport : public link::ssh_carrier {
public:
    virtual reactor::connection& connection() noexcept = 0;
    // A transport-level ping (WebSocket); false when there is none (raw TCP): the session then
    // sends SSH keepalives, whose replies count as pongs.
    virtual bool ping() = 0;
    // Closes after what is queued (WebSocket: the close handshake with `ws_code`).
    virtual void goodbye(std::uint16_t ws_code, std::string_view reason) = 0;
    // The SSH session authenticated.
    virtual void authenticated() {}

protected:
    ~agent_transport() = default;
};

class agent_conn final : private link::endpoint_events,
                         private ssh::connection_policy,
                         private ssh::auth_policy {
public:
    // How the owner is known: from the WebSocket upgrade's token (`sub`, `expires`: its `exp`,
    // unix seconds, 0 = none; SSH auth `none` is enough), or from the SSH password, a JWT whose
    // `sub` must be the SSH user (raw SSH: `sub` empty until then).
    // `slot`: the connection's count in conn_limits.
    agent_conn(relay& r, reactor::shard& s, agent_transport& t, std::string sub, std::uint64_t id,
               std::int64_t expires, conn_limits::slot slot);
    ~agent_conn() override;
    agent_conn(const agent_conn&) = delete;
    agent_conn& operator=(const agent_conn&) = delete;

    // ---- from the transport ----
    void start();             // the byte stream is ready (upgraded, or connected)
    // The connection's count in conn_limits, when it is taken after construction (raw SSH).
    void adopt_slot(conn_limits::slot s) { slot_ = std::move(s); }
    void feed(slice piece);   // SSH bytes (writable: decrypted in place)
    void pong();              // the transport's pong
    void backpressure(bool on) { ep_.backpressure(on); }
    // The stream ended (`why`), or a protocol rule was broken by the peer.
    void stream_ended(std::string why) { end(std::move(why), false); }
    void on_close(const error& why);

    // ---- for consumers on this shard ----
    struct channel_grant {
        std::uint32_t id = 0;
        bool ready = false;  // a spare channel, already open: no channel_opened() will follow
    };
    // A channel to `name` for `c` (attached to the endpoint's table): a spare one when there
    // is one (the open round trip is off the request's path), else a new forwarded-tcpip open
    // (channel_opened()/channel_failed()). errc::limit_exceeded: the tunnel has
    // max_channels_per_tunnel channels in use (spares not counted); a consumer waits in the
    // tunnel's queue and is woken when one of them ends (shard_state::channel_freed).
    result<channel_grant> open_channel(link::channel_handler& c, reactor::connection& keep, std::string_view name,
                                       std::string_view origin_host, std::uint32_t origin_port);
    // The consumer is done with the channel (or gone): CLOSE it.
    void consumer_closed(std::uint32_t id, const link::channel_handler& c);
    link::ssh_endpoint& endpoint() noexcept { return ep_; }
    reactor::connection& connection() noexcept { return t_.connection(); }
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
        std::uint32_t active = 0;          // channels given to consumers, not yet ended
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

    // link::endpoint_events
    void on_authenticated(const ssh::session_event& ev) override;
    void on_disconnected(const ssh::session_event& ev) override;
    void on_open_request(const ssh::conn_event& ev) override;
    void on_global_reply(const ssh::conn_event& ev) override;
    void on_unowned(const ssh::conn_event& ev) override;
    void on_channel_done(std::uint32_t id) override { channel_ended(id); }
    void on_ssh_failed(const error& e) override;

    // ssh::auth_policy
    bool allow_none(std::string_view user) override;
    bool check_password(std::string_view user, std::string_view password) override;
    // ssh::connection_policy
    bool tcpip_forward(std::string_view address, std::uint32_t port, std::uint32_t& bound) override;
    bool cancel_tcpip_forward(std::string_view address, std::uint32_t port) override;

    void on_ping_timer();
    void on_pong_deadline();
    void on_handshake_timeout();
    void on_expiry();
    void arm_expiry();
    void end(std::string why, bool clean, std::uint16_t ws_code = ws::close_code::normal);
    void release_names(bool clean);
    // A consumer's channel ended (closed by either side, or its open refused): the tunnel has
    // one more free, and a request waiting for one is woken.
    void channel_ended(std::uint32_t id);
    void forget_in_use(const std::string& name);
    ssh::session_config make_config();

    relay& r_;
    shard_state& st_;
    std::shared_ptr<const relay_config> cfg_;  // the shard's snapshot when this connection started
    reactor::shard& sh_;  // the transport's shard (an agent connection never moves)
    agent_transport& t_;
    conn_limits::slot slot_;
    std::string sub_;
    std::uint64_t id_;
    const bool sub_from_password_;  // raw SSH: the owner is whoever the password JWT names
    bool counted_ = false;          // holds one of the owner's agent slots (registry)
    link::ssh_endpoint ep_;
    reactor::timer ping_timer_;
    reactor::timer pong_timer_;  // pong_timeout after the last pong (or the start)
    reactor::timer expiry_timer_;
    reactor::timer spare_timer_;
    reactor::timer handshake_timer_;  // start -> SSH authenticated (handshake_timeout)
    std::int64_t expires_ = 0;
    std::vector<forward> forwards_;
    std::unordered_map<std::uint32_t, std::string> spares_;  // spare channel id -> tunnel name
    std::unordered_map<std::uint32_t, std::string> in_use_;  // consumer channel id -> tunnel name
    bool started_ = false;
    bool done_ = false;
    std::string end_reason_;
};

}  // namespace ferry::relay
