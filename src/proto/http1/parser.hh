#pragma once
// Incremental, zero-copy HTTP/1.1 head parsers (RFC 9112 §2-§6).
//
// Input contract (read this before using the parsers):
//   * Each call to parse() gets the *whole head received so far*: a span that starts at the
//     first byte of this message (after the previous message's body) and ends at the last byte
//     received. Between calls the caller may only append: the bytes already passed must stay the
//     same. Bytes after the head (body, next message) may be included; they are not looked at.
//   * The span must be contiguous, so the caller accumulates a partial head in one buffer of up
//     to limits::max_head_bytes (the parser fails before needing more).
//   * The parser remembers where it stopped (the start of the unfinished line and how far it has
//     already scanned it), so each call only looks at new bytes. Keep the buffer at the same
//     address between calls: if the address changes, the parser notices and starts again from
//     the beginning of the head (correct, but it rescans).
//   * Once parse() reports done, head() holds views into that last span: keep those bytes alive
//     and unmoved for as long as you use the head. reset() before parsing the next message.
//
// The parsers never allocate while parsing; header views go into storage given at construction
// (or allocated once by the constructor). They are single-threaded objects owned by the
// connection that feeds them.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>

#include "proto/http1/types.hh"

namespace ferry::http1 {

// What both kinds of head have in common. All views point into the parsed input.
struct message_head {
    version ver = version::http_1_1;
    std::span<const header> headers;   // in arrival order, duplicates kept
    framing body;                      // how the body that follows is delimited
    bool keep_alive = false;           // the connection may carry another message after this one
    bool upgrade = false;              // see request_head / response_head
    std::size_t size = 0;              // bytes of the head (== progress::consumed)

    // First header named `name` (case-insensitive) or nullptr.
    const header* find(std::string_view name) const noexcept { return find_header(headers, name); }
    // Value of the first header named `name`, "" when absent.
    std::string_view value(std::string_view name) const noexcept {
        const header* h = find(name);
        return h ? h->value : std::string_view{};
    }
};

struct request_head : message_head {
    std::string_view method;   // case-sensitive token ("GET")
    std::string_view target;   // request-target as sent (origin, absolute, authority or "*")
    std::string_view host;     // the Host field value ("" only for HTTP/1.0 without Host)
    bool expect_continue = false;  // HTTP/1.1 with "Expect: 100-continue"
    // upgrade: HTTP/1.1, an Upgrade header, and "upgrade" in Connection. The protocols are
    // value("upgrade"); the WebSocket helper validates the handshake itself.
};

struct response_head : message_head {
    int status_code = 0;        // 100..599
    std::string_view reason;    // may be empty
    // upgrade: a 101 with an Upgrade header, or a 2xx answer to CONNECT: the bytes after the
    // head belong to the new protocol / tunnel. body is none then.
};

namespace detail {

// The machinery shared by both parsers (the line loop, the limits, the framing headers).
class head_parser_base {
public:
    head_parser_base(const head_parser_base&) = delete;
    head_parser_base& operator=(const head_parser_base&) = delete;
    // Movable (header storage is on the heap or the caller's, so views stay valid).
    head_parser_base(head_parser_base&&) noexcept = default;
    head_parser_base& operator=(head_parser_base&&) noexcept = default;

    // Forget the current head (and any failure); the next parse() starts a new message.
    void reset() noexcept;
    const limits& get_limits() const noexcept { return lim_; }
    // Bytes the line scanner has looked at since construction: lets tests (and metrics) check
    // that feeding a head in pieces does not rescan what was already scanned.
    std::uint64_t bytes_scanned() const noexcept { return scanned_; }

protected:
    enum class role : std::uint8_t { request, response };
    head_parser_base(role r, const limits& l, std::span<header> storage);
    head_parser_base(role r, const limits& l);
    ~head_parser_base();

    progress run(bytes in) noexcept;

