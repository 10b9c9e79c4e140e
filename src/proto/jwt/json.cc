#include "proto/jwt/json.hh"

#include <charconv>
#include <cmath>
#include <limits>

namespace ferry::jwt::json {

namespace {

// Length of the UTF-8 sequence starting at p[0] (p has `avail` bytes), or 0 if it is invalid.
// Follows the well-formed byte sequences table of Unicode 15 §3.9 (table 3-7).
std::size_t utf8_seq(const unsigned char* p, std::size_t avail) noexcept {
    unsigned c = p[0];
    if (c < 0x80) return 1;
    auto cont = [&](std::size_t k, unsigned lo, unsigned hi) {
        return k < avail && p[k] >= lo && p[k] <= hi;
    };
    if (c >= 0xc2 && c <= 0xdf) return cont(1, 0x80, 0xbf) ? 2 : 0;
    if (c == 0xe0) return cont(1, 0xa0, 0xbf) && cont(2, 0x80, 0xbf) ? 3 : 0;
    if ((c >= 0xe1 && c <= 0xec) || c == 0xee || c == 0xef)
        return cont(1, 0x80, 0xbf) && cont(2, 0x80, 0xbf) ? 3 : 0;
    if (c == 0xed) return cont(1, 0x80, 0x9f) && cont(2, 0x80, 0xbf) ? 3 : 0;  // no surrogates
    if (c == 0xf0) return cont(1, 0x90, 0xbf) && cont(2, 0x80, 0xbf) && cont(3, 0x80, 0xbf) ? 4 : 0;
    if (c >= 0xf1 && c <= 0xf3)
        return cont(1, 0x80, 0xbf) && cont(2, 0x80, 0xbf) && cont(3, 0x80, 0xbf) ? 4 : 0;
    if (c == 0xf4) return cont(1, 0x80, 0x8f) && cont(2, 0x80, 0xbf) && cont(3, 0x80, 0xbf) ? 4 : 0;
    return 0;
}

void put_utf8(std::string& out, std::uint32_t cp) {
    if (cp < 0x80) {
        out.push_back(char(cp));
    } else if (cp < 0x800) {
        out.push_back(char(0xc0 | (cp >> 6)));
        out.push_back(char(0x80 | (cp & 0x3f)));
    } else if (cp < 0x10000) {
        out.push_back(char(0xe0 | (cp >> 12)));
        out.push_back(char(0x80 | ((cp >> 6) & 0x3f)));
        out.push_back(char(0x80 | (cp & 0x3f)));
    } else {
        out.push_back(char(0xf0 | (cp >> 18)));
        out.push_back(char(0x80 | ((cp >> 12) & 0x3f)));
        out.push_back(char(0x80 | ((cp >> 6) & 0x3f)));
        out.push_back(char(0x80 | (cp & 0x3f)));
    }
}

int hexval(unsigned char c) noexcept {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

}  // namespace

struct parser {
    std::string_view t;
    std::size_t pos = 0;
    const limits& lim;
    document& d;

    failure bad(const char* what) const noexcept { return fail(errc::malformed, what, std::uint32_t(pos)); }
    failure over(const char* what) const noexcept { return fail(errc::limit_exceeded, what, std::uint32_t(pos)); }

    void ws() noexcept {
        while (pos < t.size() && (t[pos] == ' ' || t[pos] == '\t' || t[pos] == '\n' || t[pos] == '\r')) ++pos;
    }

