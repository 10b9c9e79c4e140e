#pragma once
// An agent over raw SSH on ssh_listen (no WebSocket): OpenSSH connects directly,
//   ssh -p 2222 -N -R NAME:80:127.0.0.1:PORT USER@relay      (password: a JWT whose sub is USER)
// and gets the same agent_conn as a WebSocket agent: leases, take-over, limits and the consumer
// path are the same. Since no upgrade carried a token, SSH auth `none` is refused here.
#include "relay/agent_conn.hh"

namespace ferry::relay {

class agent_tcp_conn final : public reactor::connection, private agent_transport {
public:
    agent_tcp_conn(relay& r, reactor::shard& s, std::uint64_t id);

private:
    // reactor::connection
    void on_open() override;
    void on_data(slice s) override { agent_.feed(std::move(s)); }
    void on_read_eof() override { agent_.stream_ended("agent closed the connection"); }
    void on_output_high() override { agent_.backpressure(true); }
    void on_output_low() override { agent_.backpressure(false); }
    void on_close(const error& why) override;

    // agent_transport
    void carry(buffer_chain& ssh_bytes) override;
    reactor::connection& connection() noexcept override { return *this; }
    bool ping() override { return false; }  // SSH keepalives instead
    void goodbye(std::uint16_t, std::string_view) override { close(); }
    void authenticated() override;

    relay& r_;
    bool pending_ = false;  // counted in relay::enter_ssh_pending until authenticated
    agent_conn agent_;        // last: it uses this object as its transport
};

}  // namespace ferry::relay
