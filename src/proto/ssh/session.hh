#pragma once
// One SSH session, either role, sans-IO: transport + user authentication + connection protocol
// wired together so embedders (the relay's WebSocket sessions, the agent, test servers) feed
// bytes and get channel events.
//
//   session s(cfg);
//   s.start(out, now);
//   for (;;) {                                  // every chunk of peer bytes
//       auto ev = s.feed(in, out, now);         // one event per call; `in` is advanced
//       if (!ev) { flush(out); close(); }       // DISCONNECT already in `out`
//       if (ev->type == session_event_type::need_more) break;
//       if (ev->type == session_event_type::channel) ...ev->conn...
//   }
//   s.conn().send_data(id, bytes, out) ...      // once authenticated
//   at s.next_deadline(): s.tick(out, now)      // held-back auth answers, time-based rekey
//
// Views in events (payloads, names) are valid until the next call on the session.
#include <memory>
#include <optional>

#include "proto/ssh/auth.hh"
#include "proto/ssh/connection.hh"
#include "proto/ssh/transport.hh"

namespace ferry::ssh {

struct session_config {
    transport_config transport;          // .self picks the role
    auth_server_config auth_server;      // server role
    auth_client_config auth_client;      // client role
    connection_config connection;
};

enum class session_event_type : std::uint8_t {
    need_more,      // all input consumed
    authenticated,  // server: USERAUTH_SUCCESS sent (`user`, `method`); client: accepted.
                    // Channels may be used from now on.
    banner,         // client: USERAUTH_BANNER text
    channel,        // a connection-protocol event in `conn`
    rekey_done,     // a later key exchange finished: drain conn().writable_after_kex()
    disconnected,   // the peer sent DISCONNECT (`reason`, `text`); the session is over
};
const char* to_string(session_event_type t) noexcept;

struct session_event {
    session_event_type type = session_event_type::need_more;
    conn_event conn;
    std::string_view user, method, text;
    disconnect_reason reason = disconnect_reason::none;
};

class session {
public:
    explicit session(session_config cfg);
    session(const session&) = delete;
    session& operator=(const session&) = delete;

    status start(buffer_chain& out, millis now);
    result<session_event> feed(mut_bytes& in, buffer_chain& out, millis now);
    // Held-back authentication answers and time-based rekeying. May report `authenticated`.
    result<session_event> tick(buffer_chain& out, millis now);
    // When tick() has work next: the earlier of the auth delay and the rekey interval.
    millis next_deadline() const noexcept;

    bool authenticated() const noexcept { return authenticated_; }
    bool closed() const noexcept { return t_.closed(); }
    const std::string& user() const noexcept;  // server: the authenticated user
    ssh::transport& transport() noexcept { return t_; }
    connection& conn() noexcept { return conn_; }
    void disconnect(disconnect_reason r, std::string_view why, buffer_chain& out) {
        t_.disconnect(r, why, out);
    }

private:
    result<session_event> feed_inner(mut_bytes& in, buffer_chain& out, millis now);
    result<session_event> tick_inner(buffer_chain& out, millis now);
    result<std::optional<session_event>> on_message(mut_bytes payload, buffer_chain& out,
                                                    millis now);

    ssh::transport t_;
    std::optional<auth_server> auth_server_;
    std::optional<auth_client> auth_client_;
    connection conn_;
    bool authenticated_ = false;
    millis last_rekey_check_ = 0;
    std::string empty_;
};

}  // namespace ferry::ssh
