#include "proto/ws/encoder.hh"

#include <zlib.h>

#include <algorithm>
#include <cstring>

#include "proto/base/assert.hh"
#include "proto/ws/mask.hh"
#include "proto/ws/utf8.hh"

namespace ferry::ws {

struct encoder::deflate_state {
    z_stream z{};
    bool ok = false;
    bool reset_after_message = false;
    std::vector<std::byte> scratch;  // grows to the largest compressed message, then reused

    ~deflate_state() {
        if (ok) deflateEnd(&z);
    }
};

encoder::encoder(role r, const std::optional<deflate_params>& pmd, const deflate_config& cfg,
                 mask_source ms)
    : role_(r), ms_(ms), min_size_(cfg.min_size) {
    FERRY_ASSERT(r == role::server || ms_.next != nullptr);  // a client must mask every frame
    if (pmd) {
        def_ = std::make_unique<deflate_state>();
        const std::uint8_t bits =
            r == role::server ? pmd->server_max_window_bits : pmd->client_max_window_bits;
        const int level = std::clamp(cfg.level, 1, 9);
        const int mem = std::clamp(cfg.mem_level, 1, 9);
        const int rc = deflateInit2(&def_->z, level, Z_DEFLATED, -zlib_window_bits(bits), mem,
                                    Z_DEFAULT_STRATEGY);
        FERRY_ASSERT(rc == Z_OK);  // only fails when out of memory
        def_->ok = true;
        def_->reset_after_message = r == role::server ? pmd->server_no_context_takeover
                                                       : pmd->client_no_context_takeover;
    }
}

encoder::~encoder() = default;
encoder::encoder(encoder&&) noexcept = default;
encoder& encoder::operator=(encoder&&) noexcept = default;

std::uint32_t encoder::next_key() noexcept { return ms_.next(ms_.ctx); }

bool encoder::want_compress(compress c, std::size_t n) const noexcept {
    return def_ && c == compress::yes && n >= min_size_;
}

status encoder::check_data(opcode op) const noexcept {
    if (close_sent_) return fail(errc::closed, "close already sent");
    if (op != opcode::text && op != opcode::binary) {
        return fail(errc::invalid_argument, "data opcode must be text or binary");
    }
    if (in_msg_) return fail(errc::invalid_argument, "a message sent in parts is open");
    return {};
}

void encoder::frame(buffer_chain& out, opcode op, bool fin_bit, bool rsv1, const slice* s, bytes b) {
    const bytes payload = s ? s->view() : b;
    const std::size_t n = payload.size();
    frame_header h;
    h.fin = fin_bit;
    h.rsv1 = rsv1;
    h.op = op;
    h.masked = role_ == role::client;
    h.payload_len = n;
    if (h.masked) h.mask_key = next_key();
    const std::size_t hn = header_size(n, h.masked);
    if (s == nullptr || n <= buffer_chain::copy_threshold) {
        // Header and payload in one contiguous write.
        mut_bytes w = out.prepare(hn + n);
        encode_header(w.data(), h);
        if (h.masked) {
            copy_masked(w.data() + hn, payload.data(), n, h.mask_key, 0);
        } else if (n > 0) {
            std::memcpy(w.data() + hn, payload.data(), n);
        }
        out.commit(hn + n);
        return;
    }
    mut_bytes w = out.prepare(hn);
    encode_header(w.data(), h);
    out.commit(hn);
    if (h.masked) apply_mask(s->data(), n, h.mask_key, 0);
    out.append(*s);
}

void encoder::fragments(buffer_chain& out, opcode op, bool rsv1, bool last, const slice* s, bytes b,
                        std::size_t fragment_size) {
    const std::size_t total = s ? s->size() : b.size();
    if (fragment_size == 0 || total <= fragment_size) {
        frame(out, op, last, rsv1, s, b);
        return;
    }
    std::size_t off = 0;
    bool first = true;
    for (;;) {
        const std::size_t k = std::min(fragment_size, total - off);
        const bool final_piece = off + k == total;
        const opcode fop = first ? op : opcode::continuation;
        if (s) {
            slice sub = s->sub(off, k);
            frame(out, fop, last && final_piece, first && rsv1, &sub, {});
        } else {
            frame(out, fop, last && final_piece, first && rsv1, nullptr, b.subspan(off, k));
        }
        first = false;
        off += k;
        if (final_piece) break;
    }
}

bytes encoder::deflate(bytes b, bool last) {
    deflate_state& d = *def_;
    FERRY_ASSERT(b.size() <= 0xFFFFFFFFu);  // zlib counts in 32 bits; far above any message limit
    auto& buf = d.scratch;
    if (buf.size() < b.size() + 64) buf.resize(b.size() + b.size() / 8 + 64);
    std::size_t used = 0;
    d.z.next_in = reinterpret_cast<Bytef*>(const_cast<std::byte*>(b.data()));
    d.z.avail_in = static_cast<uInt>(b.size());
    for (;;) {
        if (buf.size() - used < 64) buf.resize(buf.size() * 2);
        d.z.next_out = reinterpret_cast<Bytef*>(buf.data() + used);
        d.z.avail_out = static_cast<uInt>(buf.size() - used);
        const int rc = ::deflate(&d.z, Z_SYNC_FLUSH);
        used = buf.size() - d.z.avail_out;
        // Z_BUF_ERROR: nothing to do (an empty part right after a flush); output space left
        // with all input taken: the flush is complete.
        if (rc == Z_BUF_ERROR || (d.z.avail_out != 0 && d.z.avail_in == 0)) break;
        FERRY_ASSERT(rc == Z_OK);  // deflate cannot fail on valid state
    }
    // RFC 7692 §7.2.1: the sync flush ends with an empty stored block, 00 00 FF FF, which the
    // receiver appends itself.
    static constexpr unsigned char tail[4] = {0x00, 0x00, 0xFF, 0xFF};
    if (last && used >= 4 && std::memcmp(buf.data() + used - 4, tail, 4) == 0) used -= 4;
    // Nothing came out (an empty message right after an earlier flush: zlib returns
    // Z_BUF_ERROR). The receiver appends 00 00 FF FF, which is only the tail of an empty stored
    // block: without the block's first byte it inflates as "invalid stored block lengths".
    // RFC 7692 §7.2.3.6: send the single byte 0x00, which completes that block.
    if (last && used == 0) {
        buf[0] = std::byte{0};
        used = 1;
    }
    if (last && d.reset_after_message) deflateReset(&d.z);
    return {buf.data(), used};
}

status encoder::send(buffer_chain& out, opcode op, slice payload, const send_options& o) {
    if (status s = check_data(op); !s) return s;
    if (want_compress(o.comp, payload.size())) {
        fragments(out, op, true, true, nullptr, deflate(payload.view(), true), o.fragment_size);
    } else {
        fragments(out, op, false, true, &payload, {}, o.fragment_size);
    }
    return {};
}

status encoder::send_copy(buffer_chain& out, opcode op, bytes payload, const send_options& o) {
    if (status s = check_data(op); !s) return s;
    const bool z = want_compress(o.comp, payload.size());
    fragments(out, op, z, true, nullptr, z ? deflate(payload, true) : payload, o.fragment_size);
    return {};
}

// The frame opcode and RSV1 of the next part of a message sent in parts: the first part opens
// the message (and decides compression), later ones are continuations.
result<encoder::part_start> encoder::begin_part(opcode op, compress c) {
    if (close_sent_) return fail(errc::closed, "close already sent");
    if (in_msg_) return part_start{opcode::continuation, false};
    if (op != opcode::text && op != opcode::binary) {
        return fail(errc::invalid_argument, "data opcode must be text or binary");
    }
    msg_compressed_ = def_ && c == compress::yes;
    return part_start{op, msg_compressed_};
}

status encoder::send_part(buffer_chain& out, opcode op, slice payload, fin f, compress c) {
    FERRY_TRY(ps, begin_part(op, c));
    const bool last = f == fin::yes;
    if (msg_compressed_) {
        frame(out, ps->op, last, ps->rsv1, nullptr, deflate(payload.view(), last));
    } else {
        frame(out, ps->op, last, false, &payload, {});
    }
    in_msg_ = !last;
    return {};
}

status encoder::send_part_copy(buffer_chain& out, opcode op, bytes payload, fin f, compress c) {
    FERRY_TRY(ps, begin_part(op, c));
    const bool last = f == fin::yes;
    frame(out, ps->op, last, ps->rsv1, nullptr, msg_compressed_ ? deflate(payload, last) : payload);
    in_msg_ = !last;
    return {};
}

void encoder::control(buffer_chain& out, opcode op, bytes payload) {
    frame(out, op, true, false, nullptr, payload);
}

status encoder::ping(buffer_chain& out, bytes payload) {
    if (close_sent_) return fail(errc::closed, "close already sent");
    if (payload.size() > 125) return fail(errc::invalid_argument, "ping payload over 125 bytes");
    control(out, opcode::ping, payload);
    return {};
}

status encoder::pong(buffer_chain& out, bytes payload) {
    if (payload.size() > 125) return fail(errc::invalid_argument, "pong payload over 125 bytes");
    control(out, opcode::pong, payload);
    return {};
}

status encoder::close(buffer_chain& out, std::uint16_t code, std::string_view reason) {
    if (close_sent_) return fail(errc::closed, "close already sent");
    if (code == close_code::no_status) {
        if (!reason.empty()) return fail(errc::invalid_argument, "a reason needs a close code");
        control(out, opcode::close, {});
    } else {
        if (!valid_close_code(code)) return fail(errc::invalid_argument, "close code not sendable");
        if (reason.size() > 123) return fail(errc::invalid_argument, "close reason over 123 bytes");
        if (!valid_utf8(as_bytes(reason))) return fail(errc::invalid_argument, "close reason not UTF-8");
        std::byte p[125];
        store_be16(p, code);
        if (!reason.empty()) std::memcpy(p + 2, reason.data(), reason.size());
        control(out, opcode::close, {p, 2 + reason.size()});
    }
    close_sent_ = true;
    return {};
}

}  // namespace ferry::ws
