#include "proto/ws/deflate.hh"

#include <algorithm>
#include <array>

namespace ferry::ws {

namespace {

// ---- Sec-WebSocket-Extensions grammar (RFC 6455 §9.1) -------------------------------------------
//   extension-list = 1#extension
//   extension      = extension-token *( ";" extension-param )
//   extension-param = token [ "=" (token / quoted-string) ]

bool is_tchar(char c) noexcept {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
    switch (c) {
        case '!': case '#': case '$': case '%': case '&': case '\'': case '*': case '+':
        case '-': case '.': case '^': case '_': case '`': case '|': case '~':
            return true;
        default:
            return false;
    }
}

struct ext_param {
    std::string_view name;
    std::string_view value;  // quotes removed; escapes left as they are (no valid value has one)
    bool has_value = false;
};

struct extension {
    std::string_view name;
    std::array<ext_param, 8> params{};
    std::size_t count = 0;
    bool too_many = false;  // more parameters than any offer we accept can have
};

class ext_reader {
public:
    explicit ext_reader(std::string_view s) noexcept : s_(s) {}

    // Reads the next extension. Returns false at the end or on a syntax error (then error()).
    bool next(extension& out) noexcept {
        out = extension{};
        for (;;) {
            skip_ows();
            if (pos_ == s_.size()) return false;
            if (s_[pos_] == ',') {  // empty list elements are allowed (RFC 9110 §5.6.1)
                ++pos_;
                continue;
            }
            break;
        }
        out.name = token();
        if (out.name.empty()) return bad();
        for (;;) {
            skip_ows();
            if (pos_ == s_.size()) return true;
            if (s_[pos_] == ',') {
                ++pos_;
                return true;
            }
            if (s_[pos_] != ';') return bad();
            ++pos_;
            skip_ows();
            ext_param p;
            p.name = token();
            if (p.name.empty()) return bad();
            skip_ows();
            if (pos_ < s_.size() && s_[pos_] == '=') {
                ++pos_;
                skip_ows();
                p.has_value = true;
                if (pos_ < s_.size() && s_[pos_] == '"') {
                    std::size_t start = ++pos_;
                    while (pos_ < s_.size() && s_[pos_] != '"') {
                        if (s_[pos_] == '\\') ++pos_;  // skip the escaped character
                        ++pos_;
                    }
                    if (pos_ >= s_.size()) return bad();
                    p.value = s_.substr(start, pos_ - start);
                    ++pos_;
                } else {
                    p.value = token();
                    if (p.value.empty()) return bad();
                }
            }
            if (out.count < out.params.size()) {
                out.params[out.count++] = p;
            } else {
                out.too_many = true;
            }
        }
    }
    bool error() const noexcept { return error_; }

private:
    bool bad() noexcept {
        error_ = true;
        return false;
    }
    void skip_ows() noexcept {
        while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\t')) ++pos_;
    }
    std::string_view token() noexcept {
        std::size_t start = pos_;
        while (pos_ < s_.size() && is_tchar(s_[pos_])) ++pos_;
        return s_.substr(start, pos_ - start);
    }
    std::string_view s_;
    std::size_t pos_ = 0;
    bool error_ = false;
};

bool iequal(std::string_view a, std::string_view b) noexcept {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i) {
        char x = a[i], y = b[i];
        if (x >= 'A' && x <= 'Z') x = static_cast<char>(x + 32);
        if (y >= 'A' && y <= 'Z') y = static_cast<char>(y + 32);
        if (x != y) return false;
    }
    return true;
}

// "8".."15", decimal without leading zeros (RFC 7692 §7.1.2).
std::optional<std::uint8_t> window_bits(std::string_view v) noexcept {
    if (v.size() == 1 && v[0] >= '8' && v[0] <= '9') return static_cast<std::uint8_t>(v[0] - '0');
    if (v.size() == 2 && v[0] == '1' && v[1] >= '0' && v[1] <= '5') {
        return static_cast<std::uint8_t>(10 + (v[1] - '0'));
    }
    return std::nullopt;
}

constexpr std::string_view pmd_name = "permessage-deflate";

// The parameters of one permessage-deflate element, checked for syntax (RFC 7692 §7.1: unknown
// or repeated parameters and invalid values make the element invalid).
struct pmd_element {
    bool snct = false, cnct = false;
    bool has_smwb = false, has_cmwb = false, cmwb_value = false;
    std::uint8_t smwb = 15, cmwb = 15;
};

bool parse_pmd(const extension& e, pmd_element& out) noexcept {
    if (e.too_many) return false;
    for (std::size_t i = 0; i < e.count; ++i) {
        const ext_param& p = e.params[i];
        if (iequal(p.name, "server_no_context_takeover")) {
            if (out.snct || p.has_value) return false;
            out.snct = true;
        } else if (iequal(p.name, "client_no_context_takeover")) {
            if (out.cnct || p.has_value) return false;
            out.cnct = true;
        } else if (iequal(p.name, "server_max_window_bits")) {
            if (out.has_smwb || !p.has_value) return false;
            auto w = window_bits(p.value);
            if (!w) return false;
            out.has_smwb = true;
            out.smwb = *w;
        } else if (iequal(p.name, "client_max_window_bits")) {
            if (out.has_cmwb) return false;
            out.has_cmwb = true;
            if (p.has_value) {
                auto w = window_bits(p.value);
                if (!w) return false;
                out.cmwb_value = true;
                out.cmwb = *w;
            }
        } else {
            return false;
        }
    }
    return true;
}

std::uint8_t clamp_bits(std::uint8_t b) noexcept { return std::clamp<std::uint8_t>(b, 8, 15); }

void append_bits(std::string& s, std::string_view name, std::uint8_t bits) {
    s += "; ";
    s += name;
    s += '=';
    s += std::to_string(bits);
}

}  // namespace

