#pragma once
// User authentication (RFC 4252), both roles, on top of a `transport`.
//
// The embedder routes every `event_type::message` payload to the auth object of its role until
// it reports `authenticated`; afterwards messages belong to the connection layer (which ignores
// stray 50..79 messages, as RFC 4252 §5.1 asks). Both objects send through the transport and,
// like it, append DISCONNECT to `out` before returning an error.
//
// Server methods: "none" (accepted only when the embedding says the peer is already
// authenticated, e.g. by the WebSocket's JWT), "password" (handed to a callback: ferry passes
// JWTs this way), "publickey" for ssh-ed25519, ecdsa-sha2-nistp256 and rsa-sha2-256/512 (the key
// is checked by a callback, the signature here). Failed attempts are counted (disconnect at
// `max_failures`) and their answers held back by `failure_delay`: call tick() until
// next_deadline() passes. Client methods: none, publickey (ed25519), password, in that order.
#include <cstdint>
#include <deque>
#include <string>
#include <string_view>
#include <vector>

#include "proto/base/buffer.hh"
#include "proto/base/result.hh"
#include "proto/ssh/pubkey.hh"
#include "proto/ssh/transport.hh"

namespace ferry::ssh {

// The embedder's decisions. Called synchronously on the shard; must not block.
class auth_policy {
public:
    virtual ~auth_policy() = default;
    // "none": true when the session is already authenticated outside SSH.
    virtual bool allow_none(std::string_view user) { return false; }
    virtual bool check_password(std::string_view user, std::string_view password) { return false; }
    // Whether `key_blob` may log in as `user`. Asked for queries and again after the signature
    // was verified.
    virtual bool check_publickey(std::string_view user, user_key_alg alg, bytes key_blob) {
        return false;
    }
};

struct auth_limits {
    std::uint32_t max_failures = 6;  // counted failures before DISCONNECT (14)
    millis failure_delay = 250;      // each counted failure is answered this much later
    std::size_t max_user = 256;      // bytes
    std::size_t max_password = 16 * 1024;  // bytes (a JWT fits)
};

struct auth_server_config {
    auth_policy* policy = nullptr;  // not owned, required
    // Methods offered in USERAUTH_FAILURE (subset of "publickey,password").
    std::string methods = "publickey,password";
    std::string banner;  // sent as USERAUTH_BANNER after SERVICE_ACCEPT when not empty
    auth_limits limits;
};

enum class auth_event_type : std::uint8_t { none, authenticated, banner, failed };

struct auth_event {
    auth_event_type type = auth_event_type::none;
    std::string_view user;    // authenticated
    std::string_view method;  // authenticated: "none", "password" or "publickey"
    std::string_view text;    // banner
};

class auth_server {
public:
    auth_server(transport& t, auth_server_config cfg);
    // One upper-layer payload from the transport (message number first).
    result<auth_event> handle(bytes payload, buffer_chain& out, millis now);
    // Sends held-back answers whose delay has passed. Reports `authenticated` when the
    // USERAUTH_SUCCESS held behind them leaves.
    result<auth_event> tick(buffer_chain& out, millis now);
    // When tick() next has work (0: nothing pending).
    millis next_deadline() const noexcept { return pending_.empty() ? 0 : pending_.front().due; }
    // True once USERAUTH_SUCCESS was sent (from then on the connection layer owns the
    // messages, and the transport may rekey on its own).
    bool authenticated() const noexcept { return success_sent_; }
    const std::string& user() const noexcept { return user_; }
    std::uint32_t failures() const noexcept { return failures_; }

private:
    struct reply {
        millis due;
        std::vector<std::byte> payload;
    };
    result<auth_event> on_request(bytes payload, buffer_chain& out, millis now);
    // Queues or sends one answer; returns the `authenticated` event if a SUCCESS left now.
    result<auth_event> respond(std::vector<std::byte> payload, millis due, buffer_chain& out,
                               millis now);
    result<auth_event> send_now(const std::vector<std::byte>& payload, buffer_chain& out);
    status send_failure(bool counted, buffer_chain& out, millis now);
    failure fatal(disconnect_reason r, errc c, const char* why, buffer_chain& out);

    transport& t_;
    auth_server_config cfg_;
    bool service_ok_ = false;
    bool done_ = false;  // success decided (later requests are ignored)
    bool success_sent_ = false;
    std::string user_;
    std::string method_;
    std::uint32_t failures_ = 0;
    std::deque<reply> pending_;
};

struct auth_client_config {
    std::string user;
    std::string password;             // empty: do not try "password"
    ed25519_private* key = nullptr;   // not owned; null: do not try "publickey"
};

class auth_client {
public:
    auth_client(transport& t, auth_client_config cfg);
    // Call once the transport reported handshake_done: sends SERVICE_REQUEST.
    status start(buffer_chain& out);
    result<auth_event> handle(bytes payload, buffer_chain& out);
    bool authenticated() const noexcept { return done_; }
    // The methods the server listed in its last USERAUTH_FAILURE.
    const std::string& server_methods() const noexcept { return server_methods_; }

private:
    status send_request(std::string_view method, buffer_chain& out);
    status next_method(buffer_chain& out, bool& none_left);
    failure fatal(disconnect_reason r, errc c, const char* why, buffer_chain& out);

    transport& t_;
    auth_client_config cfg_;
    bool started_ = false;
    bool service_ok_ = false;
    bool done_ = false;
    bool tried_publickey_ = false;
    bool tried_password_ = false;
    std::string method_;
    std::string server_methods_;
};

}  // namespace ferry::ssh
