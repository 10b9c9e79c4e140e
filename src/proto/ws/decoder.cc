#include "proto/ws/decoder.hh"

#include <zlib.h>

#include <algorithm>
#include <cstring>

#include "proto/base/assert.hh"
#include "proto/ws/mask.hh"

namespace ferry::ws {

// zlib keeps a pointer back to its z_stream, so the stream lives on the heap and the decoder
// stays movable.
struct decoder::inflate_state {
    z_stream z{};
    std::unique_ptr<std::byte[]> out;
    std::uint32_t cap = 0;
    std::uint8_t tail_left = 0;  // bytes of the 00 00 FF FF tail not yet given to inflate
    bool out_full = false;       // the last inflate filled `out`: it may hold more output
    bool ended = false;          // the stream of the current message ended (BFINAL)
    bool reset_after_message = false;
    bool ok = false;

    ~inflate_state() {
        if (ok) inflateEnd(&z);
    }

    // The peer ended its DEFLATE stream with a final block (BFINAL, RFC 7692 §7.2.3.4). The
    // rest of that message (at least our appended tail) is ignored, as zlib-based peers do, and
    // the next message starts a new stream; with context takeover it may still refer to the
    // old window, so the window is carried over as a preset dictionary.
    void restart() noexcept {
        ended = false;
        if (reset_after_message) {
            inflateReset(&z);
            return;
        }
        unsigned char dict[32768];
        uInt len = sizeof dict;
        if (inflateGetDictionary(&z, dict, &len) != Z_OK) len = 0;
        inflateReset(&z);
        if (len > 0) inflateSetDictionary(&z, dict, len);
    }
};

namespace {
constexpr std::byte deflate_tail[4] = {std::byte{0x00}, std::byte{0x00}, std::byte{0xFF},
                                       std::byte{0xFF}};

// Bytes of the extended length implied by the second header byte: 0, 2 or 8.
inline std::size_t ext_length_size(std::byte b1) noexcept {
    const unsigned len7 = std::to_integer<unsigned>(b1) & 0x7F;
    return len7 == 126 ? 2 : len7 == 127 ? 8 : 0;
}

// Header bytes implied by the second header byte: 2, plus the extended length, plus the key.
inline std::uint8_t full_header_size(std::byte b1) noexcept {
    const unsigned v = std::to_integer<unsigned>(b1);
    const unsigned len7 = v & 0x7F;
    return static_cast<std::uint8_t>(2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) +
                                     ((v & 0x80) ? 4 : 0));
}
}  // namespace

decoder::decoder(role r, const limits& lim, const std::optional<deflate_params>& pmd)
    : role_(r), lim_(lim), pmd_(pmd) {
    lim_.max_control_payload = std::min<std::uint32_t>(lim_.max_control_payload, 125);
    if (pmd_) {
        inf_ = std::make_unique<inflate_state>();
        // Always inflate with the largest window: a window larger than the sender's decodes
        // its stream just the same, and a misbehaving sender cannot make us fail on distances.
        const int rc = inflateInit2(&inf_->z, -15);
        FERRY_ASSERT(rc == Z_OK);  // only fails when out of memory, like operator new
        inf_->ok = true;
        inf_->cap = std::max<std::uint32_t>(lim_.inflate_chunk, 256);
        inf_->out = std::make_unique<std::byte[]>(inf_->cap);
        inf_->reset_after_message = r == role::server ? pmd_->client_no_context_takeover
                                                       : pmd_->server_no_context_takeover;
    }
}

decoder::~decoder() = default;
decoder::decoder(decoder&&) noexcept = default;
decoder& decoder::operator=(decoder&&) noexcept = default;

result<event> decoder::fail_with(errc c, const char* detail) noexcept {
    st_ = state::failed;
    err_ = error(c, detail);
    return fail(err_);
}

// Stage 1 of the header checks: everything the first two bytes decide. Called as soon as they
// are in, so a bad frame is refused without waiting for the rest of its header.
status decoder::check_start(unsigned b0, unsigned b1) const noexcept {
    const bool fin = (b0 & 0x80) != 0;
    const bool rsv1 = (b0 & 0x40) != 0;
    const unsigned op = b0 & 0x0F;
    const unsigned len7 = b1 & 0x7F;
    if (b0 & 0x30) return fail(errc::ws_protocol, "RSV2/RSV3 set");
    if (((b1 & 0x80) != 0) != (role_ == role::server)) {
        return fail(errc::ws_protocol,
                    role_ == role::server ? "unmasked client frame" : "masked server frame");
    }
    if (op & 0x8) {
        if (op > 0xA) return fail(errc::ws_protocol, "reserved control opcode");
        if (!fin) return fail(errc::ws_protocol, "fragmented control frame");
        if (len7 > 125) return fail(errc::ws_protocol, "control frame over 125 bytes");
        if (rsv1) return fail(errc::ws_protocol, "RSV1 on a control frame");
        if (len7 > lim_.max_control_payload) return fail(errc::ws_too_big, "control payload over limit");
        return {};
    }
    if (op > 0x2) return fail(errc::ws_protocol, "reserved data opcode");
    if (op == 0) {
        if (!in_msg_) return fail(errc::ws_protocol, "continuation frame without a message");
        // RFC 7692 §6.1: RSV1 marks the first frame of a compressed message only.
        if (rsv1) return fail(errc::ws_protocol, "RSV1 on a continuation frame");
    } else {
        if (in_msg_) return fail(errc::ws_protocol, "new message inside a fragmented one");
        if (rsv1 && !pmd_) return fail(errc::ws_protocol, "RSV1 without permessage-deflate");
    }
    return {};
}

