#pragma once
// The sending half of a WebSocket connection: messages in, frames appended to a caller-owned
// buffer_chain, scatter-gather.
//
// Who copies what:
//   send(slice)       server: the header is written into the chain, the payload slice is linked
//                     (zero copy; payloads <= buffer_chain::copy_threshold are copied, which is
//                     cheaper than a fragment). client: the payload is masked IN PLACE in the
//                     slice's memory, then linked: the caller hands over those bytes and must
//                     not read them afterwards (small payloads are copied masked instead).
//   send_copy(bytes)  always one copy into the chain (masking folded into the copy for a
//                     client); for read-only or short-lived data.
//   compressed        (permessage-deflate) always one copy: deflate output is written to a
//                     scratch buffer that grows once and is reused, then into the chain.
//   control frames    copied (<= 125 bytes).
// Mask keys (client role) come from the caller's mask_source, one per frame: the codec has no
// RNG (sans-IO); RFC 6455 §5.3 wants them unpredictable, so derive them from a CSPRNG stream.
//
// One encoder per connection, any thread, not shared.
#include <cstdint>
#include <memory>
#include <optional>
#include <string_view>
#include <vector>

#include "proto/base/buffer.hh"
#include "proto/base/result.hh"
#include "proto/ws/deflate.hh"
#include "proto/ws/frame.hh"

namespace ferry::ws {

// Client role: returns the 4 key bytes of the next frame (in memory order, see mask.hh).
// A plain function pointer and a context: no allocation, no std::function on the data path.
struct mask_source {
    std::uint32_t (*next)(void* ctx) noexcept = nullptr;
    void* ctx = nullptr;
};

enum class compress : bool { no, yes };
enum class fin : bool { no, yes };

struct send_options {
    // Compress when permessage-deflate was negotiated and the message is at least
    // deflate_config::min_size bytes. Ignored otherwise.
    compress comp = compress::yes;
    // > 0: split the message into frames of at most this many payload bytes (after
    // compression). 0: one frame.
    std::size_t fragment_size = 0;
};

class encoder {
public:
    // `pmd`: the negotiated permessage-deflate parameters (nullopt: never compress); `cfg`
    // supplies the level, memLevel and min_size. A client must pass a mask_source.
    explicit encoder(role r, const std::optional<deflate_params>& pmd = std::nullopt,
                     const deflate_config& cfg = {}, mask_source ms = {});
    ~encoder();
    encoder(encoder&&) noexcept;
    encoder& operator=(encoder&&) noexcept;
    encoder(const encoder&) = delete;
    encoder& operator=(const encoder&) = delete;

    // A whole message (text or binary). Fails with invalid_argument for another opcode or
    // while a message sent in parts is open, with closed after close(). For text the caller
    // guarantees valid UTF-8 (not re-checked on the send path).
    status send(buffer_chain& out, opcode op, slice payload, const send_options& o = {});
    status send_copy(buffer_chain& out, opcode op, bytes payload, const send_options& o = {});

    // A message sent in parts as they become available (streaming). The first part opens the
    // message with `op` (text/binary; later parts may pass either, continuation frames are
    // written), fin::yes ends it. Control frames may be sent between parts. Compression is
    // decided by the first part; each compressed part is sync-flushed so the peer can inflate
    // it at once.
    status send_part(buffer_chain& out, opcode op, slice payload, fin f, compress c = compress::no);
    status send_part_copy(buffer_chain& out, opcode op, bytes payload, fin f,
                          compress c = compress::no);

    // Control frames: payload <= 125 bytes (invalid_argument otherwise).
    status ping(buffer_chain& out, bytes payload);
    status pong(buffer_chain& out, bytes payload);
    // `code` must be valid on the wire (valid_close_code), or close_code::no_status for an empty
    // close frame; `reason` <= 123 bytes of valid UTF-8. After it, data and pings fail with
    // errc::closed (a pong is still allowed: it answers a ping read before the close).
    status close(buffer_chain& out, std::uint16_t code, std::string_view reason = {});

    bool in_message() const noexcept { return in_msg_; }
    bool close_sent() const noexcept { return close_sent_; }
    role get_role() const noexcept { return role_; }
    bool compression() const noexcept { return def_ != nullptr; }

private:
    struct part_start {
        opcode op;
        bool rsv1;
    };
    result<part_start> begin_part(opcode op, compress c);
    struct deflate_state;

    status check_data(opcode op) const noexcept;
    // One frame: header + payload, masked for a client. `in_place` lets a client mask the
    // slice's own memory.
    void frame(buffer_chain& out, opcode op, bool fin_bit, bool rsv1, const slice* s, bytes b);
    void control(buffer_chain& out, opcode op, bytes payload);
    // Frames `payload` as message parts: first frame carries `op` and `rsv1`.
    void fragments(buffer_chain& out, opcode op, bool rsv1, bool last, const slice* s, bytes b,
                   std::size_t fragment_size);
    // Deflates `b` into scratch_ (sync flush), strips the 00 00 FF FF tail when `last`.
    bytes deflate(bytes b, bool last);
    bool want_compress(compress c, std::size_t n) const noexcept;
    std::uint32_t next_key() noexcept;

    role role_;
    mask_source ms_;
    std::unique_ptr<deflate_state> def_;
    std::size_t min_size_ = 0;
    bool in_msg_ = false;
    bool msg_compressed_ = false;
    bool close_sent_ = false;
};

}  // namespace ferry::ws
