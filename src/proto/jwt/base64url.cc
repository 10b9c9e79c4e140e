#include "proto/jwt/base64url.hh"

#include <array>
#include <cstdint>

namespace ferry::jwt::base64url {

namespace {

constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
constexpr std::uint8_t kBad = 0xff;

constexpr std::array<std::uint8_t, 256> make_table() {
    std::array<std::uint8_t, 256> t{};
    for (auto& v : t) v = kBad;
    for (std::uint8_t i = 0; i < 64; ++i) t[static_cast<unsigned char>(kAlphabet[i])] = i;
    return t;
}
constexpr auto kTable = make_table();

}  // namespace

std::size_t decoded_size(std::size_t text_len) noexcept {
    if (text_len % 4 == 1) return SIZE_MAX;
    return (text_len / 4) * 3 + (text_len % 4 ? text_len % 4 - 1 : 0);
}

result<std::size_t> decode(std::string_view text, mut_bytes out) noexcept {
    const std::size_t n = text.size();
    const std::size_t want = decoded_size(n);
    if (want == SIZE_MAX) return fail(errc::malformed, "base64url length is 1 mod 4", std::uint32_t(n));
    if (out.size() < want) return fail(errc::invalid_argument, "base64url output buffer too small");
    const auto* in = reinterpret_cast<const unsigned char*>(text.data());
    std::size_t i = 0, o = 0;
    // Whole quanta: 4 characters -> 3 bytes. A bad character anywhere sets a high bit in `acc`.
    for (; i + 4 <= n; i += 4) {
        std::uint8_t a = kTable[in[i]], b = kTable[in[i + 1]], c = kTable[in[i + 2]],
                     d = kTable[in[i + 3]];
        if ((a | b | c | d) & 0x80) {
            std::size_t at = i;
            while (kTable[in[at]] != kBad) ++at;
            if (in[at] == '=') return fail(errc::malformed, "base64url padding is not allowed", std::uint32_t(at));
            return fail(errc::malformed, "byte outside the base64url alphabet", std::uint32_t(at));
        }
        std::uint32_t v = (std::uint32_t(a) << 18) | (std::uint32_t(b) << 12) | (std::uint32_t(c) << 6) | d;
        out[o++] = std::byte(v >> 16);
        out[o++] = std::byte(v >> 8);
        out[o++] = std::byte(v);
    }
    const std::size_t rest = n - i;  // 0, 2 or 3
    if (rest) {
        std::uint32_t v = 0;
        for (std::size_t k = 0; k < rest; ++k) {
            std::uint8_t x = kTable[in[i + k]];
            if (x == kBad) {
                if (in[i + k] == '=') return fail(errc::malformed, "base64url padding is not allowed", std::uint32_t(i + k));
                return fail(errc::malformed, "byte outside the base64url alphabet", std::uint32_t(i + k));
            }
            v = (v << 6) | x;
        }
        if (rest == 2) {
            // 12 bits carry 8: the low 4 must be zero.
            if (v & 0x0f) return fail(errc::malformed, "non-canonical base64url tail", std::uint32_t(n - 1));
            out[o++] = std::byte(v >> 4);
        } else {
            // 18 bits carry 16: the low 2 must be zero.
            if (v & 0x03) return fail(errc::malformed, "non-canonical base64url tail", std::uint32_t(n - 1));
            out[o++] = std::byte(v >> 10);
            out[o++] = std::byte(v >> 2);
        }
    }
    return o;
}

result<std::string> decode(std::string_view text) {
    std::size_t want = decoded_size(text.size());
    if (want == SIZE_MAX) return fail(errc::malformed, "base64url length is 1 mod 4", std::uint32_t(text.size()));
    std::string s(want, '\0');
    auto r = decode(text, mut_bytes(reinterpret_cast<std::byte*>(s.data()), s.size()));
    if (!r) return fail(r.err());
    return s;
}

void encode(bytes in, std::string& out) {
    const auto* p = reinterpret_cast<const unsigned char*>(in.data());
    const std::size_t n = in.size();
    out.reserve(out.size() + encoded_size(n));
    std::size_t i = 0;
    for (; i + 3 <= n; i += 3) {
        std::uint32_t v = (std::uint32_t(p[i]) << 16) | (std::uint32_t(p[i + 1]) << 8) | p[i + 2];
        out.push_back(kAlphabet[v >> 18]);
        out.push_back(kAlphabet[(v >> 12) & 63]);
        out.push_back(kAlphabet[(v >> 6) & 63]);
        out.push_back(kAlphabet[v & 63]);
    }
    if (n - i == 1) {
        std::uint32_t v = std::uint32_t(p[i]) << 16;
        out.push_back(kAlphabet[v >> 18]);
        out.push_back(kAlphabet[(v >> 12) & 63]);
    } else if (n - i == 2) {
        std::uint32_t v = (std::uint32_t(p[i]) << 16) | (std::uint32_t(p[i + 1]) << 8);
        out.push_back(kAlphabet[v >> 18]);
        out.push_back(kAlphabet[(v >> 12) & 63]);
        out.push_back(kAlphabet[(v >> 6) & 63]);
    }
}

}  // namespace ferry::jwt::base64url