// Stage 2: the extended length (h points at the header, whose length bytes are in).
// RFC 6455 §5.2: "the minimal number of bytes MUST be used to encode the length". A longer form
// is rejected (as wslay does): a correct encoder never writes it, and accepting it would give
// one frame two encodings.
result<std::uint64_t> decoder::check_length(const std::byte* h) noexcept {
    const unsigned len7 = std::to_integer<unsigned>(h[1]) & 0x7F;
    if (len7 == 126) {
        const std::uint64_t len = load_be16(h + 2);
        if (len < 126) return fail(errc::ws_protocol, "non-minimal 16-bit length");
        return len;
    }
    if (len7 == 127) {
        const std::uint64_t len = load_be64(h + 2);
        if (len >> 63) return fail(errc::ws_protocol, "64-bit length with the top bit set");
        if (len <= 0xFFFF) return fail(errc::ws_protocol, "non-minimal 64-bit length");
        return len;
    }
    return std::uint64_t{len7};
}

// The whole header is in: check the rest, apply the limits, enter the frame.
status decoder::on_header(const std::byte* h) noexcept {
    const unsigned b0 = std::to_integer<unsigned>(h[0]);
    const unsigned b1 = std::to_integer<unsigned>(h[1]);
    if (status s = check_start(b0, b1); !s) return s;
    auto lr = check_length(h);
    if (!lr) return fail(lr.err());
    const std::uint64_t len = *lr;
    const unsigned op = b0 & 0x0F;
    masked_ = (b1 & 0x80) != 0;
    key_ = 0;
    if (masked_) std::memcpy(&key_, h + full_header_size(h[1]) - 4, 4);
    phase_ = 0;
    if (op & 0x8) {
        op_ = static_cast<opcode>(op);
        remaining_ = len;
        clen_ = 0;
        st_ = state::control;
        return {};
    }
    if (op != 0) {
        in_msg_ = true;
        msg_started_ = false;
        msg_op_ = static_cast<opcode>(op);
        msg_compressed_ = (b0 & 0x40) != 0;
        msg_size_ = 0;
        inflated_ = 0;
        utf8_.reset();
    }
    // Limits before any payload is read (STYLE 3). msg_size_ <= max_message holds here.
    if (len > lim_.max_frame_payload) return fail(errc::ws_too_big, "frame over max_frame_payload");
    if (len > lim_.max_message - msg_size_) return fail(errc::ws_too_big, "message over max_message");
    msg_size_ += len;
    fin_ = (b0 & 0x80) != 0;
    op_ = static_cast<opcode>(op);
    remaining_ = len;
    premasked_ = 0;
    st_ = state::data;
    return {};
}

result<event> decoder::message_piece(std::byte* p, std::size_t n, bool end) noexcept {
    if (msg_op_ == opcode::text) {
        if (!utf8_.feed(p, n)) return fail_with(errc::ws_bad_utf8, "invalid UTF-8 in a text message");
        if (end && !utf8_.complete()) {
            return fail_with(errc::ws_bad_utf8, "text message ends inside a UTF-8 sequence");
        }
    }
    event ev;
    ev.type = event_type::data;
    ev.op = msg_op_;
    ev.first = !msg_started_;
    ev.last = end;
    ev.payload = {p, n};
    msg_started_ = true;
    if (end) in_msg_ = false;
    return ev;
}

