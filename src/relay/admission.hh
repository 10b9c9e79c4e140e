#pragma once
// Admission: what the relay does with a parsed request head, as one sans-IO decision. It reads
// the shard's view (configuration snapshot, JWT verifier, directory replica, local sessions,
// rate limiter, registry for agent slots) and the time it is given, and returns one of
//
//   reject         an SPEC §4 error (kind, message, Retry-After and rate headers)
//   agent_upgrade  `GET /tunnel` WebSocket upgrade with an agent token: the owner and expiry
//                  (one of the owner's agent slots is taken in the registry)
//   hand_over      the tunnel is online on another shard: move the socket there
//   serve          online here: the agent session to open a channel on
//   queue          leased (its agent is reconnecting) or not yet here: wait in the queue
//
// consumer_conn only carries the decision out (sockets, timers, hand-overs). No sockets and no
// clock here, so tests/relay/admission_test.cc covers every decision and every error without
// one. Thread: the shard whose view it is.
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>

#include "proto/http1/parser.hh"
#include "proto/jwt/verifier.hh"
#include "relay/ingress.hh"
#include "relay/rate_limit.hh"
#include "relay/registry.hh"
#include "relay/relay_config.hh"

namespace ferry::relay {

class agent_conn;

// What a shard knows when a request arrives.
struct admission_view {
    const relay_config& cfg;
    jwt::verifier& verifier;  // its cache changes: not const
    const std::unordered_map<std::string, name_state>& directory;
    const std::unordered_map<std::string, agent_conn*>& local;  // names served on this shard
    rate_limiter& limiter;
    registry& names;
    unsigned shard = 0;
};

struct admission_request {
    const http1::request_head& head;
    std::string_view client_ip;
    unsigned hops = 0;          // hand-overs this request already made (at most 2 are followed)
    bool rate_counted = false;  // the rate limiter already counted this request (a re-dispatch)
    std::int64_t unix_now = 0;  // for token expiry
    steady::time_point now{};   // for leases
    double limiter_now = 0;     // the rate limiter's clock (seconds)
    std::string* route_scratch = nullptr;  // where a rewritten path may be built (route views into it)
};

struct admission_decision {
    enum class kind : std::uint8_t { reject, agent_upgrade, hand_over, serve, queue };
    kind what = kind::reject;
    // reject
    ingress::error_kind error = ingress::error_kind::bad_request;
    std::string message;
    ingress::error_extra extra{};
    // A valid token of ours was presented (even if the request is refused later).
    bool authenticated = false;
    // agent_upgrade
    std::string sub;
    std::int64_t expires = 0;  // the token's exp (unix seconds), 0 = none
    // hand_over, serve, queue
    std::string tunnel;
    ingress::route route{};  // views into the head or *route_scratch
    unsigned shard = 0;      // hand_over: where the tunnel lives
    agent_conn* session = nullptr;  // serve
    // The rate limiter counted this request now (the subject, or "ip:ADDR" without a token).
    bool rate_counted = false;
    std::string rate_key;
};

admission_decision admit_request(const admission_request& rq, admission_view& v);

// `GET` with `Upgrade: websocket` on /tunnel: an agent's upgrade, not a consumer request.
bool is_tunnel_upgrade(const http1::request_head& h);

}  // namespace ferry::relay