    // Reads a string literal at t[pos] == '"' into the arena; returns (offset, length).
    status string_lit(std::uint32_t& off, std::uint32_t& len) {
        ++pos;  // opening quote
        off = std::uint32_t(d.arena_.size());
        const auto* p = reinterpret_cast<const unsigned char*>(t.data());
        for (;;) {
            if (pos >= t.size()) return bad("unterminated string");
            unsigned char c = p[pos];
            if (c == '"') {
                ++pos;
                break;
            }
            if (c < 0x20) return bad("control character in string");
            if (c == '\\') {
                if (pos + 1 >= t.size()) return bad("unterminated escape");
                unsigned char e = p[pos + 1];
                pos += 2;
                switch (e) {
                case '"': d.arena_.push_back('"'); break;
                case '\\': d.arena_.push_back('\\'); break;
                case '/': d.arena_.push_back('/'); break;
                case 'b': d.arena_.push_back('\b'); break;
                case 'f': d.arena_.push_back('\f'); break;
                case 'n': d.arena_.push_back('\n'); break;
                case 'r': d.arena_.push_back('\r'); break;
                case 't': d.arena_.push_back('\t'); break;
                case 'u': {
                    std::uint32_t cp = 0;
                    FERRY_TRY(u, hex4(cp));
                    if (cp >= 0xd800 && cp <= 0xdbff) {
                        // A high surrogate must be followed by an escaped low surrogate.
                        if (pos + 1 >= t.size() || t[pos] != '\\' || t[pos + 1] != 'u')
                            return bad("lone high surrogate escape");
                        pos += 2;
                        std::uint32_t lo = 0;
                        FERRY_TRY(u2, hex4(lo));
                        if (lo < 0xdc00 || lo > 0xdfff) return bad("high surrogate without a low one");
                        cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                    } else if (cp >= 0xdc00 && cp <= 0xdfff) {
                        return bad("lone low surrogate escape");
                    } else if (cp == 0) {
                        return bad("\\u0000 is not accepted");
                    }
                    put_utf8(d.arena_, cp);
                    break;
                }
                default: pos -= 1; return bad("unknown escape");
                }
            } else if (c < 0x80) {
                d.arena_.push_back(char(c));
                ++pos;
            } else {
                std::size_t n = utf8_seq(p + pos, t.size() - pos);
                if (n == 0) return bad("invalid UTF-8 in string");
                d.arena_.append(t.data() + pos, n);
                pos += n;
            }
            if (d.arena_.size() - off > lim.max_string) return over("string longer than the limit");
        }
        len = std::uint32_t(d.arena_.size() - off);
        return {};
    }

    status hex4(std::uint32_t& cp) {
        if (pos + 4 > t.size()) return bad("short \\u escape");
        cp = 0;
        for (int k = 0; k < 4; ++k) {
            int h = hexval(static_cast<unsigned char>(t[pos + k]));
            if (h < 0) return bad("bad hex digit in \\u escape");
            cp = (cp << 4) | unsigned(h);
        }
        pos += 4;
        return {};
    }

    status number(node& n) {
        const std::size_t start = pos;
        bool simple = true;
        if (pos < t.size() && t[pos] == '-') ++pos;
        if (pos >= t.size()) return bad("truncated number");
        if (t[pos] == '0') {
            ++pos;
        } else if (t[pos] >= '1' && t[pos] <= '9') {
            while (pos < t.size() && t[pos] >= '0' && t[pos] <= '9') ++pos;
        } else {
            return bad("bad number");
        }
        if (pos < t.size() && t[pos] == '.') {
            simple = false;
            ++pos;
            std::size_t ds = pos;
            while (pos < t.size() && t[pos] >= '0' && t[pos] <= '9') ++pos;
            if (pos == ds) return bad("no digits after the decimal point");
        }
        if (pos < t.size() && (t[pos] == 'e' || t[pos] == 'E')) {
            simple = false;
            ++pos;
            if (pos < t.size() && (t[pos] == '+' || t[pos] == '-')) ++pos;
            std::size_t ds = pos;
            while (pos < t.size() && t[pos] >= '0' && t[pos] <= '9') ++pos;
            if (pos == ds) return bad("no digits in the exponent");
        }
        n.k = kind::number;
        const char* b = t.data() + start;
        const char* e = t.data() + pos;
        if (simple) {
            std::int64_t v = 0;
            auto r = std::from_chars(b, e, v);
            if (r.ec == std::errc() && r.ptr == e) {
                n.integral = true;
                n.i = v;
                n.num = double(v);
                return {};
            }
        }
        double v = 0;
        auto r = std::from_chars(b, e, v);
        // Out-of-range magnitudes are grammatical JSON; they only fail the claims that read them.
        n.num = (r.ec == std::errc() && r.ptr == e) ? v : std::numeric_limits<double>::quiet_NaN();
        return {};
    }

    status literal(std::string_view word) {
        if (t.substr(pos, word.size()) != word) return bad("bad literal");
        pos += word.size();
        return {};
    }

    // Parses one value at t[pos]; its node index goes to `idx`.
    status value(std::uint32_t depth, std::uint32_t& idx) {
        ws();
        if (pos >= t.size()) return bad("value expected");
        if (d.nodes_.size() >= lim.max_values) return over("too many JSON values");
        idx = std::uint32_t(d.nodes_.size());
        d.nodes_.emplace_back();
        const char c = t[pos];
        switch (c) {
        case '{': return object(depth + 1, idx);
        case '[': return array(depth + 1, idx);
        case '"': {
            std::uint32_t off = 0, len = 0;
            FERRY_TRY(s, string_lit(off, len));
            node& n = d.nodes_[idx];
            n.k = kind::string;
            n.str_off = off;
            n.str_len = len;
            return {};
        }
        case 't':
            d.nodes_[idx].k = kind::boolean;
            d.nodes_[idx].b = true;
            return literal("true");
        case 'f':
            d.nodes_[idx].k = kind::boolean;
            return literal("false");
        case 'n': return literal("null");
        default: {
            if (c == '-' || (c >= '0' && c <= '9')) {
                node n;
                FERRY_TRY(s, number(n));
                d.nodes_[idx] = n;
                return {};
            }
            return bad("unexpected character");
        }
        }
    }

