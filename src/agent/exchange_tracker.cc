#include "agent/exchange_tracker.hh"

namespace ferry::agent {

namespace {

http1::limits body_limits() {
    http1::limits l;
    l.max_body = ~std::uint64_t(0);  // the relay enforces body limits; we only follow
    return l;
}

bytes as_bytes(const std::string& s) { return bytes(reinterpret_cast<const std::byte*>(s.data()), s.size()); }

// Head bytes usually arrive whole in one piece: they are parsed from the piece itself, and only
// a head cut across pieces is collected (parse_input appends the new piece to what is pending).
bytes parse_input(std::string& pending, bytes piece) {
    if (pending.empty()) return piece;
    pending.append(reinterpret_cast<const char*>(piece.data()), piece.size());
    return as_bytes(pending);
}

// An unfinished head: `in` (the piece, or a tail of `pending`) waits for the next piece.
void keep_pending(std::string& pending, bytes in) {
    const char* p = reinterpret_cast<const char*>(in.data());
    if (!pending.empty() && p >= pending.data() && p <= pending.data() + pending.size()) {
        pending.erase(0, static_cast<std::size_t>(p - pending.data()));
    } else {
        pending.assign(p, in.size());
    }
}

}  // namespace

exchange_tracker::exchange_tracker()
    : req_parser_(http1::limits{}), resp_parser_(http1::limits{}), req_body_(body_limits()),
      resp_body_(body_limits()) {}

void exchange_tracker::reset() {
    req_ = resp_ = side::head;
    keep_alive_ = false;
    resp_seen_ = false;
    idempotent_ = false;
    req_body_announced_ = false;
    req_head_.clear();
    resp_head_.clear();
    req_parser_.reset();
    resp_parser_.reset();
}

void exchange_tracker::request_bytes(bytes b) {
    if (b.empty()) return;
    switch (req_) {
    case side::head: return request_head(parse_input(req_head_, b));
    case side::body: req_ = follow_body(req_body_, b); return;
    case side::done:  // a second request on one channel: not ours to follow
    case side::broken: req_ = side::broken; return;
    }
}

void exchange_tracker::request_head(bytes in) {
    auto p = req_parser_.parse(in);
    if (p.need_more()) return keep_pending(req_head_, in);
    if (p.failed()) {
        req_ = side::broken;
        return;
    }
    const http1::request_head& h = req_parser_.head();
    if (h.upgrade || h.method == "CONNECT") {
        req_ = side::broken;
        return;
    }
    keep_alive_ = h.keep_alive;
    idempotent_ = h.method == "GET" || h.method == "HEAD" || h.method == "OPTIONS" || h.method == "TRACE" ||
                  h.method == "PUT" || h.method == "DELETE";
    resp_parser_.set_request_method(h.method);
    req_body_announced_ = h.body.kind == http1::body_kind::chunked ||
                          (h.body.kind == http1::body_kind::content_length && h.body.length > 0);
    req_body_.start(h.body);
    req_ = follow_body(req_body_, in.subspan(p.consumed), h.body.kind == http1::body_kind::none);
    req_head_.clear();  // after the line above: `in` may point into it
}

exchange_tracker::side exchange_tracker::follow_body(http1::body_reader& r, bytes b, bool no_body) {
    // What follows a head: its body, then nothing (anything after the message is not ours).
    if (no_body) return b.empty() ? side::done : side::broken;
    while (!b.empty()) {
        auto p = r.pass_through(b);
        if (p.failed()) return side::broken;
        b = b.subspan(p.consumed);
        if (p.done()) return b.empty() ? side::done : side::broken;
        if (p.consumed == 0) break;
    }
    return r.done() ? side::done : side::body;
}

void exchange_tracker::response_bytes(bytes b) {
    if (b.empty()) return;
    resp_seen_ = true;
    // A response before the whole request head went out is something we cannot follow.
    if (req_ == side::head || req_ == side::broken) {
        resp_ = side::broken;
        return;
    }
    switch (resp_) {
    case side::head: return response_head(parse_input(resp_head_, b));
    case side::body: resp_ = follow_body(resp_body_, b); return;
    case side::done:  // bytes after the response
    case side::broken: resp_ = side::broken; return;
    }
}

void exchange_tracker::response_head(bytes in) {
    for (;;) {
        auto p = resp_parser_.parse(in);
        if (p.need_more()) return keep_pending(resp_head_, in);
        if (p.failed()) {
            resp_ = side::broken;
            return;
        }
        const http1::response_head& h = resp_parser_.head();
        if (h.upgrade || h.status_code == 101) {
            resp_ = side::broken;
            return;
        }
        in = in.subspan(p.consumed);
        if (h.status_code < 200) {  // 100 Continue, 103 Early Hints: the final head follows
            resp_parser_.reset();
            if (!in.empty()) continue;
            resp_head_.clear();
            return;
        }
        keep_alive_ = keep_alive_ && h.keep_alive && h.body.kind != http1::body_kind::until_close;
        resp_body_.start(h.body);
        resp_ = follow_body(resp_body_, in, h.body.kind == http1::body_kind::none);
        resp_head_.clear();  // after the line above: `in` may point into it
        return;
    }
}

void exchange_tracker::response_eof() {
    keep_alive_ = false;
    if (resp_ != side::body) return;
    auto p = resp_body_.finish();
    resp_ = p.done() ? side::done : side::broken;
}

}  // namespace ferry::agent
