#pragma once
// A provided-buffer ring (IORING_REGISTER_PBUF_RING, kernel 5.19) set up by hand: liburing 2.3
// lacks io_uring_setup_buf_ring. One per shard; multishot recv picks buffers from it.
//
// Ownership of a buffer (bid) moves: ring (kernel may fill it) -> CQE (the kernel filled it) ->
// `slice`s handed to a connection's on_data -> back to the ring when the last slice referencing
// it is dropped (the `owner` release hook). Returns are batched: `recycle` writes the ring entry,
// `commit` publishes all of them with one store-release of the tail, just before each submit.
//
// Thread: the owning shard only. Slices of these buffers must not cross shards (hand-over copies
// them, see connection::hand_over).
#include <liburing.h>

#include <cstddef>
#include <cstdint>
#include <vector>

#include "proto/base/buffer.hh"
#include "proto/base/result.hh"

namespace ferry::reactor {

class buf_ring {
public:
    buf_ring() = default;
    buf_ring(const buf_ring&) = delete;
    buf_ring& operator=(const buf_ring&) = delete;
    ~buf_ring();

    // Precondition: `count` is a power of two in [1, 32768]; `size` in [64, 1 MiB].
    status init(io_uring* ring, std::uint16_t group, std::uint32_t count, std::uint32_t size,
                bool populate = true) noexcept;
    // Unregisters (the ring must still be alive). Memory is freed only when no slice is held.
    void destroy(io_uring* ring) noexcept;

    std::uint16_t group() const noexcept { return group_; }
    std::uint32_t count() const noexcept { return count_; }
    std::uint32_t buffer_size() const noexcept { return size_; }
    // Buffers currently owned by handlers (slices alive).
    std::uint32_t held() const noexcept { return held_; }
    // Buffers the kernel may still fill (published or about to be).
    std::uint32_t available() const noexcept { return count_ - held_; }
    bool valid_bid(std::uint32_t bid) const noexcept { return bid < count_; }

    // A CQE reported `len` bytes in `bid`: wraps it as a zero-copy slice (the buffer returns to
    // the ring when the last reference is dropped).
    slice take(std::uint16_t bid, std::size_t len) noexcept;
    // A CQE reported `bid` but we copy (or drop) its bytes: the buffer goes straight back.
    void give_back(std::uint16_t bid) noexcept { recycle(bid); }
    const std::byte* data(std::uint16_t bid) const noexcept { return base_ + std::size_t(bid) * size_; }

    // Publishes recycled buffers to the kernel. Cheap when nothing is pending.
    void commit() noexcept {
        if (pending_) {
            io_uring_buf_ring_advance(br_, static_cast<int>(pending_));
            pending_ = 0;
        }
    }
    bool is_ring_owner(const owner* o) const noexcept;  // any shard's ring

private:
    struct entry : owner {
        buf_ring* ring = nullptr;
        std::uint16_t bid = 0;
    };
    static void release_hook(owner* o) noexcept;
    static void orphan_hook(owner* o) noexcept;  // for slices that outlive the shard (leaked)
    void recycle(std::uint16_t bid) noexcept;

    io_uring_buf_ring* br_ = nullptr;
    std::byte* base_ = nullptr;
    std::size_t ring_bytes_ = 0;
    std::size_t data_bytes_ = 0;
    std::vector<entry> entries_;
    std::uint32_t count_ = 0;
    std::uint32_t size_ = 0;
    std::uint32_t mask_ = 0;
    std::uint32_t pending_ = 0;  // recycled, not yet published
    std::uint32_t held_ = 0;
    std::uint16_t group_ = 0;
    bool registered_ = false;
};

}  // namespace ferry::reactor
