#include "relay/agent_ws_conn.hh"

#include <cstdio>

namespace ferry::relay {

namespace {

// Larger SSH output slices are cut into messages of at most this size (a peer's frame limit
// is 1 MiB by default; our packets are far smaller).
constexpr std::size_t kMaxMessage = 256 * 1024;

link::ws_server_options ws_opts(const relay_config& o) {
    link::ws_server_options w;
    w.limits = o.ws_limits;
    w.head_limits = o.head_limits;
    w.head_timeout = o.head_timeout;
    w.close_timeout = o.close_timeout;
    return w;
}

}  // namespace

agent_ws_conn::agent_ws_conn(relay& r, reactor::shard& s, std::string sub, std::uint64_t id,
                             std::int64_t expires, conn_limits::slot slot)
    : link::ws_server_connection(s, ws_opts(*r.state(s.id()).cfg)),
      agent_(r, s, *this, std::move(sub), id, expires, std::move(slot)) {}

void agent_ws_conn::on_ws_data(const ws::event& ev, slice payload) {
    if (ev.op == ws::opcode::text) {
        ws_close(ws::close_code::unsupported_data, "binary messages only");
        return agent_.stream_ended("text message");
    }
    // The payload was unmasked in place in our receive buffer; the transport decrypts in place.
    agent_.feed(std::move(payload));
}

void agent_ws_conn::on_ws_closed(std::uint16_t code) {
    char why[64];
    std::snprintf(why, sizeof why, "websocket closed (%u)", code);
    // 1000 after an SSH DISCONNECT from the agent is clean; anything else is a drop.
    agent_.stream_ended(why);
}

void agent_ws_conn::on_output_high() {
    link::ws_server_connection::on_output_high();
    agent_.backpressure(true);
}

void agent_ws_conn::on_output_low() {
    link::ws_server_connection::on_output_low();
    agent_.backpressure(false);
}

void agent_ws_conn::on_close(const error& why) {
    link::ws_server_connection::on_close(why);
    agent_.on_close(why);
}

void agent_ws_conn::carry(buffer_chain& ssh_bytes) {
    buffer_chain* out = output();
    while (!ssh_bytes.empty()) {
        slice s = ssh_bytes.pop_front();
        if (!out) continue;  // the socket takes no more: drop
        while (s.size() > kMaxMessage) {
            (void)codec().send(*out, ws::opcode::binary, s.sub(0, kMaxMessage));
            s = s.sub(kMaxMessage, s.size() - kMaxMessage);
        }
        (void)codec().send(*out, ws::opcode::binary, std::move(s));
    }
    if (out) commit_output();
}

bool agent_ws_conn::ping() {
    if (buffer_chain* out = output()) {
        (void)codec().ping(*out, {});
        commit_output();
    }
    return true;
}

void agent_ws_conn::goodbye(std::uint16_t ws_code, std::string_view reason) {
    // The close handshake closes TCP when answered (or at its timeout); without a WebSocket
    // there is nothing to say goodbye with.
    if (upgraded() && codec().state() == ws::close_state::open) {
        ws_close(ws_code, reason);
    } else {
        close();
    }
}

}  // namespace ferry::relay
