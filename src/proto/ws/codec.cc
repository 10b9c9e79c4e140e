#include "proto/ws/codec.hh"

namespace ferry::ws {

codec::codec(role r, const codec_options& o)
    : dec_(r, o.lim, o.pmd), enc_(r, o.pmd, o.deflate, o.mask), auto_pong_(o.auto_pong) {}

result<event> codec::next(mut_bytes& in, buffer_chain& out) noexcept {
    auto ev = dec_.next(in);
    if (!ev) {
        if (!enc_.close_sent()) {
            sent_code_ = close_code_for(ev.code());
            (void)enc_.close(out, sent_code_);  // a mapped code is always sendable
        }
        state_ = close_state::closed;
        return ev;
    }
    switch (ev->type) {
        case event_type::ping:
            if (auto_pong_ && !enc_.close_sent()) (void)enc_.pong(out, ev->payload);
            break;
        case event_type::close:
            peer_code_ = ev->code;
            if (!enc_.close_sent()) {
                // Echo the peer's code (RFC 6455 §5.5.1); an empty close is answered empty.
                sent_code_ = ev->code;
                (void)enc_.close(out, ev->code);
            }
            state_ = close_state::closed;
            break;
        default:
            break;
    }
    return ev;
}

status codec::close(buffer_chain& out, std::uint16_t code, std::string_view reason) {
    if (status s = enc_.close(out, code, reason); !s) return s;
    sent_code_ = code;
    state_ = dec_.close_received() ? close_state::closed : close_state::closing;
    return {};
}

}  // namespace ferry::ws
