#pragma once
// user_data encoding for every SQE the reactor submits (STYLE 6).
//
//   bits 0..3    op_kind: which completion handler runs (and which object type the pointer is)
//   bits 4..47   the owning object's address (objects are 16-byte aligned; user-space addresses
//                fit in 48 bits on x86-64 and arm64 with 48-bit VAs)
//   bits 48..63  a generation: the owner bumps it every time it arms that operation, and a CQE
//                whose generation does not match the current arm is stale and is ignored
//                (counted as stale_cqes; FERRY_BUG in debug builds).
//
// The pointed-to object (connection, listener, shard) is kept alive by the reactor until the
// final CQE (the one without IORING_CQE_F_MORE) of every operation it armed has been reaped.
#include <cstdint>

#include "proto/base/assert.hh"

namespace ferry::reactor::detail {

enum class op_kind : std::uint8_t {
    none = 0,           // cancel requests and other CQEs that need no action
    recv = 1,           // connection: multishot recv (buffer select)
    send = 2,           // connection: send / sendmsg
    connect = 3,        // connection: outbound connect
    accept = 4,         // listener: multishot accept
    eventfd_read = 5,   // shard: wake-up from a non-shard thread
    wake = 6,           // shard: IORING_OP_MSG_RING wake-up from another shard (target side)
    msg_ring_send = 7,  // shard: failure of a MSG_RING we sent (success CQEs are skipped)
};

inline constexpr std::uint64_t kind_mask = 0xf;
inline constexpr std::uint64_t ptr_mask = 0x0000'ffff'ffff'fff0ull;

inline std::uint64_t make_ud(const void* p, op_kind k, std::uint16_t gen = 0) noexcept {
    auto v = static_cast<std::uint64_t>(reinterpret_cast<std::uintptr_t>(p));
    FERRY_DASSERT((v & ~ptr_mask) == 0);
    return v | static_cast<std::uint64_t>(k) | (static_cast<std::uint64_t>(gen) << 48);
}
inline op_kind ud_kind(std::uint64_t ud) noexcept { return static_cast<op_kind>(ud & kind_mask); }
inline std::uint16_t ud_gen(std::uint64_t ud) noexcept { return static_cast<std::uint16_t>(ud >> 48); }
template <class T>
T* ud_ptr(std::uint64_t ud) noexcept {
    return reinterpret_cast<T*>(static_cast<std::uintptr_t>(ud & ptr_mask));
}

}  // namespace ferry::reactor::detail
