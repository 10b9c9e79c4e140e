#include "link/ws_client.hh"

#include <algorithm>
#include <cstring>
#include <vector>

#include "proto/base/log.hh"
#include "proto/jwt/json.hh"

namespace ferry::link {

namespace {
constexpr std::size_t max_response_headers = 64;
constexpr std::uint32_t max_retry_after = 86400;

// Digits only ("120"); an HTTP-date or anything else counts as absent.
std::uint32_t parse_seconds(std::string_view v) noexcept {
    if (v.empty() || v.size() > 9) return 0;
    std::uint32_t n = 0;
    for (char c : v) {
        if (c < '0' || c > '9') return 0;
        n = n * 10 + std::uint32_t(c - '0');
    }
    return std::min(n, max_retry_after);
}

// Keeps peer text printable and short for logs.
std::string printable(std::string_view s, std::size_t max) {
    std::string o;
    o.reserve(std::min(s.size(), max));
    for (char c : s.substr(0, max)) o += (c >= ' ' && c <= '~') ? c : '?';
    return o;
}
}  // namespace

ws_refusal parse_refusal(int status, std::span<const ws::header> headers, std::string_view body) {
    ws_refusal r;
    r.status = status;
    for (const ws::header& h : headers) {
        if (ws::iequals(h.name, "Retry-After")) r.retry_after = parse_seconds(h.value);
    }
    jwt::json::limits lim;
    lim.max_depth = 4;
    lim.max_values = 64;
    lim.max_members = 16;
    lim.max_string = 1024;
    jwt::json::document doc;
    if (body.empty() || !jwt::json::parse(body, lim, doc)) return r;
    if (doc.root().k != jwt::json::kind::object) return r;
    const jwt::json::node* e = doc.find(doc.root(), "error");
    if (!e || e->k != jwt::json::kind::object) return r;
    if (const jwt::json::node* c = doc.find(*e, "code"); c && c->k == jwt::json::kind::string) {
        r.code = printable(doc.str(*c), 64);
    }
    if (const jwt::json::node* m = doc.find(*e, "message"); m && m->k == jwt::json::kind::string) {
        r.message = printable(doc.str(*m), 256);
    }
    return r;
}

struct ws_client_connection::pending_refusal {
    int status = 0;
    std::string retry_after;          // the header's value, if any
    std::size_t expected = SIZE_MAX;  // Content-Length (bounded), SIZE_MAX: until EOF
    std::string body;
};

ws_client_connection::ws_client_connection(reactor::shard& s, ws_client_options o, ssh::rng& random)
    : opt_(std::move(o)), rng_(random), timer_(s, [this] {
          if (refusal_) {
              finish_refusal();  // a refusal whose body is slow: report what came
          } else if (!codec_) {
              refuse(error(errc::timeout, "no WebSocket upgrade within the handshake timeout"));
          } else {
              // Our close was not answered, or the server did not close TCP after the
              // handshake: drop the socket.
              close(reactor::close_mode::abort);
          }
      }) {
    timer_.arm_after(opt_.handshake_timeout);
}

ws_client_connection::~ws_client_connection() = default;

void ws_client_connection::refill_pool() noexcept {
    if (!rng_.fill(mut_bytes(pool_))) {
        // The CSPRNG failed: keep framing valid (masking is for intermediaries, not secrecy)
        // by stirring the old pool, and say so once.
        static bool said = false;
        if (!said) {
            said = true;
            FERRY_LOG(error, "ws client: random generator failed; mask keys are weak");
        }
        for (std::size_t i = 0; i < pool_.size(); ++i) pool_[i] = std::byte(unsigned(pool_[i]) * 33u + i);
    }
    pool_used_ = 0;
}

std::uint32_t ws_client_connection::next_mask(void* p) noexcept {
    auto* self = static_cast<ws_client_connection*>(p);
    if (self->pool_used_ + 4 > self->pool_.size()) self->refill_pool();
    std::uint32_t k;
    std::memcpy(&k, self->pool_.data() + self->pool_used_, 4);
    self->pool_used_ += 4;
    return k;
}

void ws_client_connection::on_open() {
    std::array<std::byte, 16> nonce{};
    if (!rng_.fill(mut_bytes(nonce))) {
        refuse(error(errc::crypto, "no randomness for Sec-WebSocket-Key"));
        return;
    }
    key_ = ws::make_key(nonce);
    ws::client_request req;
    req.host = opt_.host;
    req.target = opt_.target;
    req.extra_headers = opt_.extra_headers;
    buffer_chain out;
    ws::write_upgrade_request(out, req, key_);
    (void)send(std::move(out));  // errc::closed only if already closing
    // The extra headers may carry a bearer token: not needed any more, do not keep it.
    ssh::wipe(mut_bytes(reinterpret_cast<std::byte*>(opt_.extra_headers.data()), opt_.extra_headers.size()));
    opt_.extra_headers.clear();
    head_.reserve(std::min<std::size_t>(opt_.max_head_bytes, 4096));
}

void ws_client_connection::on_data(slice data) {
    if (codec_) {
        feed(std::move(data));
    } else if (refusal_) {
        on_body_bytes(data.view());
    } else if (!refused_reported_) {
        on_head_bytes(std::move(data));
    }
}

void ws_client_connection::on_head_bytes(slice data) noexcept {
    head_.append(reinterpret_cast<const char*>(data.data()), data.size());
    std::array<ws::header, max_response_headers> storage;
    ws::response_head resp;
    ws::head_limits lim;
    lim.max_bytes = opt_.max_head_bytes;
    auto used = ws::parse_response_head(as_bytes(head_), resp, storage, lim);
    if (!used) {
        refuse(used.err());
        return;
    }
    if (*used == 0) return;  // incomplete (bounded by max_head_bytes)
    const std::size_t head_size = *used;
    // The head did not end before this receive, so what follows it lies in `data`.
    const std::size_t rest = head_.size() - head_size;

    if (resp.status != 101) {
        auto p = std::make_unique<pending_refusal>();
        p->status = resp.status;
        for (const ws::header& h : resp.headers) {
            if (ws::iequals(h.name, "Retry-After")) p->retry_after = std::string(h.value.substr(0, 32));
            if (ws::iequals(h.name, "Content-Length")) {
                std::size_t n = 0;
                bool ok = !h.value.empty() && h.value.size() <= 12;
                for (char c : h.value) {
                    if (c < '0' || c > '9') ok = false;
                    else n = n * 10 + std::size_t(c - '0');
                }
                if (ok) p->expected = std::min(n, opt_.max_refusal_body);
            }
        }
        refusal_ = std::move(p);
        std::string tail = head_.substr(head_size);
        head_.clear();
        head_.shrink_to_fit();
        on_body_bytes(as_bytes(tail));
        return;
    }

    ws::client_request req;  // what we offered (no extensions, no subprotocols)
    req.host = opt_.host;
    req.target = opt_.target;
    auto up = ws::check_upgrade_response(resp, key_, req);
    if (!up) {
        refuse(up.err());
        return;
    }
    timer_.cancel();
    ws::codec_options co;
    co.lim = opt_.limits;
    co.pmd = up->deflate;  // never offered, so always nullopt
    co.mask = ws::mask_source{&ws_client_connection::next_mask, this};
    codec_ = std::make_unique<ws::codec>(ws::role::client, co);
    head_.clear();
    head_.shrink_to_fit();
    on_ws_open();
    if (rest > 0 && !closed_reported_ && is_open()) feed(data.sub(data.size() - rest, rest));
}

void ws_client_connection::on_body_bytes(bytes data) noexcept {
    pending_refusal& p = *refusal_;
    const std::size_t room = p.expected == SIZE_MAX ? opt_.max_refusal_body - p.body.size()
                                                     : p.expected - std::min(p.expected, p.body.size());
    const std::size_t take = std::min(room, data.size());
    p.body.append(reinterpret_cast<const char*>(data.data()), take);
    if (p.body.size() >= opt_.max_refusal_body || (p.expected != SIZE_MAX && p.body.size() >= p.expected)) {
        finish_refusal();
    }
}

void ws_client_connection::finish_refusal() noexcept {
    if (refused_reported_ || !refusal_) return;
    refused_reported_ = true;
    ws::header h[1];
    std::size_t n = 0;
    if (!refusal_->retry_after.empty()) h[n++] = {"Retry-After", refusal_->retry_after};
    ws_refusal r = parse_refusal(refusal_->status, std::span<const ws::header>(h, n), refusal_->body);
    r.err = error(errc::ws_handshake, "the server refused the WebSocket upgrade");
    timer_.cancel();
    on_ws_refused(r);
    close(reactor::close_mode::abort);
}

void ws_client_connection::refuse(const error& e) noexcept {
    if (refused_reported_ || codec_) return;
    refused_reported_ = true;
    timer_.cancel();
    ws_refusal r;
    r.err = e;
    on_ws_refused(r);
    close(reactor::close_mode::abort);
}

void ws_client_connection::feed(slice data) noexcept {
    mut_bytes in = data.mut_view();
    std::byte* base = data.data();
    for (;;) {
        buffer_chain* o = output();
        auto ev = codec_->next(in, o ? *o : scratch_);
        if (!ev) break;  // the codec queued the failure close; state is closed
        if (ev->type == ws::event_type::need_more) break;
        switch (ev->type) {
        case ws::event_type::data: {
            slice piece;
            std::byte* p = ev->payload.data();
            if (p >= base && p + ev->payload.size() <= base + data.size()) {
                piece = data.sub(static_cast<std::size_t>(p - base), ev->payload.size());
            } else {
                piece = slice::copy_of(ev->payload);
            }
            on_ws_data(*ev, std::move(piece));
            break;
        }
        case ws::event_type::pong: on_ws_pong(ev->payload); break;
        default: break;  // ping answered, close echoed by the codec
        }
        if (closed_reported_ || codec_->state() == ws::close_state::closed) break;
    }
    after_codec();
}

void ws_client_connection::after_codec() noexcept {
    commit_output();
    scratch_.clear();
    if (codec_->state() == ws::close_state::closed && !closed_reported_) {
        std::uint16_t code = codec_->peer_close_code() ? codec_->peer_close_code() : codec_->sent_close_code();
        report_closed(code);
        // RFC 6455 §7.1.1: the server closes TCP first; give it close_timeout to do so.
        timer_.arm_after(opt_.close_timeout);
        if (codec_->failed()) close();  // our failure close is queued: flush it and go
    }
}

void ws_client_connection::report_closed(std::uint16_t code) noexcept {
    if (closed_reported_) return;
    closed_reported_ = true;
    on_ws_closed(code);
}

status ws_client_connection::send_binary(buffer_chain& data) noexcept {
    if (!codec_) return fail(errc::closed, "not upgraded");
    buffer_chain* o = output();
    if (!o) {
        data.clear();
        return fail(errc::closed, "socket closing");
    }
    ws::send_options so;
    so.comp = ws::compress::no;
    while (!data.empty()) {
        slice s = data.pop_front();
        while (!s.empty()) {
            const std::size_t k = std::min(s.size(), opt_.max_send_message);
            auto st = codec_->send(*o, ws::opcode::binary, s.sub(0, k), so);
            if (!st) {
                data.clear();
                return st;
            }
            s.trim_front(k);
        }
    }
    commit_output();
    return {};
}

status ws_client_connection::send_ping(bytes payload) noexcept {
    if (!codec_) return fail(errc::closed, "not upgraded");
    buffer_chain* o = output();
    if (!o) return fail(errc::closed, "socket closing");
    auto st = codec_->ping(*o, payload);
    commit_output();
    return st;
}

void ws_client_connection::ws_close(std::uint16_t code, std::string_view reason) noexcept {
    if (!codec_) {
        close(reactor::close_mode::abort);
        return;
    }
    if (codec_->state() != ws::close_state::open) return;
    buffer_chain* o = output();
    (void)codec_->close(o ? *o : scratch_, code, reason);
    timer_.arm_after(opt_.close_timeout);
    after_codec();
}

void ws_client_connection::on_read_eof() {
    if (refusal_ && !refused_reported_) {
        finish_refusal();  // the body ended with the connection
        return;
    }
    if (!codec_) {
        refuse(error(errc::closed, "the server closed the connection before the upgrade"));
        return;
    }
    report_closed(ws::close_code::abnormal);  // no-op after a completed close handshake
    close();
}

void ws_client_connection::on_close(const error& why) {
    timer_.cancel();
    if (!codec_) {
        if (refusal_) {
            finish_refusal();
        } else if (!refused_reported_) {
            refused_reported_ = true;
            ws_refusal r;
            r.err = why.code == errc::ok ? error(errc::closed, "closed before the upgrade") : why;
            on_ws_refused(r);
        }
        return;
    }
    report_closed(ws::close_code::abnormal);
}

}  // namespace ferry::link
