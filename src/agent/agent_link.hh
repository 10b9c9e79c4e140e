#pragma once
// One link to the relay: a WebSocket client connection carrying the SSH session (client role,
// a link::ssh_endpoint over binary messages), tcpip-forward per tunnel, forwarded-tcpip channels
// served by agent_targets (the endpoint's channel table holds them).
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "agent/agent.hh"
#include "agent/agent_target.hh"
#include "link/ssh_endpoint.hh"
#include "link/ws_client.hh"
#include "reactor/timer.hh"

namespace ferry::agent {

class agent_link final : public link::ws_client_connection,
                         private link::ssh_carrier,
                         private link::endpoint_events {
public:
    agent_link(reactor::shard& s, agent& a, link::ws_client_options wo, ssh::rng& rng, std::string token,
               std::string user);
    ~agent_link() override;

    void detach_agent() noexcept { agent_ = nullptr; }
    bool ssh_up() const noexcept { return ep_.up() && !ending_; }
    void begin_drain(bool now);
    // Ends the link at once (no DISCONNECT): used when the agent goes away.
    void abandon(const char* why);

    // ---- for targets ----
    link::ssh_endpoint& endpoint() noexcept { return ep_; }
    void target_connected(agent_target* t);
    void target_failed(agent_target* t, const std::string& why);
    void target_closed(agent_target* t);
    // `t` (a kept connection) failed before answering: a new connection takes its channel
    // and sends `req` again. False when that cannot be done (the caller closes the channel).
    bool replay(agent_target* t, buffer_chain&& req, bool eof);
    void count_to_target(std::size_t n) {
        if (agent_) agent_->stats_.bytes_to_target += n;
    }
    void count_from_target(std::size_t n) {
        if (agent_) agent_->stats_.bytes_from_target += n;
    }

private:
    // ws_client_connection
    void on_open() override;
    void on_ws_open() override;
    void on_ws_data(const ws::event& ev, slice payload) override;
    void on_ws_pong(bytes payload) override;
    void on_ws_closed(std::uint16_t code) override;
    void on_ws_refused(const link::ws_refusal& why) override;
    void on_output_high() override { ep_.backpressure(true); }
    void on_output_low() override { ep_.backpressure(false); }
    void on_close(const error& why) override;

    // link::ssh_carrier: the session's bytes as WebSocket binary messages
    void carry(buffer_chain& b) override;
    // link::endpoint_events
    void on_banner(std::string_view text) override;
    void on_authenticated(const ssh::session_event& ev) override;
    void on_disconnected(const ssh::session_event& ev) override;
    void on_open_request(const ssh::conn_event& ev) override;
    void on_global_reply(const ssh::conn_event& ev) override;
    void on_channel_done(std::uint32_t) override { check_drained(); }
    void on_ssh_failed(const error& e) override;

    void send_forwards();
    const agent_tunnel* find_tunnel(std::string_view name) const {
        for (const agent_tunnel& t : opt_.tunnels)
            if (t.name == name) return &t;
        return nullptr;
    }
    bool serves(std::uint32_t id, const agent_target* t) const noexcept { return ep_.handler(id) == t; }
    // Ends the link: targets aborted, then TCP aborted (`abort`: a dead or hostile peer) or the
    // WebSocket closed with `code` after whatever the session still had to say (DISCONNECT).
    void fail_link(std::string reason, bool abort, std::uint16_t code = ws::close_code::going_away);
    void finish_drain();
    void check_drained();
    void stop_timers();

    agent* agent_;
    reactor::shard& shard_;
    const agent_options opt_;  // a copy: the link may outlive its agent by a few events
    ssh::rng& rng_;
    std::string token_;
    std::string user_;
    std::shared_ptr<target_pool> pool_;  // null: upstream keep-alive off
    link::ssh_endpoint ep_;
    std::deque<std::string> pending_forwards_;   // sent, awaiting the relay's reply (in order)
    std::size_t next_forward_ = 0;               // the next of opt_.tunnels to ask for
    static constexpr std::size_t kForwardWindow = 32;
    std::vector<std::string> forwards_ok_;
    unsigned pending_cancels_ = 0;
    unsigned keepalives_out_ = 0;
    reactor::timer ping_timer_, pong_timer_, keepalive_timer_, setup_timer_, drain_timer_;
    reactor::timer::clock::time_point ping_sent_{};
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

}  // namespace ferry::agent
