// Fuzz target `ws_frame`: the WebSocket frame decoder (src/proto/ws) fed chunked input.
//
// Input: byte 0 chooses the configuration, the rest is split into chunks whose first byte gives
// their length (STYLE 12), so every split point of the streaming decoder gets exercised.
//   bit 0   role: server (expects masked frames) / client
//   bit 1   permessage-deflate negotiated
//   bit 2   small limits (4 KiB frames, 16 KiB messages, 256-byte inflate chunks)
//   bit 3   no context takeover for the peer's messages
//   bit 4   drive the full codec (automatic pong/close replies) instead of the bare decoder
//   bit 5   differential mode: the same bytes also go to wslay (server or client, no deflate),
//           and both must agree on the messages delivered and on the close code
// Invariants checked on every input (a violation traps): need_more only with all input
// consumed; first/last flags well nested; message sizes within limits; completed text messages
// are valid UTF-8; control payloads <= 125; close codes valid; a failed codec has written a
// close; every completed message re-encodes and decodes back to itself.
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "proto/ws/codec.hh"
#include "proto/ws/utf8.hh"

#if FERRY_HAVE_WSLAY
#include <wslay/wslay.h>
#endif

using namespace ferry;
using namespace ferry::ws;

namespace {

#define CHECK(c)                   \
    do {                           \
        if (!(c)) __builtin_trap(); \
    } while (0)

struct message {
    opcode op;
    std::string data;
};

struct outcome {
    std::vector<message> messages;  // complete data messages, in order
    bool closed = false;            // a close frame was received
    std::uint16_t close_code = 0;
    errc err = errc::ok;
    const char* detail = "";
};

std::uint32_t fixed_mask(void*) noexcept { return 0x5a5a1234; }

// Re-encodes a message with the peer role's encoder and decodes it back with `r`.
void check_round_trip(role r, const message& m) {
    const role peer = r == role::server ? role::client : role::server;
    encoder enc(peer, std::nullopt, {}, mask_source{&fixed_mask, nullptr});
    buffer_chain out;
    send_options o;
    o.fragment_size = 1 + m.data.size() / 3;
    CHECK(enc.send_copy(out, m.op, as_bytes(m.data), o));
    std::string wire = out.to_string();
    decoder dec(r);
    mut_bytes in{reinterpret_cast<std::byte*>(wire.data()), wire.size()};
    std::string got;
    for (;;) {
        auto ev = dec.next(in);
        CHECK(ev);
        if (ev->type == event_type::need_more) break;
        CHECK(ev->type == event_type::data && ev->op == m.op);
        got.append(ev->text());
    }
    CHECK(got == m.data);
}

outcome run_ours(const std::uint8_t* data, std::size_t size, std::uint8_t cfg, const limits& lim) {
    const role r = (cfg & 1) ? role::client : role::server;
    std::optional<deflate_params> pmd;
    if (cfg & 2) {
        deflate_params p;
        p.client_no_context_takeover = p.server_no_context_takeover = (cfg & 8) != 0;
        pmd = p;
    }
    codec_options co;
    co.lim = lim;
    co.pmd = pmd;
    co.mask = mask_source{&fixed_mask, nullptr};
    codec c(r, co);
    decoder d(r, lim, pmd);
    const bool use_codec = (cfg & 16) != 0;
    buffer_chain out;

    outcome res;
    bool open = false;
    std::string partial;
    opcode partial_op = opcode::binary;
    std::uint64_t partial_size = 0;
    std::size_t pos = 0;
    while (pos < size && res.err == errc::ok) {
        std::size_t n = data[pos++];
        n = std::min(n, size - pos);
        // Each chunk in its own exactly-sized heap buffer: ASan sees any read past it.
        const auto* bp = reinterpret_cast<const std::byte*>(data + pos);
        std::vector<std::byte> buf(bp, bp + n);
        pos += n;
        mut_bytes in(buf);
        for (;;) {
            auto ev = use_codec ? c.next(in, out) : d.next(in);
            if (!ev) {
                res.err = ev.code();
                res.detail = ev.err().detail;
                break;
            }
            if (ev->type == event_type::need_more) {
                CHECK(in.empty());
                break;
            }
            switch (ev->type) {
                case event_type::data:
                    CHECK(ev->first != open);
                    if (ev->first) {
                        open = true;
                        partial.clear();
                        partial_size = 0;
                        partial_op = ev->op;
                    }
                    CHECK(ev->op == partial_op);
                    CHECK(ev->op == opcode::text || ev->op == opcode::binary);
                    CHECK(!ev->payload.empty() || ev->last);
                    partial_size += ev->payload.size();
                    CHECK(partial_size <= lim.max_message);
                    if (partial_size <= (1u << 20)) partial.append(ev->text());
                    if (ev->last) {
                        open = false;
                        if (partial_size <= (1u << 20)) {
                            if (partial_op == opcode::text) CHECK(valid_utf8(as_bytes(partial)));
                            res.messages.push_back({partial_op, partial});
                        }
                    }
                    break;
                case event_type::ping:
                case event_type::pong:
                    CHECK(ev->payload.size() <= 125);
                    break;
                case event_type::close:
                    CHECK(ev->code == close_code::no_status || valid_close_code(ev->code));
                    CHECK(valid_utf8(ev->payload));
                    res.closed = true;
                    res.close_code = ev->code;
                    break;
                default:
                    CHECK(false);
            }
        }
    }
    if (use_codec) {
        if (res.err != errc::ok) {
            CHECK(c.failed() && c.state() == close_state::closed);
            CHECK(c.sent_close_code() != 0 && !out.empty());
        }
        if (res.closed) CHECK(c.state() == close_state::closed);
    }
    for (const auto& m : res.messages) {
        if (m.data.size() <= 4096) check_round_trip(r, m);
    }
    return res;
}

#if FERRY_HAVE_WSLAY
struct wslay_run {
    const std::uint8_t* data;
    std::size_t size;
    std::size_t pos = 0;
    std::vector<std::pair<std::uint8_t, std::string>> msgs;
    bool close_seen = false;
};

ssize_t w_recv(wslay_event_context_ptr ctx, std::uint8_t* buf, std::size_t len, int, void* ud) {
    auto* w = static_cast<wslay_run*>(ud);
    if (w->pos == w->size) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    std::size_t k = std::min(len, w->size - w->pos);
    std::memcpy(buf, w->data + w->pos, k);
    w->pos += k;
    return static_cast<ssize_t>(k);
}
ssize_t w_send(wslay_event_context_ptr, const std::uint8_t*, std::size_t len, int, void*) {
    return static_cast<ssize_t>(len);
}
int w_mask(wslay_event_context_ptr, std::uint8_t* buf, std::size_t len, void*) {
    std::memset(buf, 0x11, len);
    return 0;
}
void w_msg(wslay_event_context_ptr, const wslay_event_on_msg_recv_arg* a, void* ud) {
    auto* w = static_cast<wslay_run*>(ud);
    if (a->opcode == WSLAY_CONNECTION_CLOSE) w->close_seen = true;
    if (w->close_seen) return;
    if (a->opcode == WSLAY_TEXT_FRAME || a->opcode == WSLAY_BINARY_FRAME) {
        w->msgs.emplace_back(a->opcode, std::string(reinterpret_cast<const char*>(a->msg), a->msg_length));
    }
}

// Opcode of a frame the stream ends inside of, or -1 when it ends on a frame boundary.
int truncated_opcode(const std::string& s) {
    std::size_t i = 0;
    while (i < s.size()) {
        const unsigned b0 = static_cast<unsigned char>(s[i]);
        if (i + 2 > s.size()) return static_cast<int>(b0 & 0x0F);
        const unsigned b1 = static_cast<unsigned char>(s[i + 1]);
        std::size_t h = 2 + ((b1 & 0x7F) == 126 ? 2 : (b1 & 0x7F) == 127 ? 8 : 0) + ((b1 & 0x80) ? 4 : 0);
        if (i + h > s.size()) return static_cast<int>(b0 & 0x0F);
        std::uint64_t n = b1 & 0x7F;
        if (n == 126) n = (std::uint64_t(static_cast<unsigned char>(s[i + 2])) << 8) | static_cast<unsigned char>(s[i + 3]);
        if (n == 127) {
            n = 0;
            for (int k = 0; k < 8; ++k) n = (n << 8) | static_cast<unsigned char>(s[i + 2 + k]);
        }
        if (n > s.size() - i - h) return static_cast<int>(b0 & 0x0F);
        i += h + n;
    }
    return -1;
}

// Compares with wslay fed the same stream (without chunk prefixes). Known, documented
// divergences are excluded: wslay answers frame-layer errors with an empty close (1005) where
// we send 1002; wslay rejects the registered codes 1012..1014, accepts a 1-byte close payload,
// checks a close reason before its code, and its close-reason UTF-8 check depends on its
// buffer boundaries. So comparison stops at the first close frame.
void differential(const std::uint8_t* data, std::size_t size, std::uint8_t cfg) {
    const role r = (cfg & 1) ? role::client : role::server;
    // Unchunk: wslay gets the plain byte stream.
    std::string plain;
    for (std::size_t pos = 0; pos < size;) {
        std::size_t n = data[pos];
        ++pos;
        n = std::min(n, size - pos);
        plain.append(reinterpret_cast<const char*>(data + pos), n);
        pos += n;
    }
    limits lim;
    lim.max_message = 1 << 16;
    lim.max_frame_payload = 1 << 16;  // so only the message limit applies, as in wslay
    decoder d(r, lim);
    std::vector<message> ours;
    errc err = errc::ok;
    const char* detail = "";
    bool ours_closed = false;
    {
        mut_bytes in{reinterpret_cast<std::byte*>(plain.data()), plain.size()};
        std::string partial;
        for (;;) {
            auto ev = d.next(in);
            if (!ev) {
                err = ev.code();
                detail = ev.err().detail;
                break;
            }
            if (ev->type == event_type::need_more) break;
            if (ev->type == event_type::close) {
                ours_closed = true;
                break;
            }
            if (ev->type != event_type::data) continue;
            if (ev->first) partial.clear();
            partial.append(ev->text());
            if (ev->last) ours.push_back({ev->op, partial});
        }
    }
    // Restore the masked bytes: our decoder unmasked `plain` in place.
    plain.clear();
    for (std::size_t pos = 0; pos < size;) {
        std::size_t n = data[pos];
        ++pos;
        n = std::min(n, size - pos);
        plain.append(reinterpret_cast<const char*>(data + pos), n);
        pos += n;
    }
    wslay_run w{reinterpret_cast<const std::uint8_t*>(plain.data()), plain.size()};
    wslay_event_callbacks cb{};
    cb.recv_callback = &w_recv;
    cb.send_callback = &w_send;
    cb.genmask_callback = &w_mask;
    cb.on_msg_recv_callback = &w_msg;
    wslay_event_context_ptr ctx;
    if (r == role::server) {
        CHECK(wslay_event_context_server_init(&ctx, &cb, &w) == 0);
    } else {
        CHECK(wslay_event_context_client_init(&ctx, &cb, &w) == 0);
    }
    wslay_event_config_set_max_recv_msg_length(ctx, lim.max_message);
    wslay_event_recv(ctx);
    wslay_event_send(ctx);
    const std::uint16_t wslay_sent = wslay_event_get_close_sent(ctx) ? wslay_event_get_status_code_sent(ctx) : 0;
    wslay_event_context_free(ctx);

    // Messages delivered before any error or close must be identical.
    const std::size_t common = std::min(ours.size(), w.msgs.size());
    for (std::size_t i = 0; i < common; ++i) {
        CHECK(static_cast<std::uint8_t>(ours[i].op) == w.msgs[i].first);
        CHECK(ours[i].data == w.msgs[i].second);
    }
    if (ours_closed || w.close_seen) return;
    // A bad close frame: wslay checks the reason's UTF-8 before the code, we check the code
    // first; both fail, possibly with different codes.
    for (const char* close_fault : {"1-byte close payload", "close reason not UTF-8", "invalid close code"}) {
        if (err != errc::ok && std::strcmp(detail, close_fault) == 0) return;
    }
    CHECK(ours.size() == w.msgs.size());
    if (err == errc::ok) {
        // wslay checks a close reason's UTF-8 as its bytes arrive; we wait for the whole
        // (<= 125-byte) close frame. Otherwise neither may fail alone.
        CHECK(wslay_sent == 0 || (wslay_sent == close_code::invalid_payload && truncated_opcode(plain) == 8));
    } else if (wslay_sent == 0) {
        // wslay judges a frame header only once a payload byte (or an empty payload) is in:
        // with the stream ending right after a bad header it has no verdict yet, we have one.
    } else {
        const std::uint16_t mine = close_code_for(err);
        CHECK(wslay_sent == mine || (mine == close_code::protocol_error && wslay_sent == close_code::no_status));
    }
}
#endif

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    const std::uint8_t cfg = data[0];
    ++data;
    --size;
#if FERRY_HAVE_WSLAY
    if (cfg & 32) {
        differential(data, size, cfg);
        return 0;
    }
#endif
    limits lim;
    if (cfg & 4) {
        lim.max_frame_payload = 4096;
        lim.max_message = 16384;
        lim.inflate_chunk = 256;
    }
    run_ours(data, size, cfg, lim);
    return 0;
}