result<event> decoder::control_done(std::byte* p) noexcept {
    const std::size_t n = static_cast<std::size_t>(remaining_);
    st_ = state::header;
    event ev;
    ev.payload = {p, n};
    switch (op_) {
        case opcode::ping:
            ev.type = event_type::ping;
            return ev;
        case opcode::pong:
            ev.type = event_type::pong;
            return ev;
        default:
            break;
    }
    // Close (RFC 6455 §5.5.1, §7.4): empty, or a 2-byte code plus a UTF-8 reason.
    ev.type = event_type::close;
    if (n == 0) {
        ev.code = close_code::no_status;
    } else if (n == 1) {
        return fail_with(errc::ws_protocol, "1-byte close payload");
    } else {
        ev.code = load_be16(p);
        if (!valid_close_code(ev.code)) return fail_with(errc::ws_protocol, "invalid close code");
        ev.payload = {p + 2, n - 2};
        if (!valid_utf8(ev.payload)) return fail_with(errc::ws_bad_utf8, "close reason not UTF-8");
    }
    st_ = state::closed;
    return ev;
}

result<event> decoder::inflate_piece(mut_bytes& in) noexcept {
    inflate_state& s = *inf_;
    const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(remaining_, in.size()));
    if (s.ended) {
        // After the final block: skip the rest of the message. Nothing more can come out of
        // the inflater, so a full buffer last time holds nothing back: without clearing
        // out_full, next() would call again with no input forever (a fuzzer-found hang).
        in = in.subspan(n);
        remaining_ -= n;
        premasked_ = 0;
        s.out_full = false;
        return event{};
    }
    // Bytes already unmasked on an earlier call that stopped with a full output buffer: the
    // caller presents them again (contract of next()), they must not be unmasked twice.
    if (n > premasked_) {
        if (masked_) {
            apply_mask(in.data() + premasked_, n - premasked_, key_, phase_);
            phase_ = static_cast<std::uint8_t>((phase_ + (n - premasked_)) & 3);
        }
        premasked_ = n;
    }
    s.z.next_in = reinterpret_cast<Bytef*>(in.data());
    s.z.avail_in = static_cast<uInt>(std::min<std::size_t>(n, 1u << 30));
    s.z.next_out = reinterpret_cast<Bytef*>(s.out.get());
    s.z.avail_out = s.cap;
    const std::size_t given = s.z.avail_in;
    const int rc = inflate(&s.z, Z_SYNC_FLUSH);
    std::size_t used = given - s.z.avail_in;
    const std::size_t produced = s.cap - s.z.avail_out;
    if (rc == Z_STREAM_END) {
        s.ended = true;
        used = n;  // whatever follows the final block in this frame is skipped
    } else if (rc != Z_OK && rc != Z_BUF_ERROR) {
        return fail_with(errc::ws_deflate, "corrupt compressed data");
    } else if (produced == 0 && used == 0 && n > 0) {
        return fail_with(errc::ws_deflate, "inflate made no progress");
    }
    in = in.subspan(used);
    remaining_ -= used;
    premasked_ = n - used;
    s.out_full = produced == s.cap;
    inflated_ += produced;
    if (inflated_ > lim_.max_message) return fail_with(errc::ws_too_big, "inflated message over max_message");
    if (remaining_ == 0 && fin_ && !s.out_full) {
        // The message's last byte is in: flush the tail into the same output now, so the end
        // of the message comes with this event rather than from a call without input.
        s.tail_left = 4;
        st_ = state::inflate_tail;
        return inflate_finish(produced);
    }
    if (produced == 0) return event{};  // sentinel for next(): keep going
    return message_piece(s.out.get(), produced, false);
}

// Feeds the 00 00 FF FF tail (RFC 7692 §7.2.2) after the message's last byte. `already`: output
// bytes of this event already in the buffer (from the message's last input).
result<event> decoder::inflate_finish(std::size_t already) noexcept {
    inflate_state& s = *inf_;
    bool done;
    std::size_t produced = 0;
    if (s.ended) {
        // Z_STREAM_END came with all output written; the tail belongs to no stream.
        s.restart();
        done = true;
    } else {
        s.z.next_in = reinterpret_cast<Bytef*>(const_cast<std::byte*>(deflate_tail + (4 - s.tail_left)));
        s.z.avail_in = s.tail_left;
        s.z.next_out = reinterpret_cast<Bytef*>(s.out.get() + already);
        s.z.avail_out = static_cast<uInt>(s.cap - already);
        const int rc = inflate(&s.z, Z_SYNC_FLUSH);
        produced = s.cap - already - s.z.avail_out;
        s.tail_left = static_cast<std::uint8_t>(s.z.avail_in);
        if (rc == Z_STREAM_END) {
            s.restart();
            done = true;
        } else if (rc != Z_OK && rc != Z_BUF_ERROR) {
            return fail_with(errc::ws_deflate, "corrupt compressed data");
        } else {
            // Space left in the output means inflate has flushed everything it could.
            done = s.tail_left == 0 && s.z.avail_out > 0;
            if (!done && produced == 0 && already == 0) {
                return fail_with(errc::ws_deflate, "inflate made no progress");
            }
        }
    }
    s.out_full = false;
    inflated_ += produced;
    if (inflated_ > lim_.max_message) return fail_with(errc::ws_too_big, "inflated message over max_message");
    if (done) {
        st_ = state::header;
        if (s.reset_after_message) inflateReset(&s.z);
    }
    return message_piece(s.out.get(), already + produced, done);
}