    // Field-derived state collected while lines arrive, turned into framing at the end.
    struct fields {
        std::uint64_t content_length = 0;
        std::uint16_t host_count = 0;
        bool have_cl = false;
        bool cl_overflow = false;       // the Content-Length value does not fit 64 bits
        bool have_te = false;
        bool te_seen_chunked = false;
        bool te_last_chunked = false;   // the final coding seen so far is chunked
        bool te_chunked_twice = false;
        bool te_other = false;          // a coding other than chunked
        bool te_empty = true;           // no coding at all in the TE lines so far
        bool conn_close = false;
        bool conn_keep_alive = false;
        bool conn_upgrade = false;
        bool have_upgrade = false;
        bool expect_continue = false;
    };

    role role_;
    limits lim_;
    std::unique_ptr<header[]> owned_;
    std::span<header> store_;
    std::size_t max_headers_;

    // Resumption state: offsets into the caller's buffer (its address is base_).
    const char* base_ = nullptr;
    std::size_t seen_ = 0;         // size of the previous input
    std::size_t line_start_ = 0;   // start of the line being looked at
    std::size_t search_ = 0;       // bytes [line_start_, search_) are known to hold no CR/CTL
    std::size_t count_ = 0;        // headers stored
    std::uint64_t scanned_ = 0;
    bool in_start_line_ = true;
    bool finished_ = false;        // done or failed: `last_` is the sticky answer
    progress last_{};
    fields f_{};

    // Filled by the start-line parsers.
    version ver_ = version::http_1_1;
    std::string_view method_, target_, reason_, host_;
    int status_code_ = 0;
    bool head_request_ = false;     // response parser: the request was HEAD
    bool connect_request_ = false;  // response parser: the request was CONNECT

    request_head req_{};
    response_head resp_{};

private:
    void restart() noexcept;
    progress fail(errc c, const char* detail, std::size_t offset) noexcept;
    bool parse_request_line(const char* s, const char* e, std::size_t off, progress& out) noexcept;
    bool parse_status_line(const char* s, const char* e, std::size_t off, progress& out) noexcept;
    bool parse_field_line(const char* s, const char* e, std::size_t off, progress& out) noexcept;
    bool parse_version(const char* s, std::size_t off, progress& out) noexcept;
    progress finish(const char* base, std::size_t end) noexcept;
};

}  // namespace detail

// Parses request heads (server side: the relay's consumer ingress).
// Leading empty lines (CRLF only) before the request line are skipped, as RFC 9112 §2.2 allows,
// and count towards max_head_bytes; a bare LF there is rejected like anywhere else.
class request_parser : public detail::head_parser_base {
public:
    // Allocates header storage for l.max_headers once.
    explicit request_parser(const limits& l = {}) : head_parser_base(role::request, l) {}
    // Uses the caller's storage (no allocation); at most storage.size() headers are accepted.
    request_parser(const limits& l, std::span<header> storage)
        : head_parser_base(role::request, l, storage) {}

    // See the input contract at the top of this file. Returns need_more, done (consumed = head
    // size) or failed (err.code maps to a status with status_for(); err.offset is the offending
    // byte's offset in the input; at is the stage).
    progress parse(bytes in) noexcept { return run(in); }
    // Valid after parse() returned done, until reset() or the input goes away.
    const request_head& head() const noexcept { return req_; }
};

// Parses response heads (client side: the agent, and the relay reading the agent's upstream).
// No leading empty lines are accepted. Tell it the request method first: the answer to HEAD has
// no body whatever it declares, and a 2xx answer to CONNECT starts a tunnel.
class response_parser : public detail::head_parser_base {
public:
    explicit response_parser(const limits& l = {}) : head_parser_base(role::response, l) {}
    response_parser(const limits& l, std::span<header> storage)
        : head_parser_base(role::response, l, storage) {}

    // Method of the request this response answers (kept across reset(); default GET-like).
    void set_request_method(std::string_view method) noexcept {
        head_request_ = method == "HEAD";
        connect_request_ = method == "CONNECT";
    }
    progress parse(bytes in) noexcept { return run(in); }
    const response_head& head() const noexcept { return resp_; }
};

}  // namespace ferry::http1
