#pragma once
// The relay's consumer ingress logic, sans-IO (SPEC §3, §4): which tunnel a request is for, the
// consumer's bearer token, the request head sent to the agent's upstream, the response head sent
// back to the consumer, and the JSON error answers. No sockets, no clock, no randomness of its
// own (the caller passes random bytes), no exceptions; heads are written into the caller's
// buffer_chain. Pure functions: callable from any shard. See docs/errors.md for the error codes.
//
// Everything here takes a parsed http1::request_head / response_head: the views in it point into
// the connection's receive buffer, which must stay alive and unmoved during the call (and, for
// the views a `route` holds, for as long as the route is used).
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "proto/base/buffer.hh"
#include "proto/base/result.hh"
#include "proto/http1/parser.hh"
#include "proto/http1/types.hh"
#include "proto/jwt/token.hh"

namespace ferry::relay::ingress {

// ---- tunnel names and routing -------------------------------------------------------------------

inline constexpr std::size_t max_tunnel_name = 63;

// A DNS label (RFC 1035 §2.3.1, lower case only): 1..63 of [a-z0-9-], no leading or trailing '-'.
// Callers lowercase first (route_request does).
bool valid_tunnel_name(std::string_view name) noexcept;

struct route {
    // The tunnel, lower case. A view into the head, or into `scratch` when it had to be lowercased.
    std::string_view tunnel;
    // The request-target the upstream gets: origin-form "/<path>[?query]", never empty. A view
    // into the head, or into `scratch` when it had to be rebuilt ("/t/a?q" -> "/?q").
    std::string_view target;
    // Routed by Host "<tunnel>.<base_domain>" (target unchanged) rather than by "/t/<tunnel>/".
    bool by_host = false;
    // Path form only: "/t/<tunnel>" as sent (a view into the head), for X-Forwarded-Prefix.
    std::string_view prefix;
    // An absolute-form target's authority ("http://AUTHORITY/..."; a view into the head), else
    // empty. An HTTP/1.0 request may name its host only there: it becomes the upstream's Host.
    std::string_view authority;
};

enum class route_error : std::uint8_t {
    none,
    not_found,   // neither "/t/<name>" nor a Host under base_domain: not a tunnel request (404)
    bad_name,    // the name is not a valid tunnel name ("/t/-x/", "/t/a%2fb/", "x.y.<base>") (400)
    bad_target,  // not origin-form, a dot segment in "/t/<name>/...", a fragment, bad %-escape (400)
};

// The route_error behind a failed route_request (its error's code: not_found = errc::unsupported,
// bad_name = errc::invalid_argument, bad_target = errc::http_bad_request; `detail` says more).
route_error route_error_of(const error& e) noexcept;

// Finds the tunnel and the upstream target of a consumer request (SPEC §4).
//
// Target forms: origin-form ("/..."), and absolute-form ("http[s]://authority/...", RFC 9112
// §3.2.2) when its authority equals the Host field (case-insensitive; HTTP/1.0 without Host: the
// authority is used as the host). Absolute-form is forwarded as origin-form. Authority-form,
// asterisk-form, CONNECT, any '#' and two Host lines (an HTTP/1.0 request) -> bad_target.
//
// Host form (checked first; only with a non-empty base_domain, which the caller gives in lower
// case, without leading or trailing dot): Host "<name>.<base_domain>[:port][.]" matched
// case-insensitively; <name> must be one valid label (else bad_name). The target goes to the
// upstream unchanged, even if it starts with "/t/": under a tunnel's own host name every path
// belongs to its service. (So the relay's own host name must be base_domain itself or lie
// outside it; Host "relay.<base_domain>" means tunnel "relay".)
//
// Path form: "/t/<name>" followed by end, '/' or '?'. <name> is lowercased ("/t/LLM/" is tunnel
// "llm"), then must be valid (no %-escapes: "/t/a%2fb/" -> bad_name). The rest is the target:
// "/t/a" -> "/", "/t/a?q" -> "/?q", "/t/a/x?q" -> "/x?q", and a leading run of separators ('/',
// '\', %2f, %5c) collapses to one '/' ("/t/a//x", "/t/a/\x" and "/t/a/%2F%2Fx" -> "/x"), so the
// upstream never sees a "//authority" or "/\authority" target, which some servers and browsers
// (after a redirect to it) read as another host. Escapes
// are refused, never normalised: any "." or ".." segment in the path, counting %2e as '.', and
// '/', '\', %2f, %5c as segment separators ("/t/a/../b", "/t/a/%2e%2e/b", "/t/a/..%2fb") and any
// malformed %-escape in the path -> bad_target. The query is not inspected.
//
// `scratch` is caller storage reused across requests (no allocation once it has grown); the
// route's views may point into it, so it must outlive their use and not be modified meanwhile.
result<route> route_request(const http1::request_head& h, std::string_view base_domain,
                            std::string& scratch);

// ---- consumer credentials -----------------------------------------------------------------------

// The consumer's bearer token (RFC 6750 §2.1): "Authorization: Bearer <token68>", scheme
// case-insensitive, one or more spaces, nothing after the token.
//   no Authorization field       -> "" (empty view)
//   two or more Authorization    -> errc::http_bad_request (ambiguous credentials)
//   another scheme ("Basic ...") -> errc::unsupported (for a public tunnel with
//                                   keep_authorization, it may be meant for the upstream)
//   "Bearer" malformed / empty   -> errc::auth
// The view points into the head.
result<std::string_view> bearer_token(const http1::request_head& h);

// SPEC §4: allowed when claims.sub owns the tunnel, or its ferry_tunnels claim names the tunnel,
// or the tunnel is public. An empty owner_sub owns nothing.
bool consumer_allowed(const jwt::claims& c, std::string_view tunnel, std::string_view owner_sub,
                      bool is_public) noexcept;

// ---- the upstream request head ------------------------------------------------------------------

struct forward_context {
    std::string_view client_ip;        // consumer address (X-Forwarded-For, X-Real-IP; "" = none)
    // The peer is a trusted proxy (relay_config::trusted_proxies): its X-Forwarded-For is kept
    // and extended, its Forwarded and X-Real-IP kept. Otherwise all three are replaced by what
    // the relay saw (X-Forwarded-For and X-Real-IP: client_ip; no Forwarded).
    bool trusted_proxy = false;
    bool tls = false;                  // X-Forwarded-Proto: https | http
    std::string_view request_id;       // X-Request-Id ("" = none sent)
    std::string_view traceparent;      // the value to send (make_traceparent); "" = none sent
    bool keep_authorization = false;   // forward the consumer's Authorization/Cookie
};

// Writes the head the agent's upstream gets: "<method> <route.target> HTTP/1.1", then the
// consumer's fields in order except:
//   * hop-by-hop ones: Connection, Keep-Alive, Proxy-Connection, TE, Trailer, Upgrade and the
//     fields the Connection lines name -- except Host, Content-Length, Transfer-Encoding and
//     Expect, which a Connection option can never remove (the relay forwards the body verbatim
//     with the consumer's framing, so the upstream must see the same framing: "Connection:
//     content-length" would otherwise smuggle the body in as a second request);
//   * Authorization, Proxy-Authorization and Cookie unless ctx.keep_authorization;
//   * X-Request-Id, traceparent, X-Forwarded-For/-Proto/-Host/-Prefix (replaced below), and
//     tracestate when ctx.traceparent does not continue the consumer's trace or any tracestate
//     line is not valid W3C syntax (valid_tracestate);
//   * Forwarded and X-Real-IP unless ctx.trusted_proxy;
// then X-Forwarded-For (trusted proxy: the consumer's X-Forwarded-For lines joined, ", ",
// ctx.client_ip; otherwise ctx.client_ip alone), X-Real-IP (ctx.client_ip, unless a trusted proxy
// sent one), X-Forwarded-Proto, X-Forwarded-Host (the consumer's Host, or the absolute-form
// authority), X-Forwarded-Prefix ("/t/<name>", path form only), X-Request-Id, traceparent, and Host
// when an HTTP/1.0 consumer sent none (the absolute-form authority, else the tunnel name). No
// Connection field: `ferry agent` may keep the upstream connection for the next channel. Host,
// Expect and Transfer-Encoding stay as sent. Errors (nothing written): errc::invalid_argument for a value
// that cannot be written (CR/LF/CTL in ctx strings), errc::limit_exceeded when the Connection
// lines name more than 32 fields, errc::http_bad_request for two Host lines (answer 400).
status write_upstream_head(buffer_chain& out, const http1::request_head& h, const route& r,
                           const forward_context& ctx);

// ---- the consumer response head -----------------------------------------------------------------

// Whether the relay may keep the consumer connection open after this response: keep_alive (the
// request's own http1 keep-alive and the relay's policy), unless the response body runs until
// the upstream closes, or has to be de-chunked for an HTTP/1.0 consumer.
bool consumer_keep_alive(const http1::response_head& h, http1::version consumer_version,
                         bool keep_alive) noexcept;

// True when the body must be sent de-chunked (http1::body_reader::decode, payload only) because
// the consumer speaks HTTP/1.0, which has no chunked coding (RFC 9112 §6.1). The connection then
// closes after the body (consumer_keep_alive is false).
bool consumer_needs_dechunk(const http1::response_head& h, http1::version consumer_version) noexcept;

// The response head toward the consumer: "HTTP/1.1 <code> <reason>" (our version, RFC 9110 §2.5)
// and the upstream's fields minus hop-by-hop ones (Transfer-Encoding kept for HTTP/1.1 consumers;
// Content-Length and Transfer-Encoding can never be removed by a Connection option) and minus
// its X-Request-Id; then X-Request-Id: request_id (if not empty) and, by
// consumer_keep_alive(): "Connection: close", or "Connection: keep-alive" for an HTTP/1.0
// consumer kept open, or nothing (HTTP/1.1 default).
// Interim 1xx heads are written with the fields only (no X-Request-Id, no Connection); for an
// HTTP/1.0 consumer nothing at all is written (RFC 9110 §15.2) and the call succeeds.
// A 101 (the relay never forwards Upgrade, so the upstream may not switch) -> errc::unsupported:
// answer 502 upstream_bad_response.
status write_consumer_response_head(buffer_chain& out, const http1::response_head& h,
                                    http1::version consumer_version, bool keep_alive,
                                    std::string_view request_id);

// ---- errors (SPEC §4, docs/errors.md) -------------------------------------------------------------

enum class error_kind : std::uint8_t {
    bad_request,            // 400 bad_request
    bad_tunnel_name,        // 400 bad_tunnel_name
    token_missing,          // 401 token_missing       WWW-Authenticate: Bearer realm="ferry"
    token_invalid,          // 401 token_invalid       ... error="invalid_token"
    token_expired,          // 401 token_expired       ... error_description="token expired"
    token_not_yet_valid,    // 401 token_not_yet_valid
    forbidden,              // 403 forbidden           ... error="insufficient_scope"
    route_not_found,        // 404 not_found           (no /t/<name>/ and no tunnel host)
    not_found,              // 404 tunnel_not_found    (unknown tunnel)
    method_not_allowed,     // 405 method_not_allowed  (Allow: error_extra::allow)
    request_timeout,        // 408 request_timeout     (head not received in time)
    payload_too_large,      // 413 body_too_large
    uri_too_long,           // 414 uri_too_long
    rate_limited,           // 429 rate_limited        Retry-After, X-RateLimit-*
    headers_too_large,      // 431 headers_too_large
    internal_error,         // 500 internal_error
    not_implemented,        // 501 not_implemented     (unsupported transfer coding)
    bad_gateway,            // 502 upstream_unreachable (the agent could not reach its target)
    upstream_bad_response,  // 502 upstream_bad_response (unparsable or refused upstream head)
    tunnel_offline,         // 503 tunnel_offline      Retry-After (after the queue wait)
    tunnel_busy,            // 503 tunnel_busy         Retry-After (queue full)
    circuit_open,           // 503 circuit_open        Retry-After (per-tunnel breaker open)
    draining,               // 503 relay_draining      Retry-After
    gateway_timeout,        // 504 upstream_timeout
    version_not_supported,  // 505 http_version_not_supported
    unauthorized = token_invalid,
};
inline constexpr std::size_t error_kind_count = 25;

struct error_info {
    error_kind kind;
    int status;
    std::string_view code;             // stable, for clients, logs and metric labels
    std::string_view default_message;  // used when write_error gets an empty message
};

// The one table of error codes (index = the kind's value).
std::span<const error_info> error_table() noexcept;
const error_info& info(error_kind k) noexcept;

struct error_extra {
    // Retry-After seconds. 429 and every 503 always carry one (at least 1); others only when > 0.
    std::uint32_t retry_after_s = 0;
    // X-RateLimit-Limit / -Remaining / -Reset (seconds until the bucket is full again): always on
    // 429, on other kinds only when rate_limit > 0.
    std::uint32_t rate_limit = 0;
    std::uint32_t rate_remaining = 0;
    std::uint32_t rate_reset_s = 0;
    std::string_view allow;            // 405: the Allow field value ("" = none)
    bool head_request = false;         // answer to HEAD: same head, no body (RFC 9110 §9.3.2)
    http1::version consumer_version = http1::version::http_1_1;  // keep-alive spelling for 1.0
};

// A complete error response: status line, Content-Type: application/json, Content-Length,
// Cache-Control: no-store, X-Content-Type-Options: nosniff, X-Request-Id (when not empty), the
// kind's extra fields, "Connection: close" unless keep_alive ("Connection: keep-alive" for an
// HTTP/1.0 consumer kept open), then the body
//   {"error":{"code":"<code>","message":"<message>","request_id":"<request_id>"}}
// with message and request_id JSON-escaped (NUL and invalid UTF-8 become U+FFFD; '<' '>' '&'
// escaped).
// An empty message uses the kind's default. errc::invalid_argument (nothing written) when
// request_id or allow cannot go into a header (CR, LF, CTL).
status write_error(buffer_chain& out, error_kind k, std::string_view message,
                   std::string_view request_id, bool keep_alive, const error_extra& x = {});

// A jwt::verify failure as an error kind: token_expired, token_not_yet_valid, internal_error for
// errc::crypto (our failure, not the token's), token_invalid for everything else.
error_kind kind_for_token_error(errc e) noexcept;

// A request head parse failure (http1::request_parser) as an error kind: 413, 414, 431, 501,
// 505, else bad_request.
error_kind kind_for_http_error(errc e) noexcept;

// A route failure as an error kind: route_not_found, bad_tunnel_name, bad_request.
error_kind kind_for(route_error e) noexcept;

// ---- request ids and trace context --------------------------------------------------------------

// 16 random bytes -> 32 lowercase hex digits (no terminating NUL).
void format_request_id(std::span<const std::byte, 16> rnd, char (&out)[32]) noexcept;

inline constexpr std::size_t traceparent_size = 55;  // "00-" 32 "-" 16 "-" 2

// True for a W3C trace-context traceparent we continue: version 00, exactly 55 chars, lowercase
// hex, trace-id and parent-id not all zero. Any other version (even one the spec would let us
// parse as 00) starts a new trace: we cannot know what a later version means.
bool valid_traceparent(std::string_view v) noexcept;

// True for a tracestate field value in W3C syntax (trace-context §3.3): at most 32 list members
// "key=value" separated by "," with optional spaces and tabs, empty members allowed, keys
// "lcalpha *255(lcalpha / DIGIT / _ - * /)" or "tenant@system", values 1-256 printable ASCII
// without "," or "=" and not ending in a space; at most 512 characters.
bool valid_tracestate(std::string_view v) noexcept;

// The traceparent to send upstream. A valid `incoming` keeps its trace-id and flags and gets a
// new parent-id (rnd[16..24)); otherwise a new trace (trace-id rnd[0..16), parent-id
// rnd[16..24), flags 01 if sample_new else 00). An all-zero id from rnd is made non-zero.
// Invalid incoming values are replaced, never forwarded. Writes version 00, 55 chars.
void make_traceparent(std::string_view incoming, std::span<const std::byte, 24> rnd,
                      char (&out)[traceparent_size], bool sample_new = false) noexcept;
std::string make_traceparent(std::string_view incoming, std::span<const std::byte, 24> rnd,
                             bool sample_new = false);

// The consumer's traceparent to pass to make_traceparent: the value of the only traceparent
// field, "" when there is none or more than one (W3C trace-context §3.2: then it is invalid).
std::string_view incoming_traceparent(const http1::request_head& h) noexcept;

// True when `outgoing` continues the trace of `incoming` (a valid incoming with the same
// trace-id): tracestate may then be forwarded.
bool continues_trace(std::string_view incoming, std::string_view outgoing) noexcept;

}  // namespace ferry::relay::ingress
