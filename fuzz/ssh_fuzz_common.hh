#pragma once
// Pieces every SSH fuzz target shares (fuzz/ only; the library has no such generator):
//   fuzz_rng  a deterministic generator, so that a crash replays exactly;
//   chunks    reads the input as length-prefixed chunks (STYLE 12): the first byte of each
//             chunk is its length (0xff: the next two bytes, big-endian), so every split point
//             of the streaming parsers is exercised.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "proto/ssh/crypto.hh"

namespace ssh_fuzz_common {

using ferry::mut_bytes;
using ferry::status;

class fuzz_rng final : public ferry::ssh::rng {
public:
    explicit fuzz_rng(std::uint64_t s) : s_(s * 0x9E3779B97F4A7C15ull + 1) {}
    status fill(mut_bytes out) noexcept override {
        for (auto& b : out) {
            s_ ^= s_ << 13;
            s_ ^= s_ >> 7;
            s_ ^= s_ << 17;
            b = std::byte(s_ >> 24);
        }
        return {};
    }

private:
    std::uint64_t s_;
};

class chunks {
public:
    chunks(const std::uint8_t* p, std::size_t n) : p_(p), n_(n) {}
    // Next chunk (empty at the end). A length past the end takes the rest.
    std::vector<std::byte> next() {
        if (n_ == 0) return {};
        std::size_t k = p_[0];
        ++p_;
        --n_;
        if (k == 0xff && n_ >= 2) {
            k = (std::size_t(p_[0]) << 8) | p_[1];
            p_ += 2;
            n_ -= 2;
        }
        if (k > n_) k = n_;
        std::vector<std::byte> c(reinterpret_cast<const std::byte*>(p_),
                                 reinterpret_cast<const std::byte*>(p_) + k);
        p_ += k;
        n_ -= k;
        return c;
    }
    bool done() const { return n_ == 0; }

private:
    const std::uint8_t* p_;
    std::size_t n_;
};

}  // namespace ssh_fuzz_common