result<event> decoder::next(mut_bytes& in) noexcept {
    for (;;) {
        switch (st_) {
            case state::header: {
                if (in.empty()) return event{};
                const std::byte* h = nullptr;
                if (hlen_ == 0 && in.size() >= 2) {
                    const std::size_t need = full_header_size(in[1]);
                    if (in.size() >= need) {
                        h = in.data();
                        in = in.subspan(need);
                    }
                }
                if (h == nullptr) {
                    // Header split across receives: collect it (at most 14 bytes), checking
                    // each part as soon as it is complete (first two bytes, extended length).
                    while (!in.empty() && hlen_ < hneed_) {
                        std::size_t stop = 2;
                        if (hlen_ >= 2) {
                            const std::size_t len_end = 2 + ext_length_size(hbuf_[1]);
                            stop = hlen_ < len_end ? len_end : hneed_;
                        }
                        const std::size_t k = std::min<std::size_t>(stop - hlen_, in.size());
                        std::memcpy(hbuf_ + hlen_, in.data(), k);
                        hlen_ = static_cast<std::uint8_t>(hlen_ + k);
                        in = in.subspan(k);
                        if (hlen_ != stop) continue;  // input ran out
                        status s;
                        if (stop == 2) {
                            hneed_ = full_header_size(hbuf_[1]);
                            s = check_start(std::to_integer<unsigned>(hbuf_[0]),
                                            std::to_integer<unsigned>(hbuf_[1]));
                        } else if (stop == 2 + ext_length_size(hbuf_[1])) {
                            if (auto lr = check_length(hbuf_); !lr) s = fail(lr.err());
                        }
                        if (!s) {
                            st_ = state::failed;
                            err_ = s.err();
                            return fail(err_);
                        }
                    }
                    if (hlen_ < hneed_) return event{};
                    h = hbuf_;
                    hlen_ = 0;
                    hneed_ = 2;
                }
                if (status s = on_header(h); !s) {
                    st_ = state::failed;
                    err_ = s.err();
                    return fail(err_);
                }
                continue;
            }
            case state::data: {
                if (msg_compressed_) {
                    if (remaining_ == 0) {
                        if (fin_) {
                            st_ = state::inflate_tail;
                            inf_->tail_left = 4;
                        } else {
                            st_ = state::header;
                        }
                        continue;
                    }
                    // With a full output buffer last time, zlib may hold more output for the
                    // input it already has: drain it before asking for more.
                    if (in.empty() && !inf_->out_full) return event{};
                    auto r = inflate_piece(in);
                    if (!r || r->type != event_type::need_more) return r;
                    continue;
                }
                if (remaining_ == 0) {
                    st_ = state::header;
                    if (fin_) return message_piece(nullptr, 0, true);
                    continue;  // an empty non-final fragment carries nothing to report
                }
                if (in.empty()) return event{};
                const std::size_t n =
                    static_cast<std::size_t>(std::min<std::uint64_t>(remaining_, in.size()));
                std::byte* p = in.data();
                if (masked_) {
                    apply_mask(p, n, key_, phase_);
                    phase_ = static_cast<std::uint8_t>((phase_ + n) & 3);
                }
                in = in.subspan(n);
                remaining_ -= n;
                const bool frame_done = remaining_ == 0;
                if (frame_done) st_ = state::header;
                return message_piece(p, n, frame_done && fin_);
            }
            case state::inflate_tail:
                return inflate_finish(0);
            case state::control: {
                const std::size_t len = static_cast<std::size_t>(remaining_);
                if (clen_ == 0 && in.size() >= len) {
                    // The whole payload is here: unmask and report it in place.
                    std::byte* p = in.data();
                    if (masked_) apply_mask(p, len, key_, 0);
                    in = in.subspan(len);
                    return control_done(p);
                }
                const std::size_t k = std::min(len - clen_, in.size());
                if (k > 0) std::memcpy(cbuf_ + clen_, in.data(), k);
                clen_ = static_cast<std::uint8_t>(clen_ + k);
                in = in.subspan(k);
                if (clen_ < len) return event{};
                if (masked_) apply_mask(cbuf_, len, key_, 0);
                return control_done(cbuf_);
            }
            case state::closed:
                // RFC 6455 §5.5.1: nothing may follow a close frame; whatever does is dropped.
                in = in.subspan(in.size());
                return event{};
            case state::failed:
                return fail(err_);
        }
        FERRY_BUG(true, "ws decoder: unknown state");
        return fail_with(errc::ws_protocol, "internal state");
    }
}

}  // namespace ferry::ws
