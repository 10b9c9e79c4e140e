#pragma once
// Helpers shared by the SSH tests: hex, and a deterministic RNG (test-only: the library has no
// deterministic generator, see src/proto/ssh/crypto.hh).
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "proto/base/buffer.hh"
#include "proto/ssh/crypto.hh"

namespace ferry::ssh::test {

inline std::vector<std::byte> unhex(std::string_view h) {
    std::vector<std::byte> out;
    auto v = [](char c) -> int {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        return c - 'A' + 10;
    };
    for (std::size_t i = 0; i + 1 < h.size(); i += 2) {
        out.push_back(std::byte((v(h[i]) << 4) | v(h[i + 1])));
    }
    return out;
}

inline std::string hex(bytes b) {
    static const char* d = "0123456789abcdef";
    std::string s;
    for (std::byte x : b) {
        s += d[std::to_integer<unsigned>(x) >> 4];
        s += d[std::to_integer<unsigned>(x) & 15];
    }
    return s;
}

// xorshift-based stream; reproducible per seed.
class counting_rng final : public rng {
public:
    explicit counting_rng(std::uint64_t seed = 1) : s_(seed * 0x9E3779B97F4A7C15ull + 1) {}
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

}  // namespace ferry::ssh::test