std::optional<deflate_params> negotiate_deflate(std::span<const std::string_view> field_values,
                                                const deflate_config& cfg, std::string& response) {
    response.clear();
    if (!cfg.enabled) return std::nullopt;
    const std::uint8_t our_smwb = clamp_bits(cfg.server_max_window_bits);
    const std::uint8_t our_cmwb = clamp_bits(cfg.client_max_window_bits);
    for (std::string_view value : field_values) {
        ext_reader rd(value);
        extension e;
        while (rd.next(e)) {
            if (!iequal(e.name, pmd_name)) continue;
            pmd_element o;
            if (!parse_pmd(e, o)) continue;  // an invalid offer is declined, the next one tried
            // The client's window can only be limited when it said it supports the parameter.
            if (!o.has_cmwb && our_cmwb < 15) continue;
            deflate_params p;
            p.server_no_context_takeover = o.snct || cfg.server_no_context_takeover;
            p.client_no_context_takeover = o.cnct || cfg.client_no_context_takeover;
            p.server_max_window_bits = o.has_smwb ? std::min(o.smwb, our_smwb) : our_smwb;
            p.client_max_window_bits = o.has_cmwb ? std::min(o.cmwb, our_cmwb) : 15;
            response.assign(pmd_name);
            if (p.server_no_context_takeover) response += "; server_no_context_takeover";
            if (p.client_no_context_takeover) response += "; client_no_context_takeover";
            if (o.has_smwb || p.server_max_window_bits < 15) {
                append_bits(response, "server_max_window_bits", p.server_max_window_bits);
            }
            if (o.has_cmwb && (o.cmwb_value || p.client_max_window_bits < 15)) {
                append_bits(response, "client_max_window_bits", p.client_max_window_bits);
            }
            return p;
        }
        // A syntax error in one field value ends that value; offers before it were considered.
    }
    return std::nullopt;
}

std::string deflate_offer(const deflate_config& cfg) {
    if (!cfg.enabled) return {};
    std::string s(pmd_name);
    const std::uint8_t cmwb = clamp_bits(cfg.client_max_window_bits);
    const std::uint8_t smwb = clamp_bits(cfg.server_max_window_bits);
    // Always offer client_max_window_bits: it lets a server limit our window instead of
    // declining the whole offer.
    if (cmwb < 15) {
        append_bits(s, "client_max_window_bits", cmwb);
    } else {
        s += "; client_max_window_bits";
    }
    if (smwb < 15) append_bits(s, "server_max_window_bits", smwb);
    if (cfg.server_no_context_takeover) s += "; server_no_context_takeover";
    if (cfg.client_no_context_takeover) s += "; client_no_context_takeover";
    return s;
}

result<std::optional<deflate_params>> accept_deflate_response(
    std::span<const std::string_view> field_values, const deflate_config& cfg) {
    std::optional<pmd_element> found;
    for (std::string_view value : field_values) {
        ext_reader rd(value);
        extension e;
        while (rd.next(e)) {
            // Anything but the one extension we offered, or a second answer, fails the
            // connection (RFC 6455 §4.1, RFC 7692 §7.1).
            if (!cfg.enabled) return fail(errc::ws_handshake, "extension not offered");
            if (!iequal(e.name, pmd_name)) return fail(errc::ws_handshake, "extension not offered");
            if (found) return fail(errc::ws_handshake, "permessage-deflate answered twice");
            pmd_element o;
            if (!parse_pmd(e, o)) return fail(errc::ws_handshake, "bad permessage-deflate parameters");
            found = o;
        }
        if (rd.error()) return fail(errc::ws_handshake, "malformed Sec-WebSocket-Extensions");
    }
    if (!found) return std::optional<deflate_params>{};
    const pmd_element& o = *found;
    const std::uint8_t cmwb = clamp_bits(cfg.client_max_window_bits);
    const std::uint8_t smwb = clamp_bits(cfg.server_max_window_bits);
    deflate_params p;
    if (cfg.server_no_context_takeover && !o.snct) {
        return fail(errc::ws_handshake, "server_no_context_takeover not granted");
    }
    p.server_no_context_takeover = o.snct;
    // We offered client_no_context_takeover means we will reset either way.
    p.client_no_context_takeover = o.cnct || cfg.client_no_context_takeover;
    if (smwb < 15 && !o.has_smwb) return fail(errc::ws_handshake, "server_max_window_bits not granted");
    if (o.has_smwb && o.smwb > smwb) return fail(errc::ws_handshake, "server window above offer");
    p.server_max_window_bits = o.has_smwb ? o.smwb : 15;
    if (o.has_cmwb) {
        if (!o.cmwb_value) return fail(errc::ws_handshake, "client_max_window_bits without value");
        if (o.cmwb > cmwb) return fail(errc::ws_handshake, "client window above offer");
        p.client_max_window_bits = o.cmwb;
    } else {
        p.client_max_window_bits = cmwb;
    }
    return std::optional<deflate_params>{p};
}

}  // namespace ferry::ws
