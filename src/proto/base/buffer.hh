#pragma once
// One buffer vocabulary for every layer (STYLE 8).
//
//   owner         an intrusively reference-counted holder of memory with a release hook: a heap
//                 `block`, or a provided-buffer-ring entry that goes back to its ring on release.
//                 Counts are not atomic: memory is owned by one shard at a time.
//   slice         (owner, pointer, length): a counted, zero-copy view; cheap to split and trim.
//   buffer_chain  an ordered list of slices. Small appends are copied into the tail block, large
//                 ones are linked; it becomes an iovec for a scatter-gather send and is consumed
//                 from the front as the kernel accepts bytes.
#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ferry {

using bytes = std::span<const std::byte>;
using mut_bytes = std::span<std::byte>;

inline bytes as_bytes(std::string_view s) noexcept {
    return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}
inline std::string_view as_string(bytes b) noexcept {
    return {reinterpret_cast<const char*>(b.data()), b.size()};
}

struct owner {
    std::uint32_t refs = 1;
    void (*release)(owner*) noexcept = nullptr;  // called when refs drops to 0

    void ref() noexcept { ++refs; }
    void unref() noexcept {
        if (--refs == 0) release(this);
    }
};

// A heap block; the data follows the header. Created with `block::make`.
struct block : owner {
    std::uint32_t capacity = 0;
    std::uint32_t used = 0;  // bytes handed out from the front (for append-into-tail)

    std::byte* data() noexcept { return reinterpret_cast<std::byte*>(this + 1); }
    static block* make(std::size_t capacity);  // aborts on OOM like operator new
};

class slice {
public:
    slice() noexcept = default;
    // Takes one reference on `o` (the caller keeps its own).
    slice(owner* o, std::byte* p, std::size_t n) noexcept : o_(o), p_(p), n_(n) {
        if (o_) o_->ref();
    }
    // Copies `src` into a new exactly-sized heap block.
    static slice copy_of(bytes src);
    // A new heap block of `n` uninitialised bytes.
    static slice allocate(std::size_t n);

    slice(const slice& s) noexcept : o_(s.o_), p_(s.p_), n_(s.n_) {
        if (o_) o_->ref();
    }
    slice(slice&& s) noexcept : o_(std::exchange(s.o_, nullptr)), p_(s.p_), n_(std::exchange(s.n_, 0)) {}
    slice& operator=(slice s) noexcept {
        swap(s);
        return *this;
    }
    ~slice() {
        if (o_) o_->unref();
    }
    void swap(slice& s) noexcept {
        std::swap(o_, s.o_);
        std::swap(p_, s.p_);
        std::swap(n_, s.n_);
    }

    std::byte* data() const noexcept { return p_; }
    std::size_t size() const noexcept { return n_; }
    bool empty() const noexcept { return n_ == 0; }
    bytes view() const noexcept { return {p_, n_}; }
    mut_bytes mut_view() const noexcept { return {p_, n_}; }
    owner* get_owner() const noexcept { return o_; }

    // Drop `k` bytes from the front / back (k <= size()).
    void trim_front(std::size_t k) noexcept { p_ += k; n_ -= k; }
    void trim_back(std::size_t k) noexcept { n_ -= k; }
    // A new slice sharing the memory of [off, off+len) (bounds are the caller's precondition).
    slice sub(std::size_t off, std::size_t len) const noexcept { return slice(o_, p_ + off, len); }
    // `part` as a slice: shared (no copy) when it lies inside `in` (a codec decoded it in place
    // in that receive buffer), else a heap copy (e.g. reassembled in the codec's own buffer).
    static slice part_or_copy(const slice* in, bytes part) {
        if (in && part.data() >= in->data() && part.data() + part.size() <= in->data() + in->size()) {
            return in->sub(static_cast<std::size_t>(part.data() - in->data()), part.size());
        }
        return copy_of(part);
    }

private:
    owner* o_ = nullptr;
    std::byte* p_ = nullptr;
    std::size_t n_ = 0;
};

class buffer_chain {
public:
    // Appends up to this size are copied into the tail block; larger ones are linked.
    static constexpr std::size_t copy_threshold = 512;
    static constexpr std::size_t block_size = 16 * 1024;

