#include "tunnel/exchange_tracker.hh"

namespace ferry::tunnel {

namespace {

http1::limits body_limits() {
    http1::limits l;
    l.max_body = ~std::uint64_t(0);  // the relay enforces body limits; we only follow
    return l;
}

bytes as_bytes(const std::string& s) { return bytes(reinterpret_cast<const std::byte*>(s.data()), s.size()); }

}  // namespace

exchange_tracker::exchange_tracker()
    : req_parser_(http1::limits{}), resp_parser_(http1::limits{}), req_body_(body_limits()),
      resp_body_(body_limits()) {}

void exchange_tracker::reset() {
    req_ = resp_ = side::head;
    keep_alive_ = false;
    resp_seen_ = false;
    idempotent_ = false;
    req_head_.clear();
    resp_head_.clear();
    req_parser_.reset();
    resp_parser_.reset();
}

void exchange_tracker::request_bytes(bytes b) {
    if (b.empty()) return;
    switch (req_) {
    case side::head:
        req_head_.append(reinterpret_cast<const char*>(b.data()), b.size());
        return parse_request_head();
    case side::body: return request_body(b);
    case side::done:  // a second request on one channel: not ours to follow
    case side::broken: req_ = side::broken; return;
    }
}

void exchange_tracker::parse_request_head() {
    auto p = req_parser_.parse(as_bytes(req_head_));
    if (p.need_more()) return;
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
    req_body_.start(h.body);
    req_ = side::body;
    std::string rest = req_head_.substr(p.consumed);
    req_head_.clear();
    if (h.body.kind == http1::body_kind::none) {
        req_ = side::done;
        if (!rest.empty()) req_ = side::broken;
        return;
    }
    if (!rest.empty()) request_body(as_bytes(rest));
}

void exchange_tracker::request_body(bytes b) {
    while (!b.empty() && req_ == side::body) {
        auto p = req_body_.pass_through(b);
        if (p.failed()) {
            req_ = side::broken;
            return;
        }
        b = b.subspan(p.consumed);
        if (p.done()) {
            req_ = side::done;
            if (!b.empty()) req_ = side::broken;  // bytes after the request
            return;
        }
        if (p.consumed == 0) return;
    }
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
    case side::head:
        resp_head_.append(reinterpret_cast<const char*>(b.data()), b.size());
        return parse_response_head();
    case side::body: return response_body(b);
    case side::done:  // bytes after the response
    case side::broken: resp_ = side::broken; return;
    }
}

void exchange_tracker::parse_response_head() {
    for (;;) {
        auto p = resp_parser_.parse(as_bytes(resp_head_));
        if (p.need_more()) return;
        if (p.failed()) {
            resp_ = side::broken;
            return;
        }
        const http1::response_head& h = resp_parser_.head();
        if (h.upgrade || h.status_code == 101) {
            resp_ = side::broken;
            return;
        }
        if (h.status_code < 200) {  // 100 Continue, 103 Early Hints: the final head follows
            resp_head_.erase(0, p.consumed);
            resp_parser_.reset();
            if (resp_head_.empty()) return;
            continue;
        }
        keep_alive_ = keep_alive_ && h.keep_alive && h.body.kind != http1::body_kind::until_close;
        resp_body_.start(h.body);
        resp_ = side::body;
        std::string rest = resp_head_.substr(p.consumed);
        resp_head_.clear();
        if (h.body.kind == http1::body_kind::none) {
            resp_ = rest.empty() ? side::done : side::broken;
            return;
        }
        if (!rest.empty()) response_body(as_bytes(rest));
        return;
    }
}

void exchange_tracker::response_body(bytes b) {
    while (!b.empty() && resp_ == side::body) {
        auto p = resp_body_.pass_through(b);
        if (p.failed()) {
            resp_ = side::broken;
            return;
        }
        b = b.subspan(p.consumed);
        if (p.done()) {
            resp_ = b.empty() ? side::done : side::broken;
            return;
        }
        if (p.consumed == 0) return;
    }
}

void exchange_tracker::response_eof() {
    keep_alive_ = false;
    if (resp_ != side::body) return;
    auto p = resp_body_.finish();
    resp_ = p.done() ? side::done : side::broken;
}

}  // namespace ferry::tunnel