    status object(std::uint32_t depth, std::uint32_t idx) {
        if (depth > lim.max_depth) return over("JSON nesting deeper than the limit");
        d.nodes_[idx].k = kind::object;
        ++pos;  // '{'
        ws();
        if (pos < t.size() && t[pos] == '}') {
            ++pos;
            return {};
        }
        std::uint32_t prev = npos, count = 0;
        for (;;) {
            ws();
            if (pos >= t.size() || t[pos] != '"') return bad("member name expected");
            if (count >= lim.max_members) return over("too many members in an object");
            std::uint32_t koff = 0, klen = 0;
            FERRY_TRY(k, string_lit(koff, klen));
            std::string_view key(d.arena_.data() + koff, klen);
            for (std::uint32_t j = d.nodes_[idx].first; j != npos; j = d.nodes_[j].next) {
                if (d.key(d.nodes_[j]) == key) return bad("duplicate member name");
            }
            ws();
            if (pos >= t.size() || t[pos] != ':') return bad("':' expected");
            ++pos;
            std::uint32_t child = 0;
            FERRY_TRY(v, value(depth, child));
            d.nodes_[child].key_off = koff;
            d.nodes_[child].key_len = klen;
            if (prev == npos) d.nodes_[idx].first = child;
            else d.nodes_[prev].next = child;
            prev = child;
            d.nodes_[idx].count = ++count;
            ws();
            if (pos >= t.size()) return bad("unterminated object");
            if (t[pos] == ',') {
                ++pos;
                continue;
            }
            if (t[pos] == '}') {
                ++pos;
                return {};
            }
            return bad("',' or '}' expected");
        }
    }

    status array(std::uint32_t depth, std::uint32_t idx) {
        if (depth > lim.max_depth) return over("JSON nesting deeper than the limit");
        d.nodes_[idx].k = kind::array;
        ++pos;  // '['
        ws();
        if (pos < t.size() && t[pos] == ']') {
            ++pos;
            return {};
        }
        std::uint32_t prev = npos, count = 0;
        for (;;) {
            if (count >= lim.max_members) return over("too many elements in an array");
            std::uint32_t child = 0;
            FERRY_TRY(v, value(depth, child));
            if (prev == npos) d.nodes_[idx].first = child;
            else d.nodes_[prev].next = child;
            prev = child;
            d.nodes_[idx].count = ++count;
            ws();
            if (pos >= t.size()) return bad("unterminated array");
            if (t[pos] == ',') {
                ++pos;
                continue;
            }
            if (t[pos] == ']') {
                ++pos;
                return {};
            }
            return bad("',' or ']' expected");
        }
    }
};

const node* document::find(const node& obj, std::string_view name) const noexcept {
    for (std::uint32_t j = obj.first; j != npos; j = nodes_[j].next) {
        if (key(nodes_[j]) == name) return &nodes_[j];
    }
    return nullptr;
}

status parse(std::string_view text, const limits& lim, document& out) {
    out.nodes_.clear();
    out.arena_.clear();
    // The arena never holds more than the input (escapes only shrink), so one reservation
    // keeps string views stable while parsing and avoids regrowth.
    out.arena_.reserve(text.size());
    parser p{text, 0, lim, out};
    std::uint32_t root = 0;
    FERRY_TRY(v, p.value(0, root));
    p.ws();
    if (p.pos != text.size()) return p.bad("trailing bytes after the JSON value");
    return {};
}

bool valid_utf8(std::string_view s) noexcept {
    const auto* p = reinterpret_cast<const unsigned char*>(s.data());
    std::size_t i = 0;
    while (i < s.size()) {
        std::size_t n = utf8_seq(p + i, s.size() - i);
        if (n == 0) return false;
        i += n;
    }
    return true;
}

void append_string(std::string& out, std::string_view s) {
    static constexpr char kHex[] = "0123456789abcdef";
    out.push_back('"');
    for (unsigned char c : s) {
        switch (c) {
        case '"': out += "\\\""; break;
        case '\\': out += "\\\\"; break;
        case '\n': out += "\\n"; break;
        case '\r': out += "\\r"; break;
        case '\t': out += "\\t"; break;
        default:
            if (c < 0x20 || c == 0x7f) {
                out += "\\u00";
                out.push_back(kHex[c >> 4]);
                out.push_back(kHex[c & 15]);
            } else {
                out.push_back(char(c));
            }
        }
    }
    out.push_back('"');
}

}  // namespace ferry::jwt::json