    buffer_chain() = default;
    ~buffer_chain() { drop_spare(); }
    buffer_chain(buffer_chain&& o) noexcept
        : v_(std::move(o.v_)), head_(std::exchange(o.head_, 0)), size_(std::exchange(o.size_, 0)),
          tail_block_(std::exchange(o.tail_block_, nullptr)), spare_(std::exchange(o.spare_, nullptr)),
          pending_(std::exchange(o.pending_, 0)) {
        o.v_.clear();
    }
    buffer_chain& operator=(buffer_chain&& o) noexcept {
        if (this != &o) {
            clear();
            drop_spare();
            v_ = std::move(o.v_);
            o.v_.clear();
            head_ = std::exchange(o.head_, 0);
            size_ = std::exchange(o.size_, 0);
            tail_block_ = std::exchange(o.tail_block_, nullptr);
            pending_ = std::exchange(o.pending_, 0);
            spare_ = std::exchange(o.spare_, nullptr);
        }
        return *this;
    }
    buffer_chain(const buffer_chain&) = delete;
    buffer_chain& operator=(const buffer_chain&) = delete;

    std::size_t size() const noexcept { return size_; }
    bool empty() const noexcept { return size_ == 0; }
    std::size_t fragments() const noexcept { return v_.size() - head_; }

    // Copies `b` (always). Fills the tail block first.
    void append_copy(bytes b);
    void append_copy(std::string_view s) { append_copy(as_bytes(s)); }
    // Links `s` without copying unless it is small enough to copy into the tail block.
    void append(slice s);
    // Moves every fragment of `other` to the end of this chain.
    void append(buffer_chain&& other);

    // Returns writable space of exactly `n` bytes at the end (contiguous); `commit(k)` makes the
    // first k of them part of the chain. Only one prepare may be outstanding.
    mut_bytes prepare(std::size_t n);
    void commit(std::size_t k) noexcept;

    // Fills up to `max` iovecs from the front; returns how many were written.
    std::size_t to_iovec(iovec* iov, std::size_t max) const noexcept;
    // Drops `n` bytes from the front (n <= size()).
    void consume(std::size_t n) noexcept;
    // Copies the first `out.size()` bytes (precondition: <= size()) without consuming.
    void peek(mut_bytes out) const noexcept;
    // Flattens to one contiguous string (tests, small control messages).
    std::string to_string() const;
    void clear() noexcept;
    const slice& front() const noexcept { return v_[head_]; }
    // Removes and returns the front fragment.
    slice pop_front() noexcept;

private:
    void compact();
    void drop_spare() noexcept {
        if (spare_) std::exchange(spare_, nullptr)->unref();
    }
    std::vector<slice> v_;
    std::size_t head_ = 0;
    std::size_t size_ = 0;
    block* tail_block_ = nullptr;  // last block we allocated and may still append into
    // A block kept when the chain emptied while it was the block's only holder: the next
    // small write reuses it instead of allocating (a request/response loop allocates nothing).
    block* spare_ = nullptr;
    block* new_block(std::size_t min_capacity);
    std::size_t pending_ = 0;      // bytes handed out by prepare()
};

// ---- big-endian helpers used by every wire codec --------------------------------------------
inline std::uint16_t load_be16(const std::byte* p) noexcept {
    return static_cast<std::uint16_t>((std::to_integer<unsigned>(p[0]) << 8) | std::to_integer<unsigned>(p[1]));
}
inline std::uint32_t load_be32(const std::byte* p) noexcept {
    return (std::uint32_t(std::to_integer<unsigned>(p[0])) << 24) | (std::uint32_t(std::to_integer<unsigned>(p[1])) << 16) |
           (std::uint32_t(std::to_integer<unsigned>(p[2])) << 8) | std::uint32_t(std::to_integer<unsigned>(p[3]));
}
inline std::uint64_t load_be64(const std::byte* p) noexcept {
    return (std::uint64_t(load_be32(p)) << 32) | load_be32(p + 4);
}
inline void store_be16(std::byte* p, std::uint16_t v) noexcept {
    p[0] = std::byte(v >> 8);
    p[1] = std::byte(v);
}
inline void store_be32(std::byte* p, std::uint32_t v) noexcept {
    p[0] = std::byte(v >> 24);
    p[1] = std::byte(v >> 16);
    p[2] = std::byte(v >> 8);
    p[3] = std::byte(v);
}
inline void store_be64(std::byte* p, std::uint64_t v) noexcept {
    store_be32(p, std::uint32_t(v >> 32));
    store_be32(p + 4, std::uint32_t(v));
}

}  // namespace ferry
