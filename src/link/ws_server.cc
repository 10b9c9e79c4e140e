#include "link/ws_server.hh"

#include <algorithm>
#include <array>
#include <cstdio>

#include "proto/base/log.hh"
#include "proto/http1/types.hh"

namespace ferry::link {

namespace {
// Upgrade requests carry few headers; more than this is refused (431) before conversion.
constexpr std::size_t max_upgrade_headers = 64;

const char* reason_phrase(int status) {
    switch (status) {
    case 400: return "Bad Request";
    case 403: return "Forbidden";
    case 414: return "URI Too Long";
    case 426: return "Upgrade Required";
    case 431: return "Request Header Fields Too Large";
    case 505: return "HTTP Version Not Supported";
    default: return "Error";
    }
}
}  // namespace

ws_server_connection::ws_server_connection(reactor::shard& s, const ws_server_options& o)
    : opt_(o), timer_(s, [this] {
          // Slow head, or a close handshake the peer never finished: drop the socket.
          close(reactor::close_mode::abort);
      }) {
    parser_ = std::make_unique<http1::request_parser>(opt_.head_limits);
}

ws_server_connection::~ws_server_connection() = default;

void ws_server_connection::on_open() {
    // One allocation of the largest head we accept keeps the buffer at one address, so the
    // parser never rescans (see proto/http1/parser.hh); it is freed after the upgrade.
    head_.reserve(opt_.head_limits.max_head_bytes);
    timer_.arm_after(opt_.head_timeout);
}

void ws_server_connection::on_data(slice data) {
    if (!codec_) {
        on_head_bytes(std::move(data));
    } else {
        feed(std::move(data));
    }
}

void ws_server_connection::on_head_bytes(slice data) noexcept {
    // The head must be contiguous for the parser: accumulate it (bounded by max_head_bytes,
    // which the parser enforces before we could grow past it plus one receive).
    head_.append(reinterpret_cast<const char*>(data.data()), data.size());
    http1::progress p = parser_->parse(as_bytes(head_));
    if (p.kind == http1::outcome::need_more) return;
    if (p.kind == http1::outcome::failed) {
        int st = http1::status_for(p.err.code);
        reject(st, to_string(p.err.code), p.err.detail);
        return;
    }
    const http1::request_head& h = parser_->head();
    if (h.headers.size() > max_upgrade_headers) {
        reject(431, "too_many_headers", "too many header fields for an upgrade request");
        return;
    }
    std::array<ws::header, max_upgrade_headers> hs;
    for (std::size_t i = 0; i < h.headers.size(); ++i) hs[i] = {h.headers[i].name, h.headers[i].value};
    ws::request_head wreq{h.method, h.target, h.ver == http1::version::http_1_1 ? "HTTP/1.1" : "HTTP/1.0",
                          std::span<const ws::header>(hs.data(), h.headers.size())};
    auto up = ws::check_upgrade_request(wreq, opt_.handshake);
    if (!up) {
        buffer_chain out;
        ws::write_reject_response(out, up.err());  // 400 or 426 (ws::handshake_status)
        (void)send(std::move(out));  // errc::closed only if already closing
        close();
        return;
    }
    if (!accept_upgrade(h)) {
        reject(403, "forbidden", "upgrade refused");
        return;
    }
    timer_.cancel();
    buffer_chain out;
    ws::write_upgrade_response(out, *up);
    (void)send(std::move(out));  // errc::closed only if already closing

    ws::codec_options co;
    co.lim = opt_.limits;
    co.pmd = up->deflate;
    co.deflate = opt_.handshake.deflate;
    codec_ = std::make_unique<ws::codec>(ws::role::server, co);
    on_ws_open();

    // Bytes after the head (a client may send frames right behind its request) belong to the
    // WebSocket: they are the tail of this last receive.
    std::size_t head_size = p.consumed;
    // The head did not end before this receive, so these bytes all lie in `data`.
    std::size_t rest_in_data = head_.size() - head_size;
    head_.clear();
    head_.shrink_to_fit();
    parser_.reset();
    if (rest_in_data > 0) {
        // rest_in_data <= data.size() because the head was not complete before this receive.
        slice rest = data.sub(data.size() - rest_in_data, rest_in_data);
        feed(std::move(rest));
    }
}

void ws_server_connection::reject(int status, std::string_view code, std::string_view message) noexcept {
    char body[256];
    int bl = std::snprintf(body, sizeof body, "{\"error\":{\"code\":\"%.*s\",\"message\":\"%.*s\"}}",
                           int(code.size()), code.data(), int(message.size()), message.data());
    bl = std::clamp(bl, 0, int(sizeof body) - 1);  // snprintf reports the untruncated length
    char headbuf[256];
    int hl = std::snprintf(headbuf, sizeof headbuf,
                           "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                           "Connection: close\r\n\r\n",
                           status, reason_phrase(status), bl);
    hl = std::clamp(hl, 0, int(sizeof headbuf) - 1);
    buffer_chain out;
    out.append_copy(std::string_view(headbuf, hl));
    out.append_copy(std::string_view(body, bl));
    (void)send(std::move(out));  // errc::closed only if already closing
    timer_.arm_after(opt_.close_timeout);
    close();
}

void ws_server_connection::feed(slice data) noexcept {
    mut_bytes in = data.mut_view();
    std::byte* base = data.data();
    // Until need_more, not until `in` is empty: a compressed message can still have inflated
    // output to deliver after its last input byte was consumed.
    for (;;) {
        // The codec's automatic replies (pong, close echo) go straight into the socket's queued
        // output, in order with whatever the subclass sends for earlier events.
        buffer_chain* o = output();
        auto ev = codec_->next(in, o ? *o : scratch_);
        if (!ev) break;  // the codec queued the failure close; state is closed
        if (ev->type == ws::event_type::need_more) break;
        switch (ev->type) {
        case ws::event_type::data: {
            slice piece;
            std::byte* p = ev->payload.data();
            if (p >= base && p + ev->payload.size() <= base + data.size()) {
                piece = data.sub(static_cast<std::size_t>(p - base), ev->payload.size());  // zero copy
            } else {
                piece = slice::copy_of(ev->payload);  // inflated: lives in the decoder's buffer
            }
            on_ws_data(*ev, std::move(piece));
            break;
        }
        case ws::event_type::pong: on_ws_pong(ev->payload); break;
        default: break;  // ping answered, close echoed by the codec
        }
        if (codec_->state() == ws::close_state::closed) break;
    }
    after_codec();
}

void ws_server_connection::after_codec() noexcept {
    commit_output();
    scratch_.clear();  // replies that could not be queued (the socket is already closing)
    if (codec_->state() == ws::close_state::closed) {
        if (!closed_reported_) {
            closed_reported_ = true;
            std::uint16_t code = codec_->peer_close_code() ? codec_->peer_close_code() : codec_->sent_close_code();
            on_ws_closed(code);
            // close() flushes queued output first; a peer that stopped reading must not hold
            // the socket open for ever.
            timer_.arm_after(opt_.close_timeout);
        }
        close();  // server closes TCP once the handshake is complete (RFC 6455 §7.1.1)
    }
}

void ws_server_connection::flush(buffer_chain& out) noexcept {
    if (!out.empty()) (void)send(std::move(out));
    out.clear();
}

void ws_server_connection::ws_close(std::uint16_t code, std::string_view reason) noexcept {
    if (!codec_) return;
    buffer_chain out;
    (void)codec_->close(out, code, reason);
    flush(out);
    if (codec_->state() == ws::close_state::closing) timer_.arm_after(opt_.close_timeout);
    after_codec();
}

void ws_server_connection::on_read_eof() {
    if (codec_ && !closed_reported_) {
        closed_reported_ = true;
        on_ws_closed(ws::close_code::abnormal);
    }
    timer_.arm_after(opt_.close_timeout);  // bound the flush of what is still queued
    close();
}

void ws_server_connection::on_close(const error&) {
    timer_.cancel();
    if (codec_ && !closed_reported_) {
        closed_reported_ = true;
        on_ws_closed(ws::close_code::abnormal);
    }
}

}  // namespace ferry::link
