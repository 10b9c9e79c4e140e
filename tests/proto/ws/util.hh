#pragma once
// Helpers for the WebSocket tests: a frame builder written independently of ws::encoder (so the
// decoder is not only checked against our own encoder), a deterministic mask source, and a
// driver that feeds a decoder in chosen chunk sizes and collects messages.
#include <array>
#include <cstdint>
#include <cstring>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "proto/ws/codec.hh"
#include "proto/ws/decoder.hh"
#include "proto/ws/encoder.hh"

namespace ws_test {

using namespace ferry;
using namespace ferry::ws;

// Length encodings, including the non-minimal ones a correct encoder never writes.
enum class len_form { minimal, b16, b64 };

// One frame, byte by byte from RFC 6455 §5.2. `b0_extra` ORs bits into the first byte (RSV).
inline std::string raw_frame(unsigned op, std::string_view payload, bool fin = true,
                             std::optional<std::array<std::uint8_t, 4>> mask = std::nullopt,
                             unsigned rsv = 0, len_form lf = len_form::minimal) {
    std::string f;
    f += static_cast<char>((fin ? 0x80 : 0) | ((rsv & 7) << 4) | (op & 0x0F));
    const std::uint64_t n = payload.size();
    const unsigned mbit = mask ? 0x80 : 0;
    len_form form = lf;
    if (form == len_form::minimal) form = n < 126 ? len_form::minimal : n <= 0xFFFF ? len_form::b16 : len_form::b64;
    if (form == len_form::minimal) {
        f += static_cast<char>(mbit | n);
    } else if (form == len_form::b16) {
        f += static_cast<char>(mbit | 126);
        f += static_cast<char>(n >> 8);
        f += static_cast<char>(n);
    } else {
        f += static_cast<char>(mbit | 127);
        for (int i = 7; i >= 0; --i) f += static_cast<char>(n >> (8 * i));
    }
    if (mask) {
        for (auto b : *mask) f += static_cast<char>(b);
        for (std::size_t i = 0; i < n; ++i) {
            f += static_cast<char>(static_cast<std::uint8_t>(payload[i]) ^ (*mask)[i % 4]);
        }
    } else {
        f.append(payload);
    }
    return f;
}

inline constexpr std::array<std::uint8_t, 4> k1 = {0x37, 0xfa, 0x21, 0x3d};

// A client frame (masked with k1) / a server frame (unmasked).
inline std::string cframe(unsigned op, std::string_view p, bool fin = true, unsigned rsv = 0) {
    return raw_frame(op, p, fin, k1, rsv);
}
inline std::string sframe(unsigned op, std::string_view p, bool fin = true, unsigned rsv = 0) {
    return raw_frame(op, p, fin, std::nullopt, rsv);
}

inline std::string close_payload(std::uint16_t code, std::string_view reason = {}) {
    std::string s;
    s += static_cast<char>(code >> 8);
    s += static_cast<char>(code);
    s.append(reason);
    return s;
}

// Deterministic mask keys (tests only; production keys come from a CSPRNG).
struct counter_mask {
    std::mt19937 rng{12345};
    static std::uint32_t next(void* self) noexcept {
        return static_cast<std::uint32_t>(static_cast<counter_mask*>(self)->rng());
    }
    mask_source source() { return mask_source{&counter_mask::next, this}; }
};

struct message {
    opcode op = opcode::binary;
    std::string data;
    bool operator==(const message&) const = default;
};

struct decoded {
    std::vector<message> messages;
    std::vector<std::string> pings, pongs;
    bool closed = false;
    std::uint16_t close_code = 0;
    std::string close_reason;
    errc error = errc::ok;
    std::string error_detail;
    bool in_message = false;        // a message was open at the end of input
    std::string partial;            // bytes of the unfinished message
    bool order_ok = true;           // first/last flags were consistent
};

// Feeds `wire` to `dec` in chunks of the sizes returned by `chunk(i)` (cycled), each chunk copied
// into its own heap buffer so views into it are checked by ASan and no chunk sees its neighbour.
template <class ChunkFn>
decoded decode_chunks(decoder& dec, std::string_view wire, ChunkFn chunk) {
    decoded out;
    std::size_t off = 0;
    bool open = false;
    std::size_t i = 0;
    while (off < wire.size() && out.error == errc::ok) {
        std::size_t k = std::max<std::size_t>(1, chunk(i++));
        k = std::min(k, wire.size() - off);
        std::vector<std::byte> buf(k);
        std::memcpy(buf.data(), wire.data() + off, k);
        off += k;
        mut_bytes in(buf);
        for (;;) {
            auto ev = dec.next(in);
            if (!ev) {
                out.error = ev.code();
                out.error_detail = ev.err().detail;
                break;
            }
            if (ev->type == event_type::need_more) {
                if (!in.empty()) out.order_ok = false;  // need_more means all consumed
                break;
            }
            std::string p(reinterpret_cast<const char*>(ev->payload.data()), ev->payload.size());
            switch (ev->type) {
                case event_type::data:
                    if (ev->first == open) out.order_ok = false;
                    if (ev->first) {
                        out.partial.clear();
                        open = true;
                        out.messages.push_back({ev->op, {}});
                    }
                    out.partial += p;
                    if (ev->last) {
                        out.messages.back().data = out.partial;
                        out.partial.clear();
                        open = false;
                    }
                    break;
                case event_type::ping: out.pings.push_back(p); break;
                case event_type::pong: out.pongs.push_back(p); break;
                case event_type::close:
                    out.closed = true;
                    out.close_code = ev->code;
                    out.close_reason = p;
                    break;
                default: break;
            }
        }
    }
    if (open) {
        out.in_message = true;
        out.messages.pop_back();
    }
    return out;
}

inline decoded decode_all(decoder& dec, std::string_view wire) {
    return decode_chunks(dec, wire, [&](std::size_t) { return wire.size(); });
}
inline decoded decode_bytewise(decoder& dec, std::string_view wire) {
    return decode_chunks(dec, wire, [](std::size_t) { return std::size_t{1}; });
}

inline std::string random_bytes(std::mt19937& rng, std::size_t n) {
    std::string s(n, '\0');
    for (auto& c : s) c = static_cast<char>(rng());
    return s;
}

// Valid UTF-8 text with 1..4-byte code points mixed.
inline std::string random_text(std::mt19937& rng, std::size_t approx) {
    std::string s;
    while (s.size() < approx) {
        unsigned kind = rng() % 8;
        if (kind < 4) {
            s += static_cast<char>('a' + rng() % 26);
        } else if (kind == 4) {
            s += "\xc3\xa9";  // é
        } else if (kind == 5) {
            s += "\xe2\x82\xac";  // €
        } else if (kind == 6) {
            s += "\xf0\x9f\x98\x80";  // 😀
        } else {
            s += "\xd0\x96";  // Ж
        }
    }
    return s;
}

}  // namespace ws_test
