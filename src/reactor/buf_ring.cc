#include "reactor/buf_ring.hh"

#include <sys/mman.h>

#include <cerrno>

#include "proto/base/assert.hh"
#include "proto/base/log.hh"

namespace ferry::reactor {

buf_ring::~buf_ring() {
    // destroy() must have run on the shard thread; this only frees memory if it did not.
    if (base_) ::munmap(base_, data_bytes_);
    if (br_) ::munmap(br_, ring_bytes_);
}

status buf_ring::init(io_uring* ring, std::uint16_t group, std::uint32_t count, std::uint32_t size,
                      bool populate) noexcept {
    FERRY_DASSERT(count >= 1 && count <= 32768 && (count & (count - 1)) == 0);
    count_ = count;
    size_ = size;
    mask_ = count - 1;
    group_ = group;
    ring_bytes_ = std::size_t(count) * sizeof(io_uring_buf);
    data_bytes_ = std::size_t(count) * size;

    // The ring must be page aligned (the kernel pins its pages): mmap gives that.
    void* r = ::mmap(nullptr, ring_bytes_, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    if (r == MAP_FAILED) return fail(error::from_errno(errno, "mmap buffer ring"));
    br_ = static_cast<io_uring_buf_ring*>(r);
    // MAP_POPULATE: fault the receive memory in now rather than inside the first recvs (a
    // server's choice; a short-lived client would rather start fast).
    const int populate_flag = populate ? MAP_POPULATE : 0;
    void* d = ::mmap(nullptr, data_bytes_, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE | populate_flag, -1, 0);
    if (d == MAP_FAILED) return fail(error::from_errno(errno, "mmap receive buffers"));
    base_ = static_cast<std::byte*>(d);

    io_uring_buf_reg reg{};
    reg.ring_addr = reinterpret_cast<std::uintptr_t>(br_);
    reg.ring_entries = count;
    reg.bgid = group;
    int ret = io_uring_register_buf_ring(ring, &reg, 0);
    if (ret < 0) {
        // EINVAL on kernels before 5.19 (no provided-buffer rings).
        error e = error::from_errno(ret, "io_uring_register_buf_ring (kernel >= 5.19 needed)");
        e.code = errc::unsupported;
        return fail(e);
    }
    registered_ = true;
    io_uring_buf_ring_init(br_);
    entries_ = std::vector<entry>(count);
    for (std::uint32_t i = 0; i < count; ++i) {
        entries_[i].refs = 0;
        entries_[i].release = &release_hook;
        entries_[i].ring = this;
        entries_[i].bid = static_cast<std::uint16_t>(i);
        io_uring_buf_ring_add(br_, base_ + std::size_t(i) * size, size, static_cast<unsigned short>(i),
                              static_cast<int>(mask_), static_cast<int>(i));
    }
    io_uring_buf_ring_advance(br_, static_cast<int>(count));
    return {};
}

void buf_ring::destroy(io_uring* ring) noexcept {
    if (registered_) {
        io_uring_unregister_buf_ring(ring, group_);
        registered_ = false;
    }
    if (held_ != 0) {
        // A handler kept a ring-backed slice past shutdown. Leaking is safer than freeing memory
        // a slice still points to; the release hook must then never run (it would touch us).
        FERRY_LOG(warn, "buffer ring: slices still held at shutdown, leaking receive memory",
                  {"held", held_});
        auto* orphans = new std::vector<entry>(std::move(entries_));
        for (entry& e : *orphans) e.release = &orphan_hook;
        base_ = nullptr;  // leaked on purpose (held slices point into it)
    }
    if (br_) {
        ::munmap(br_, ring_bytes_);
        br_ = nullptr;
    }
}

slice buf_ring::take(std::uint16_t bid, std::size_t len) noexcept {
    FERRY_DASSERT(bid < count_ && len <= size_);
    entry& e = entries_[bid];
    FERRY_DASSERT(e.refs == 0);
    ++held_;
    return slice(&e, base_ + std::size_t(bid) * size_, len);  // refs 0 -> 1
}

void buf_ring::recycle(std::uint16_t bid) noexcept {
    io_uring_buf_ring_add(br_, base_ + std::size_t(bid) * size_, size_, bid, static_cast<int>(mask_),
                          static_cast<int>(pending_));
    ++pending_;
}

void buf_ring::release_hook(owner* o) noexcept {
    auto* e = static_cast<entry*>(o);
    buf_ring* r = e->ring;
    --r->held_;
    r->recycle(e->bid);
}

void buf_ring::orphan_hook(owner*) noexcept {}

bool buf_ring::is_ring_owner(const owner* o) const noexcept {
    return o && o->release == &release_hook;
}

}  // namespace ferry::reactor
