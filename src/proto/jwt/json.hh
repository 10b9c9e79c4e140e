#pragma once
// A small strict JSON reader (RFC 8259) for JOSE headers, JWT claim sets and JWK sets, and the
// string escaper the token minter writes with.
//
// Why our own and not a general library: the inputs are tiny (a few hundred bytes to a few KiB),
// hostile, and we want exactly one reading of each: duplicate member names are rejected (RFC 7515
// §4 and RFC 7519 §4 allow a parser to reject them; accepting "last wins" would let two readers
// disagree about a token's `alg` or `sub`), nesting depth, value count, members per container and
// string length are bounded before anything grows, text must be valid UTF-8, and "\u0000" is
// refused (a claim must never carry a NUL into a C string or a log line).
//
// The document is flat: one vector of nodes linked by index, one string arena holding every
// unescaped key and string. Parsing allocates at most those two buffers, and a document can be
// reused to keep their capacity. Recursion depth is bounded by limits::max_depth.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "proto/base/result.hh"

namespace ferry::jwt::json {

struct limits {
    std::uint32_t max_depth = 8;       // nested arrays/objects, the root counting as 1
    std::uint32_t max_values = 512;    // every value in the document, containers included
    std::uint32_t max_members = 128;   // members of one object or elements of one array
    std::uint32_t max_string = 4096;   // bytes of one unescaped string or key
};

enum class kind : std::uint8_t { null, boolean, number, string, array, object };

inline constexpr std::uint32_t npos = 0xffffffffu;

struct node {
    kind k = kind::null;
    bool b = false;             // boolean value
    bool integral = false;      // number written without fraction or exponent and fits int64
    std::uint32_t key_off = 0;  // member name in the arena (members of an object only)
    std::uint32_t key_len = 0;
    std::uint32_t str_off = 0;  // string value in the arena
    std::uint32_t str_len = 0;
    std::uint32_t first = npos; // first child (array/object)
    std::uint32_t count = 0;    // number of children
    std::uint32_t next = npos;  // next sibling
    std::int64_t i = 0;         // number value when `integral`
    double num = 0;             // number value (NaN when out of double's range)
};

class document {
public:
    const node& root() const noexcept { return nodes_[0]; }
    const node& at(std::uint32_t idx) const noexcept { return nodes_[idx]; }
    std::string_view key(const node& n) const noexcept { return {arena_.data() + n.key_off, n.key_len}; }
    std::string_view str(const node& n) const noexcept { return {arena_.data() + n.str_off, n.str_len}; }
    // The member `name` of object `obj`, or nullptr. Precondition: obj.k == kind::object.
    const node* find(const node& obj, std::string_view name) const noexcept;
    std::size_t size() const noexcept { return nodes_.size(); }

    // Iteration over children: for (auto i = n.first; i != npos; i = doc.at(i).next) ...

private:
    friend struct parser;
    friend status parse(std::string_view, const limits&, document&);
    std::vector<node> nodes_;
    std::string arena_;
};

// Parses `text` (one JSON value, surrounded by optional whitespace) into `out`, replacing its
// contents. Errors: errc::malformed (grammar, UTF-8, duplicate member) or errc::limit_exceeded,
// with `offset` into `text`.
status parse(std::string_view text, const limits& lim, document& out);
inline result<document> parse(std::string_view text, const limits& lim = {}) {
    document d;
    auto s = parse(text, lim, d);
    if (!s) return fail(s.err());
    return d;
}

// True if `s` is well-formed UTF-8 (no overlongs, no surrogates, nothing above U+10FFFF).
bool valid_utf8(std::string_view s) noexcept;

// Appends `s` as a JSON string literal (quotes included). Precondition: valid_utf8(s).
void append_string(std::string& out, std::string_view s);

}  // namespace ferry::jwt::json
