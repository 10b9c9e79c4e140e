#include "proto/base/buffer.hh"

#include <algorithm>
#include <cstdlib>
#include <new>

#include "proto/base/assert.hh"

namespace ferry {

namespace {
void free_block(owner* o) noexcept {
    auto* b = static_cast<block*>(o);
    b->~block();
    std::free(b);
}
}  // namespace

block* block::make(std::size_t capacity) {
    FERRY_ASSERT(capacity <= UINT32_MAX);
    void* mem = std::malloc(sizeof(block) + capacity);
    if (!mem) throw std::bad_alloc();
    auto* b = new (mem) block;
    b->release = &free_block;
    b->capacity = static_cast<std::uint32_t>(capacity);
    return b;
}

slice slice::allocate(std::size_t n) {
    block* b = block::make(n);
    b->used = static_cast<std::uint32_t>(n);
    slice s(b, b->data(), n);
    b->unref();  // the slice holds the only reference now
    return s;
}

slice slice::copy_of(bytes src) {
    slice s = allocate(src.size());
    if (!src.empty()) std::memcpy(s.data(), src.data(), src.size());
    return s;
}

block* buffer_chain::new_block(std::size_t min_capacity) {
    if (spare_ && spare_->capacity >= min_capacity) {
        block* b = std::exchange(spare_, nullptr);
        b->used = 0;
        return b;  // carries the spare's reference, like block::make's
    }
    return block::make(std::max(block_size, min_capacity));
}

void buffer_chain::compact() {
    if (head_ > 32 && head_ * 2 > v_.size()) {
        v_.erase(v_.begin(), v_.begin() + static_cast<std::ptrdiff_t>(head_));
        head_ = 0;
    }
}

void buffer_chain::append_copy(bytes b) {
    FERRY_DASSERT(pending_ == 0);
    while (!b.empty()) {
        // Room in the tail block, and the tail slice ends exactly where the block's free space
        // starts: extend the tail slice in place.
        if (tail_block_ && v_.size() > head_) {
            slice& last = v_.back();
            std::byte* end = tail_block_->data() + tail_block_->used;
            std::size_t room = tail_block_->capacity - tail_block_->used;
            if (last.get_owner() == tail_block_ && last.data() + last.size() == end && room > 0) {
                std::size_t k = std::min(room, b.size());
                std::memcpy(end, b.data(), k);
                tail_block_->used += static_cast<std::uint32_t>(k);
                last = slice(tail_block_, last.data(), last.size() + k);
                size_ += k;
                b = b.subspan(k);
                continue;
            }
        }
        block* nb = new_block(std::min(b.size(), std::size_t(1) << 20));
        std::size_t k = std::min<std::size_t>(nb->capacity, b.size());
        std::memcpy(nb->data(), b.data(), k);
        nb->used = static_cast<std::uint32_t>(k);
        v_.emplace_back(nb, nb->data(), k);
        nb->unref();  // the chain's slice holds it; tail_block_ is a weak pointer guarded below
        tail_block_ = nb;
        size_ += k;
        b = b.subspan(k);
    }
}

void buffer_chain::append(slice s) {
    if (s.empty()) return;
    if (s.size() <= copy_threshold) {
        append_copy(s.view());
        return;
    }
    size_ += s.size();
    v_.push_back(std::move(s));
    tail_block_ = nullptr;
}

void buffer_chain::append(buffer_chain&& other) {
    for (std::size_t i = other.head_; i < other.v_.size(); ++i) {
        size_ += other.v_[i].size();
        v_.push_back(std::move(other.v_[i]));
    }
    tail_block_ = nullptr;
    other.clear();
}

mut_bytes buffer_chain::prepare(std::size_t n) {
    FERRY_DASSERT(pending_ == 0);
    if (tail_block_ && v_.size() > head_) {
        slice& last = v_.back();
        std::byte* end = tail_block_->data() + tail_block_->used;
        if (last.get_owner() == tail_block_ && last.data() + last.size() == end &&
            tail_block_->capacity - tail_block_->used >= n) {
            pending_ = n;
            return {end, n};
        }
    }
    block* nb = new_block(n);
    v_.emplace_back(nb, nb->data(), 0);
    nb->unref();
    tail_block_ = nb;
    pending_ = n;
    return {nb->data(), n};
}

void buffer_chain::commit(std::size_t k) noexcept {
    FERRY_DASSERT(k <= pending_ && tail_block_ && v_.size() > head_);
    slice& last = v_.back();
    tail_block_->used += static_cast<std::uint32_t>(k);
    last = slice(tail_block_, last.data(), last.size() + k);
    size_ += k;
    pending_ = 0;
    if (last.empty()) {
        // Nothing written into a fresh block: drop the empty fragment again.
        v_.pop_back();
        tail_block_ = nullptr;
    }
}

std::size_t buffer_chain::to_iovec(iovec* iov, std::size_t max) const noexcept {
    std::size_t n = 0;
    for (std::size_t i = head_; i < v_.size() && n < max; ++i) {
        if (v_[i].empty()) continue;
        iov[n].iov_base = v_[i].data();
        iov[n].iov_len = v_[i].size();
        ++n;
    }
    return n;
}

void buffer_chain::consume(std::size_t n) noexcept {
    FERRY_DASSERT(n <= size_ && pending_ == 0);
    size_ -= n;
    while (n > 0 && head_ < v_.size()) {
        slice& f = v_[head_];
        if (f.size() <= n) {
            n -= f.size();
            if (tail_block_ && f.get_owner() == tail_block_) {
                // Our slice is the block's only holder: keep the block for the next write.
                // Only standard-size blocks are kept; a large one would pin memory per
                // idle connection.
                if (tail_block_->refs == 1 && !spare_ && head_ + 1 == v_.size() &&
                    tail_block_->capacity == block_size) {
                    spare_ = tail_block_;
                    spare_->ref();
                }
                tail_block_ = nullptr;
            }
            f = slice();
            ++head_;
        } else {
            f.trim_front(n);
            n = 0;
        }
    }
    if (head_ == v_.size()) {
        v_.clear();
        head_ = 0;
        tail_block_ = nullptr;
    } else {
        compact();
    }
}

slice buffer_chain::pop_front() noexcept {
    FERRY_DASSERT(pending_ == 0 && head_ < v_.size());
    slice s = std::move(v_[head_]);
    ++head_;
    size_ -= s.size();
    if (tail_block_ && s.get_owner() == tail_block_) tail_block_ = nullptr;
    if (head_ == v_.size()) {
        v_.clear();
        head_ = 0;
    }
    return s;
}

void buffer_chain::peek(mut_bytes out) const noexcept {
    std::size_t off = 0;
    for (std::size_t i = head_; i < v_.size() && off < out.size(); ++i) {
        std::size_t k = std::min(v_[i].size(), out.size() - off);
        std::memcpy(out.data() + off, v_[i].data(), k);
        off += k;
    }
}

std::string buffer_chain::to_string() const {
    std::string s(size_, '\0');
    peek({reinterpret_cast<std::byte*>(s.data()), s.size()});
    return s;
}

void buffer_chain::clear() noexcept {
    // The spare survives clear(): it holds no data.
    v_.clear();
    head_ = 0;
    size_ = 0;
    tail_block_ = nullptr;
    pending_ = 0;
}

}  // namespace ferry
