#pragma once
// An agent over a WebSocket on /tunnel: binary messages carry its SSH bytes (agent_conn). The
// consumer connection that read the upgrade hands the socket over to this one, with the
// upgrade's verified token (its subject and expiry).
#include "link/ws_server.hh"
#include "relay/agent_conn.hh"

namespace ferry::relay {

class agent_ws_conn final : public link::ws_server_connection, private agent_transport {
public:
    agent_ws_conn(relay& r, reactor::shard& s, std::string sub, std::uint64_t id, std::int64_t expires,
                  conn_limits::slot slot);

private:
    // ws_server_connection
    void on_ws_open() override { agent_.start(); }
    void on_ws_data(const ws::event& ev, slice payload) override;
    void on_ws_pong(bytes) override { agent_.pong(); }
    void on_ws_closed(std::uint16_t code) override;
    void on_output_high() override;
    void on_output_low() override;
    void on_close(const error& why) override;

    // agent_transport
    void carry(buffer_chain& ssh_bytes) override;
    reactor::connection& connection() noexcept override { return *this; }
    bool ping() override;
    void goodbye(std::uint16_t ws_code, std::string_view reason) override;

    agent_conn agent_;  // last: it uses this object as its transport
};

}  // namespace ferry::relay
