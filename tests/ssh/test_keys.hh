#pragma once
// Key material helpers for the SSH test programs: base64 (RFC 4648, as OpenSSH writes public
// keys), hex seeds, and authorized_keys-style files ("type base64 [comment]" per line).
// Test tooling only: inputs come from the test itself, but malformed lines are skipped rather
// than trusted.
#include <cstdint>
#include <fstream>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "proto/base/buffer.hh"

namespace ferry::ssh::test {

inline std::string base64(bytes blob) {
    static constexpr char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    out.reserve((blob.size() + 2) / 3 * 4);
    for (std::size_t i = 0; i < blob.size(); i += 3) {
        std::uint32_t v = std::to_integer<std::uint32_t>(blob[i]) << 16;
        if (i + 1 < blob.size()) v |= std::to_integer<std::uint32_t>(blob[i + 1]) << 8;
        if (i + 2 < blob.size()) v |= std::to_integer<std::uint32_t>(blob[i + 2]);
        out += tbl[(v >> 18) & 63];
        out += tbl[(v >> 12) & 63];
        out += i + 1 < blob.size() ? tbl[(v >> 6) & 63] : '=';
        out += i + 2 < blob.size() ? tbl[v & 63] : '=';
    }
    return out;
}

// Decodes standard base64; padding is optional. nullopt on any character outside the alphabet.
inline std::optional<std::vector<std::byte>> unbase64(std::string_view s) {
    std::vector<std::byte> out;
    std::uint32_t acc = 0;
    int bits = 0;
    for (char c : s) {
        int v;
        if (c >= 'A' && c <= 'Z') v = c - 'A';
        else if (c >= 'a' && c <= 'z') v = c - 'a' + 26;
        else if (c >= '0' && c <= '9') v = c - '0' + 52;
        else if (c == '+') v = 62;
        else if (c == '/') v = 63;
        else if (c == '=') break;
        else return std::nullopt;
        acc = (acc << 6) | std::uint32_t(v);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out.push_back(std::byte((acc >> bits) & 0xff));
        }
    }
    return out;
}

// Exactly 2*n hex digits -> n bytes.
inline std::optional<std::vector<std::byte>> parse_hex(std::string_view h, std::size_t n) {
    if (h.size() != 2 * n) return std::nullopt;
    auto nibble = [](char c) -> int {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        if (c >= 'A' && c <= 'F') return c - 'A' + 10;
        return -1;
    };
    std::vector<std::byte> out;
    for (std::size_t i = 0; i < h.size(); i += 2) {
        int a = nibble(h[i]), b = nibble(h[i + 1]);
        if (a < 0 || b < 0) return std::nullopt;
        out.push_back(std::byte((a << 4) | b));
    }
    return out;
}

// The key blobs of an authorized_keys-style file (no options prefix). nullopt if the file
// cannot be read; lines that do not decode are skipped.
inline std::optional<std::vector<std::vector<std::byte>>> read_authorized_keys(const std::string& path) {
    std::ifstream f(path);
    if (!f) return std::nullopt;
    std::vector<std::vector<std::byte>> keys;
    std::string line;
    while (std::getline(f, line)) {
        if (line.empty() || line[0] == '#') continue;
        auto sp = line.find(' ');
        if (sp == std::string::npos) continue;
        auto rest = std::string_view(line).substr(sp + 1);
        rest = rest.substr(0, rest.find(' '));
        if (auto blob = unbase64(rest); blob && !blob->empty()) keys.push_back(std::move(*blob));
    }
    return keys;
}

}  // namespace ferry::ssh::test
