#pragma once
// Follows one HTTP/1.1 exchange on a connection it does not own: the request bytes going to an
// upstream and the response bytes coming back. Its only question is whether the connection may
// carry another exchange afterwards (the agent keeps such upstream connections for the next
// channel: docs/architecture.md, "Upstream keep-alive"). It never changes, copies out or holds
// back the stream; anything it cannot follow (not HTTP, a head over the limit, a framing error,
// an upgrade, a second request on the channel) only makes the connection not reusable.
//
// A request that carries a body (chunked, or a Content-Length above 0) never leaves the
// connection reusable, whatever the response says: an upstream may answer without reading the
// body (a GET handler that ignores it, an early 401 or 413), and the unread bytes, which one
// consumer chose, would be read as the start of the next consumer's request on that connection
// (cross-consumer capture; docs/architecture.md, "Upstream keep-alive").
//
// Sans-IO and single-threaded; one per upstream connection, reset() between exchanges.
#include <cstdint>
#include <string>

#include "proto/base/buffer.hh"
#include "proto/http1/body.hh"
#include "proto/http1/parser.hh"

namespace ferry::agent {

class exchange_tracker {
public:
    exchange_tracker();

    // A new exchange starts on the same connection.
    void reset();
    // Bytes toward the upstream, in order (the request, as the relay rewrote it).
    void request_bytes(bytes b);
    // Bytes from the upstream, in order.
    void response_bytes(bytes b);
    // The upstream closed its side: an until-close body ends here (never reusable anyway).
    void response_eof();

    // The request's method is idempotent (RFC 9110 9.2.2: GET, HEAD, OPTIONS, TRACE, PUT,
    // DELETE): sending it again after a connection failed before any answer is safe.
    bool request_idempotent() const noexcept { return idempotent_; }
    // Any byte of a response (interim ones included) has arrived.
    bool response_started() const noexcept { return resp_seen_; }
    // The final response is complete (its body framing says so).
    bool response_complete() const noexcept { return resp_ == side::done; }
    // The request announced a body (chunked, or a Content-Length above 0).
    bool request_had_body() const noexcept { return req_body_announced_; }
    // Both messages are complete, both sides allow keep-alive, the request carried no body and
    // nothing came after them: the connection is idle and may carry the next exchange.
    bool reusable() const noexcept {
        return req_ == side::done && resp_ == side::done && keep_alive_ && !req_body_announced_;
    }

private:
    enum class side : std::uint8_t { head, body, done, broken };
    void request_head(bytes in);
    void response_head(bytes in);
    static side follow_body(http1::body_reader& r, bytes b, bool no_body = false);

    side req_ = side::head;
    side resp_ = side::head;
    bool keep_alive_ = false;  // both heads allow another message
    bool resp_seen_ = false;
    bool idempotent_ = false;
    bool req_body_announced_ = false;
    std::string req_head_, resp_head_;  // a head cut across pieces, so far (bounded by the parsers' limits)
    http1::request_parser req_parser_;
    http1::response_parser resp_parser_;
    http1::body_reader req_body_, resp_body_;
};

}  // namespace ferry::agent
