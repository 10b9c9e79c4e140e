#include "proto/ws/frame.hh"

#include <cstring>

#include "proto/base/assert.hh"

namespace ferry::ws {

std::size_t encode_header(std::byte* out, const frame_header& h) noexcept {
    FERRY_DASSERT(h.payload_len < (std::uint64_t(1) << 63));
    FERRY_DASSERT(!is_control(h.op) || (h.payload_len <= 125 && h.fin));
    out[0] = std::byte((h.fin ? 0x80 : 0) | (h.rsv1 ? 0x40 : 0) | static_cast<unsigned>(h.op));
    const std::byte mbit{static_cast<unsigned char>(h.masked ? 0x80 : 0)};
    std::size_t n;
    if (h.payload_len < 126) {
        out[1] = mbit | std::byte(h.payload_len);
        n = 2;
    } else if (h.payload_len <= 0xFFFF) {
        out[1] = mbit | std::byte{126};
        store_be16(out + 2, static_cast<std::uint16_t>(h.payload_len));
        n = 4;
    } else {
        out[1] = mbit | std::byte{127};
        store_be64(out + 2, h.payload_len);
        n = 10;
    }
    if (h.masked) {
        std::memcpy(out + n, &h.mask_key, 4);
        n += 4;
    }
    return n;
}

std::uint16_t close_code_for(errc e) noexcept {
    switch (e) {
        case errc::ws_protocol:
        case errc::malformed:
        case errc::bad_length:
            return close_code::protocol_error;
        case errc::ws_bad_utf8:
        case errc::ws_deflate:
            return close_code::invalid_payload;
        case errc::ws_too_big:
        case errc::limit_exceeded:
            return close_code::too_big;
        case errc::ws_policy:
        case errc::auth:
            return close_code::policy;
        case errc::closed:
            return close_code::normal;
        default:
            return close_code::internal_error;
    }
}

}  // namespace ferry::ws
