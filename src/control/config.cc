// Settings: one table per program, walked by every source (see config.hh).
//
// Each key is an `option<S>`: its names in the three sources, its kind and range, and three
// functions generated from the member it writes — set from text (flag, environment), set from a
// TOML node, print as JSON. The parse engine below knows nothing about particular keys; the few
// rules that tie keys together (TLS files come in pairs, pong timeout above the ping interval,
// one token source, profile defaults) run after all sources, in validate_*().
#include "control/config.hh"

#include <arpa/inet.h>
#include <toml++/toml.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <optional>
#include <sstream>

#include "proto/base/log.hh"
#include "reactor/address.hh"
#include "reactor/ip_prefix.hh"

#ifndef FERRY_MAX_SHARDS
#define FERRY_MAX_SHARDS 64
#endif

namespace ferry::control {

namespace {

constexpr std::size_t max_config_bytes = 1 << 20;  // a config file is small; refuse surprises
constexpr std::size_t max_errors = 20;             // report this many problems, then stop
constexpr std::size_t max_list_items = 256;

// ---- small text helpers -------------------------------------------------------------------------

std::string lower(std::string_view s) {
    std::string r(s);
    for (char& c : r) c = char(std::tolower(static_cast<unsigned char>(c)));
    return r;
}

std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
}

void json_string(std::string_view s, std::string& out) {
    out += '"';
    for (unsigned char c : s) {
        switch (c) {
            case '"':
                out += "\\\"";
                break;
            case '\\':
                out += "\\\\";
                break;
            case '\n':
                out += "\\n";
                break;
            case '\r':
                out += "\\r";
                break;
            case '\t':
                out += "\\t";
                break;
            default:
                if (c < 0x20 || c == 0x7f) {
                    char buf[8];
                    std::snprintf(buf, sizeof buf, "\\u%04x", c);
                    out += buf;
                } else {
                    out += char(c);
                }
        }
    }
    out += '"';
}

// A value quoted for an error message: bounded, control characters escaped.
std::string quoted(std::string_view v) {
    std::string r;
    bool cut = v.size() > 80;
    json_string(cut ? v.substr(0, 80) : v, r);
    if (cut) r.insert(r.size() - 1, "...");
    return r;
}

std::size_t edit_distance(std::string_view a, std::string_view b) {
    std::vector<std::size_t> prev(b.size() + 1), cur(b.size() + 1);
    for (std::size_t j = 0; j <= b.size(); ++j) prev[j] = j;
    for (std::size_t i = 1; i <= a.size(); ++i) {
        cur[0] = i;
        for (std::size_t j = 1; j <= b.size(); ++j) {
            std::size_t sub = prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
            cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, sub});
        }
        std::swap(prev, cur);
    }
    return prev[b.size()];
}

// ---- validators of forms (return "" when fine, else what was expected) -------------------------

bool is_ip_literal(std::string_view h) {
    std::string s(h);
    unsigned char buf[16];
    return inet_pton(AF_INET, s.c_str(), buf) == 1 || inet_pton(AF_INET6, s.c_str(), buf) == 1;
}

// A DNS host name: dot-separated labels of [A-Za-z0-9-] (1..63, no '-' at either end), <= 253.
bool valid_hostname(std::string_view h) {
    if (h.empty() || h.size() > 253) return false;
    if (h.back() == '.') h.remove_suffix(1);
    std::size_t start = 0;
    while (start <= h.size()) {
        std::size_t dot = h.find('.', start);
        std::string_view label =
            h.substr(start, dot == std::string_view::npos ? h.npos : dot - start);
        if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-')
            return false;
        for (char c : label)
            if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-') return false;
        if (dot == std::string_view::npos) break;
        start = dot + 1;
    }
    return true;
}

std::optional<std::uint16_t> parse_port(std::string_view p) {
    if (p.empty() || p.size() > 5) return std::nullopt;
    unsigned v = 0;
    for (char c : p) {
        if (c < '0' || c > '9') return std::nullopt;
        v = v * 10 + unsigned(c - '0');
    }
    if (v == 0 || v > 65535) return std::nullopt;
    return std::uint16_t(v);
}

// "HOST:PORT" or "[V6]:PORT" with a host name or IP literal; host returned without brackets.
bool split_host_port(std::string_view s, std::string& host, std::uint16_t& port) {
    std::string_view h, p;
    if (!s.empty() && s.front() == '[') {
        auto close = s.find(']');
        if (close == s.npos || close + 1 >= s.size() || s[close + 1] != ':') return false;
        h = s.substr(1, close - 1);
        p = s.substr(close + 2);
        std::string hs(h);
        unsigned char buf[16];
        if (inet_pton(AF_INET6, hs.c_str(), buf) != 1) return false;
    } else {
        auto colon = s.rfind(':');
        if (colon == s.npos) return false;
        h = s.substr(0, colon);
        p = s.substr(colon + 1);
        if (h.find(':') != h.npos) return false;  // IPv6 needs brackets
        if (!is_ip_literal(h) && !valid_hostname(h)) return false;
    }
    auto pv = parse_port(p);
    if (!pv || h.empty()) return false;
    host = std::string(h);
    port = *pv;
    return true;
}

std::string check_listen(std::string_view v) {
    if (reactor::address::parse(v)) return "";
    return "expected HOST:PORT with a numeric host (0.0.0.0:8443, [::]:8443, 127.0.0.1:0)";
}
std::string check_listen_or_empty(std::string_view v) {
    return v.empty() ? "" : check_listen(v);
}

std::string check_nonempty(std::string_view v) {
    return v.empty() ? "expected a non-empty value" : "";
}
std::string check_any(std::string_view) {
    return "";
}
std::string check_path(std::string_view v) {
    if (v.find('\0') != v.npos) return "expected a file path";
    return "";
}
std::string check_log_level(std::string_view v) {
    log::level l;
    return log::parse_level(v, l) ? "" : "expected error|warn|info|debug|trace";
}
std::string check_tls_version(std::string_view v) {
    return v == "1.2" || v == "1.3" ? "" : "expected 1.2 or 1.3";
}
std::string check_alg(std::string_view v) {
    return v == "HS256" || v == "RS256" || v == "ES256" || v == "EdDSA"
               ? ""
               : "expected HS256, RS256, ES256 or EdDSA (case-sensitive)";
}
std::string check_tunnel_name(std::string_view v) {
    return valid_tunnel_name(v)
               ? ""
               : "expected a tunnel name: 1-63 of [a-z0-9-], not starting or ending with '-'";
}
std::string check_domain(std::string_view v) {
    if (v.empty()) return "";
    if (v.front() == '.' || v.back() == '.' || !valid_hostname(v) || lower(v) != v)
        return "expected a lower-case DNS name without leading or trailing dot "
               "(tunnels.example.com)";
    return "";
}
std::string check_url(std::string_view v) {
    if (v.empty()) return "";
    auto l = lower(v);
    std::string_view rest;
    if (l.starts_with("https://"))
        rest = std::string_view(v).substr(8);
    else if (l.starts_with("http://"))
        rest = std::string_view(v).substr(7);
    else
        return "expected an https:// URL";
    if (rest.empty() || rest.front() == '/') return "expected an https:// URL with a host";
    return "";
}
std::string check_cidr(std::string_view v) {
    auto p = reactor::ip_prefix::parse(v);
    if (p) return "";
    return std::string("expected an IP network like 10.0.0.0/8 or 2001:db8::/32 (") + p.err().detail + ")";
}
std::string check_scope(std::string_view v) {
    // RFC 6749 3.3 scope-token: 1*( %x21 / %x23-5B / %x5D-7E )
    if (v.empty()) return "expected a scope token";
    for (unsigned char c : v)
        if (c < 0x21 || c > 0x7e || c == '"' || c == '\\')
            return "expected one scope token (printable ASCII, no space, quote or backslash)";
    return "";
}
std::string check_relay_url(std::string_view v) {
    std::string why;
    if (v.empty()) return "";
    if (parse_relay_url(v, why)) return "";
    return "expected ws://HOST[:PORT][/PATH] or wss://HOST[:PORT][/PATH] (" + why + ")";
}
std::string check_token(std::string_view v) {
    // Never echo it: the engine does not print secret values either.
    for (unsigned char c : v)
        if (c <= 0x20 || c >= 0x7f) return "expected a JWT (no whitespace or control characters)";
    return "";
}
// ---- numbers with units -------------------------------------------------------------------------

enum class unit : std::uint8_t { none, ms, s, bytes };

// Parses decimal digits with an optional unit suffix into the key's unit. nullopt with `why`.
std::optional<std::uint64_t> parse_number(std::string_view t, unit u, std::string& why) {
    std::size_t i = 0;
    std::uint64_t v = 0;
    while (i < t.size() && t[i] >= '0' && t[i] <= '9') {
        unsigned d = unsigned(t[i] - '0');
        if (v > (std::numeric_limits<std::uint64_t>::max() - d) / 10) {
            why = "number too large";
            return std::nullopt;
        }
        v = v * 10 + d;
        ++i;
    }
    if (i == 0) {
        why = u == unit::ms || u == unit::s ? "expected a duration (30000, 30s, 500ms, 2m, 1h)"
              : u == unit::bytes            ? "expected a size (1048576, 1MiB, 16KiB)"
                                            : "expected a non-negative integer";
        return std::nullopt;
    }
    std::string_view suf = t.substr(i);
    auto scaled = [&](std::uint64_t num, std::uint64_t den) -> std::optional<std::uint64_t> {
        if (num && v > std::numeric_limits<std::uint64_t>::max() / num) {
            why = "number too large";
            return std::nullopt;
        }
        std::uint64_t x = v * num;
        if (x % den) {
            why = "not a whole number of the key's unit";
            return std::nullopt;
        }
        return x / den;
    };
    if (suf.empty()) return v;
    if (u == unit::ms || u == unit::s) {
        std::uint64_t ms;
        if (suf == "ms")
            ms = 1;
        else if (suf == "s")
            ms = 1000;
        else if (suf == "m")
            ms = 60'000;
        else if (suf == "h")
            ms = 3'600'000;
        else if (suf == "d")
            ms = 86'400'000;
        else {
            why = "unknown duration unit (ms, s, m, h, d)";
            return std::nullopt;
        }
        return u == unit::ms ? scaled(ms, 1) : scaled(ms, 1000);
    }
    if (u == unit::bytes) {
        if (suf == "B") return v;
        if (suf == "KiB") return scaled(1ull << 10, 1);
        if (suf == "MiB") return scaled(1ull << 20, 1);
        if (suf == "GiB") return scaled(1ull << 30, 1);
        why = "unknown size unit (B, KiB, MiB, GiB)";
        return std::nullopt;
    }
    why = "expected a non-negative integer";
    return std::nullopt;
}

bool parse_bool(std::string_view t, bool& out) {
    auto l = lower(t);
    if (l == "true" || l == "1" || l == "yes" || l == "on") return out = true, true;
    if (l == "false" || l == "0" || l == "no" || l == "off") return out = false, true;
    return false;
}

const char* toml_type_name(const toml::node& n) {
    switch (n.type()) {
        case toml::node_type::string:
            return "a string";
        case toml::node_type::integer:
            return "an integer";
        case toml::node_type::floating_point:
            return "a float";
        case toml::node_type::boolean:
            return "a boolean";
        case toml::node_type::array:
            return "an array";
        case toml::node_type::table:
            return "a table";
        default:
            return "a date/time";
    }
}

// ---- tunnel targets -----------------------------------------------------------------------------

std::string parse_tunnel(std::string_view t, tunnel_target& out) {
    auto eq = t.find('=');
    if (eq == t.npos) return "expected NAME=HOST:PORT";
    std::string_view name = t.substr(0, eq);
    if (!valid_tunnel_name(name))
        return "expected NAME=HOST:PORT with NAME 1-63 of [a-z0-9-], not starting or ending with "
               "'-'";
    if (!split_host_port(t.substr(eq + 1), out.host, out.port))
        return "expected NAME=HOST:PORT with a host name or IP ([::1] for IPv6) and port 1..65535";
    out.name = std::string(name);
    return "";
}

std::string tunnel_text(const tunnel_target& t) {
    bool v6 = t.host.find(':') != std::string::npos;
    return t.name + "=" + (v6 ? "[" + t.host + "]" : t.host) + ":" + std::to_string(t.port);
}

// ---- the option table ---------------------------------------------------------------------------

template <class S>
struct option {
    std::string_view key, flag, env;
    value_kind kind = value_kind::string;
    std::string range;
    std::string_view help;
    std::string_view metavar;
    bool secret = false;
    bool live = false;
    bool meta = false;               // `config`: command line / environment only
    std::string S::*path = nullptr;  // a FILE/DIR key: "~/" is expanded after all sources
    // Set from a flag or environment text. `append`: a repeated list flag adds to the list.
    // On failure returns false with the message tail in `why` ("0..256, got 999").
    std::function<bool(S&, std::string_view, bool append, std::string& why)> set_text;
    std::function<bool(S&, const toml::node&, std::string& why)> set_toml;
    std::function<void(const S&, std::string&)> json;
};

template <class S>
struct table {
    std::vector<option<S>> opts;
    std::vector<key_info> infos;  // built once the options are final
    void freeze() {
        // A secret's value is never echoed in an error: cut the ", got ..." tail.
        for (auto& o : opts) {
            if (!o.secret) continue;
            auto cut = [](std::string& why) {
                if (auto p = why.find(", got "); p != std::string::npos) why.erase(p);
            };
            o.set_text = [inner = o.set_text, cut](S& s, std::string_view v, bool a,
                                                   std::string& why) {
                if (inner(s, v, a, why)) return true;
                cut(why);
                return false;
            };
            o.set_toml = [inner = o.set_toml, cut](S& s, const toml::node& n, std::string& why) {
                if (inner(s, n, why)) return true;
                cut(why);
                return false;
            };
        }
        for (auto& o : opts)
            infos.push_back({o.key, o.flag, o.env, o.kind, o.range, o.help, o.secret, o.live});
    }
    const option<S>* by_key(std::string_view k) const {
        for (auto& o : opts)
            if (o.key == k) return &o;
        return nullptr;
    }
    std::size_t index(const option<S>* o) const { return std::size_t(o - opts.data()); }
};

using check_fn = std::string (*)(std::string_view);

template <class S>
option<S> str_opt(std::string_view key, std::string_view flag, std::string_view env,
                  std::string range, std::string_view metavar, std::string_view help,
                  std::string S::*m, check_fn check) {
    option<S> o;
    o.key = key, o.flag = flag, o.env = env, o.kind = value_kind::string,
    o.range = std::move(range);
    o.metavar = metavar, o.help = help;
    o.set_text = [m, check](S& s, std::string_view v, bool, std::string& why) {
        std::string e = check(v);
        if (!e.empty()) {
            why = e + ", got " + quoted(v);
            return false;
        }
        s.*m = std::string(v);
        return true;
    };
    o.set_toml = [set = o.set_text](S& s, const toml::node& n, std::string& why) {
        auto v = n.value<std::string>();
        if (!n.is_string() || !v) {
            why = std::string("expected a string, got ") + toml_type_name(n);
            return false;
        }
        return set(s, *v, false, why);
    };
    o.json = [m](const S& s, std::string& out) { json_string(s.*m, out); };
    if (metavar == "FILE" || metavar == "DIR") o.path = m;
    return o;
}

template <class S, class T>
option<S> num_opt(std::string_view key, std::string_view flag, std::string_view env,
                  value_kind kind, std::string_view help, T S::*m, std::uint64_t lo,
                  std::uint64_t hi) {
    option<S> o;
    unit u = kind == value_kind::size       ? unit::bytes
             : kind == value_kind::duration ? (key.ends_with("_s") ? unit::s : unit::ms)
                                            : unit::none;
    o.key = key, o.flag = flag, o.env = env, o.kind = kind, o.help = help;
    o.range = std::to_string(lo) + ".." + std::to_string(hi);
    o.metavar = u == unit::ms ? "MS" : u == unit::s ? "SECONDS" : u == unit::bytes ? "BYTES" : "N";
    auto check = [m, lo, hi, range = o.range](S& s, std::uint64_t v, std::string_view shown,
                                              std::string& why) {
        if (v < lo || v > hi) {
            why = range + ", got " + std::string(shown);
            return false;
        }
        s.*m = T(v);
        return true;
    };
    o.set_text = [u, check](S& s, std::string_view t, bool, std::string& why) {
        std::string e;
        auto v = parse_number(t, u, e);
        if (!v) {
            why = e + ", got " + quoted(t);
            return false;
        }
        return check(s, *v, t, why);
    };
    o.set_toml = [u, check](S& s, const toml::node& n, std::string& why) {
        if (auto i = n.as_integer()) {
            std::int64_t v = i->get();
            if (v < 0) {
                why = "expected a non-negative integer, got " + std::to_string(v);
                return false;
            }
            return check(s, std::uint64_t(v), std::to_string(v), why);
        }
        if (auto str = n.as_string(); str && u != unit::none) {
            std::string e;
            auto v = parse_number(str->get(), u, e);
            if (!v) {
                why = e + ", got " + quoted(str->get());
                return false;
            }
            return check(s, *v, quoted(str->get()), why);
        }
        why = std::string("expected an integer, got ") + toml_type_name(n);
        return false;
    };
    o.json = [m](const S& s, std::string& out) { out += std::to_string(std::uint64_t(s.*m)); };
    return o;
}

template <class S>
option<S> bool_opt(std::string_view key, std::string_view flag, std::string_view env,
                   std::string_view help, bool S::*m) {
    option<S> o;
    o.key = key, o.flag = flag, o.env = env, o.kind = value_kind::boolean, o.help = help;
    o.range = "true|false";
    o.set_text = [m](S& s, std::string_view t, bool, std::string& why) {
        bool b;
        if (!parse_bool(t, b)) {
            why = "expected true or false, got " + quoted(t);
            return false;
        }
        s.*m = b;
        return true;
    };
    o.set_toml = [m](S& s, const toml::node& n, std::string& why) {
        auto b = n.as_boolean();
        if (!b) {
            why = std::string("expected a boolean, got ") + toml_type_name(n);
            return false;
        }
        s.*m = b->get();
        return true;
    };
    o.json = [m](const S& s, std::string& out) { out += s.*m ? "true" : "false"; };
    return o;
}

template <class S>
option<S> list_opt(std::string_view key, std::string_view flag, std::string_view env,
                   std::string range, std::string_view metavar, std::string_view help,
                   std::vector<std::string> S::*m, check_fn check) {
    option<S> o;
    o.key = key, o.flag = flag, o.env = env, o.kind = value_kind::list, o.range = std::move(range);
    o.metavar = metavar, o.help = help;
    auto add = [m, check](S& s, std::string_view item, std::string& why) {
        std::string e = item.empty() ? "expected a non-empty entry" : check(item);
        if (!e.empty()) {
            why = e + ", got " + quoted(item);
            return false;
        }
        if (std::find((s.*m).begin(), (s.*m).end(), item) != (s.*m).end()) {
            why = "duplicate entry " + quoted(item);
            return false;
        }
        if ((s.*m).size() >= max_list_items) {
            why = "at most " + std::to_string(max_list_items) + " entries";
            return false;
        }
        (s.*m).emplace_back(item);
        return true;
    };
    o.set_text = [m, add](S& s, std::string_view t, bool append, std::string& why) {
        if (!append) (s.*m).clear();
        if (trim(t).empty()) return true;  // "" = empty list
        while (true) {
            auto comma = t.find(',');
            if (!add(s, trim(t.substr(0, comma)), why)) return false;
            if (comma == t.npos) return true;
            t.remove_prefix(comma + 1);
        }
    };
    o.set_toml = [m, add](S& s, const toml::node& n, std::string& why) {
        (s.*m).clear();
        if (auto str = n.as_string()) return add(s, str->get(), why);  // one value: a list of one
        auto arr = n.as_array();
        if (!arr) {
            why = std::string("expected an array of strings, got ") + toml_type_name(n);
            return false;
        }
        for (auto& el : *arr) {
            auto v = el.as_string();
            if (!v) {
                why = std::string("expected an array of strings, got an element that is ") +
                      toml_type_name(el);
                return false;
            }
            if (!add(s, v->get(), why)) return false;
        }
        return true;
    };
    o.json = [m](const S& s, std::string& out) {
        out += '[';
        for (std::size_t i = 0; i < (s.*m).size(); ++i) {
            if (i) out += ',';
            json_string((s.*m)[i], out);
        }
        out += ']';
    };
    return o;
}

template <class S>
option<S> config_opt() {
    auto o = str_opt<S>("config", "--config", "FERRY_CONFIG", "FILE", "FILE",
                        "TOML file read first; flags and FERRY_* variables override it",
                        &S::config_file, check_path);
    o.meta = true;
    o.set_toml = [](S&, const toml::node&, std::string& why) {
        why = "cannot be set inside a config file";
        return false;
    };
    return o;
}

// ---- relay table --------------------------------------------------------------------------------

const table<relay_settings>& relay_table() {
    static const table<relay_settings> t = [] {
        using R = relay_settings;
        using K = value_kind;
        table<R> tb;
        auto& v = tb.opts;
        v.push_back(config_opt<R>());
        v.push_back(str_opt<R>("listen", "--listen", "FERRY_LISTEN", "HOST:PORT", "HOST:PORT",
                               "Public listener: agents (GET /tunnel) and consumers (/t/NAME/...). "
                               "Numeric host; port 0 picks a free port",
                               &R::listen, check_listen));
        v.push_back(
            str_opt<R>("admin_listen", "--admin-listen", "FERRY_ADMIN_LISTEN", "HOST:PORT or empty",
                       "HOST:PORT",
                       "Admin API and /metrics listener; empty turns it off. Not built yet: ferryd "
                       "warns at the default and refuses to start with another address",
                       &R::admin_listen, check_listen_or_empty));
        v.push_back(str_opt<R>("ssh_listen", "--ssh-listen", "FERRY_SSH_LISTEN",
                               "HOST:PORT or empty", "HOST:PORT",
                               "Optional raw SSH listener (plain TCP, no TLS or WebSocket) for agents "
                               "that speak SSH directly: `ssh -N -R NAME:80:HOST:PORT USER@relay` with a "
                               "JWT whose sub is USER as password; empty = off",
                               &R::ssh_listen, check_listen_or_empty));
        v.push_back(str_opt<R>("tls_cert", "--tls-cert", "FERRY_TLS_CERT", "FILE", "FILE",
                               "PEM certificate chain of the public listener (with tls_key). "
                               "Neither: a self-signed development certificate in data_dir",
                               &R::tls_cert, check_path));
        v.push_back(str_opt<R>("tls_key", "--tls-key", "FERRY_TLS_KEY", "FILE", "FILE",
                               "PEM private key of tls_cert", &R::tls_key, check_path));
        v.push_back(bool_opt<R>(
            "no_tls", "--no-tls", "FERRY_NO_TLS",
            "Serve plain TCP (development, or TLS terminated in front of ferryd)", &R::no_tls));
        v.push_back(str_opt<R>("tls_min_version", "--tls-min-version", "FERRY_TLS_MIN_VERSION",
                               "1.2|1.3", "VERSION", "Lowest TLS version accepted",
                               &R::tls_min_version, check_tls_version));
        v.push_back(str_opt<R>(
            "jwt_secret_file", "--jwt-secret-file", "FERRY_JWT_SECRET_FILE", "FILE", "FILE",
            "HS256 secret: the file's raw bytes, one trailing newline ignored, at least 32 bytes",
            &R::jwt_secret_file, check_path));
        v.push_back(str_opt<R>("jwks_file", "--jwks-file", "FERRY_JWKS_FILE", "FILE", "FILE",
                               "JWK set (RS256, ES256, EdDSA; oct keys with alg HS256)",
                               &R::jwks_file, check_path));
        v.push_back(str_opt<R>("jwks_url", "--jwks-url", "FERRY_JWKS_URL", "https URL or empty",
                               "URL",
                               "JWK set fetched over HTTPS by the control plane. Not built yet: "
                               "ferryd refuses to start when it is set (use jwks_file)",
                               &R::jwks_url, check_url));
        v.push_back(str_opt<R>("jwt_issuer", "--jwt-issuer", "FERRY_JWT_ISSUER", "text", "ISS",
                               "Required iss claim; empty: iss is not checked", &R::jwt_issuer,
                               check_any));
        v.push_back(list_opt<R>("jwt_audience", "--jwt-audience", "FERRY_JWT_AUDIENCE",
                                "list of strings", "AUD[,AUD]",
                                "Accepted aud values. Empty: aud is not required, but a token that "
                                "carries aud is refused (RFC 7519 4.1.3)",
                                &R::jwt_audience, check_any));
        v.push_back(num_opt<R>("jwt_leeway_s", "--jwt-leeway-s", "FERRY_JWT_LEEWAY_S", K::duration,
                               "Clock skew tolerated on exp, nbf and iat", &R::jwt_leeway_s, 0,
                               600));
        v.push_back(list_opt<R>("jwt_algorithms", "--jwt-algorithms", "FERRY_JWT_ALGORITHMS",
                                "HS256, RS256, ES256, EdDSA", "ALG[,ALG]",
                                "Algorithm allow-list (none never works)", &R::jwt_algorithms,
                                check_alg));
        v.push_back(str_opt<R>("admin_token_file", "--admin-token-file", "FERRY_ADMIN_TOKEN_FILE",
                               "FILE", "FILE",
                               "File holding the admin API bearer token; empty: only /healthz, "
                               "/readyz and /metrics answer",
                               &R::admin_token_file, check_path));
        v.push_back(
            num_opt<R>("shards", "--shards", "FERRY_SHARDS", K::integer,
                       "Reactor threads (one per CPU); 0 = the CPUs available to the process",
                       &R::shards, 0, FERRY_MAX_SHARDS));
        v.push_back(str_opt<R>(
            "data_dir", "--data-dir", "FERRY_DATA_DIR", "DIR", "DIR",
            "Directory for the SSH host key and generated development material (created 0700)",
            &R::data_dir, check_nonempty));
        v.push_back(str_opt<R>("host_key_file", "--host-key-file", "FERRY_HOST_KEY_FILE", "FILE",
                               "FILE",
                               "OpenSSH ed25519 private key (ssh-keygen -t ed25519 -N ''); empty: "
                               "data_dir/ssh_host_ed25519_key, created on first start",
                               &R::host_key_file, check_path));
        v.push_back(str_opt<R>(
            "base_domain", "--base-domain", "FERRY_BASE_DOMAIN", "DNS name or empty", "DOMAIN",
            "Host routing: NAME.DOMAIN reaches tunnel NAME with the path unchanged; empty = off",
            &R::base_domain, check_domain));
        v.push_back(num_opt<R>("lease_s", "--lease-s", "FERRY_LEASE_S", K::duration,
                               "After an unclean drop the owner keeps its tunnel names this long",
                               &R::lease_s, 0, 86400));
        v.push_back(num_opt<R>(
            "max_agents_per_user", "--max-agents-per-user", "FERRY_MAX_AGENTS_PER_USER", K::integer,
            "Agent connections per token subject", &R::max_agents_per_user, 1, 1000));
        v.push_back(num_opt<R>(
            "max_names_per_user", "--max-names-per-user", "FERRY_MAX_NAMES_PER_USER", K::integer,
            "Tunnel names one token subject may hold, online or leased (a dropped agent's names count until their lease ends)",
            &R::max_names_per_user, 1, 100000));
        v.push_back(num_opt<R>("max_channels_per_tunnel", "--max-channels-per-tunnel",
                               "FERRY_MAX_CHANNELS_PER_TUNNEL", K::integer,
                               "Concurrent consumer requests per tunnel (its channels in use; spare channels "
                               "opened ahead do not count); more wait in the tunnel's queue (queue_max, "
                               "queue_wait_ms) until one ends",
                               &R::max_channels_per_tunnel, 1, 65536));
        v.push_back(
            num_opt<R>("user_rate_limit", "--user-rate-limit", "FERRY_USER_RATE_LIMIT", K::integer,
                       "Consumer requests per minute per token subject (token bucket per shard); 0 = off",
                       &R::user_rate_limit, 0, 1000000));
        v.push_back(num_opt<R>(
            "queue_max", "--queue-max", "FERRY_QUEUE_MAX", K::integer,
            "Requests that wait per tunnel while its agent is away; 0 = answer 503 at once",
            &R::queue_max, 0, 100000));
        v.push_back(num_opt<R>("queue_wait_ms", "--queue-wait-ms", "FERRY_QUEUE_WAIT_MS",
                               K::duration, "How long a queued request waits before 503",
                               &R::queue_wait_ms, 0, 3600000));
        v.push_back(num_opt<R>("head_timeout_ms", "--head-timeout-ms", "FERRY_HEAD_TIMEOUT_MS",
                               K::duration, "TLS handshake plus request head", &R::head_timeout_ms,
                               100, 600000));
        v.push_back(num_opt<R>("idle_timeout_ms", "--idle-timeout-ms", "FERRY_IDLE_TIMEOUT_MS",
                               K::duration,
                               "A consumer connection with no byte either way is closed",
                               &R::idle_timeout_ms, 1000, 86400000));
        v.push_back(num_opt<R>(
            "unauthenticated_idle_timeout_ms", "--unauthenticated-idle-timeout-ms",
            "FERRY_UNAUTHENTICATED_IDLE_TIMEOUT_MS", K::duration,
            "Between requests: a consumer connection that has never presented a valid token is closed after this long idle (before its first request, head_timeout_ms applies)",
            &R::unauthenticated_idle_timeout_ms, 1000, 86400000));
        v.push_back(num_opt<R>(
            "handshake_timeout_ms", "--handshake-timeout-ms", "FERRY_HANDSHAKE_TIMEOUT_MS", K::duration,
            "Agent connections: WebSocket upgrade to SSH authenticated (version, key exchange, auth); closed after",
            &R::handshake_timeout_ms, 1000, 600000));
        v.push_back(num_opt<R>(
            "max_connections", "--max-connections", "FERRY_MAX_CONNECTIONS", K::integer,
            "Open connections on the public listener; at the cap a waiting connection that never presented a valid token makes room (else the longest idle keep-alive one; agents never), else the new one is closed. 0 = the open-file limit minus max(256, 64 + 1/16 of it)",
            &R::max_connections, 0, 10000000));
        v.push_back(num_opt<R>(
            "max_connections_per_ip", "--max-connections-per-ip", "FERRY_MAX_CONNECTIONS_PER_IP",
            K::integer, "Open connections per client address (IPv6: per /64); 0 = off",
            &R::max_connections_per_ip, 0, 10000000));
        v.push_back(num_opt<R>(
            "max_pipelined_requests", "--max-pipelined-requests", "FERRY_MAX_PIPELINED_REQUESTS",
            K::integer,
            "Answers one connection may have waiting unread before the relay stops reading it",
            &R::max_pipelined_requests, 1, 1024));
        v.push_back(num_opt<R>("first_byte_timeout_ms", "--first-byte-timeout-ms",
                               "FERRY_FIRST_BYTE_TIMEOUT_MS", K::duration,
                               "Request sent to the first response byte (504 after); long for LLMs",
                               &R::first_byte_timeout_ms, 1000, 86400000));
        v.push_back(num_opt<R>("max_head_bytes", "--max-head-bytes", "FERRY_MAX_HEAD_BYTES",
                               K::size, "Largest request head (431 above)", &R::max_head_bytes,
                               1024, 1 << 20));
        v.push_back(num_opt<R>("max_headers", "--max-headers", "FERRY_MAX_HEADERS", K::integer,
                               "Most header fields in a request (431 above)", &R::max_headers, 1,
                               1000));
        v.push_back(num_opt<R>("max_body_bytes", "--max-body-bytes", "FERRY_MAX_BODY_BYTES",
                               K::size, "Largest request body (413 above); 0 = unlimited",
                               &R::max_body_bytes, 0, 1ull << 50));
        v.push_back(num_opt<R>("ws_max_frame", "--ws-max-frame", "FERRY_WS_MAX_FRAME", K::size,
                               "Largest WebSocket frame from an agent (close 1009 above)",
                               &R::ws_max_frame, 1024, 64u << 20));
        v.push_back(num_opt<R>("ping_interval_ms", "--ping-interval-ms", "FERRY_PING_INTERVAL_MS",
                               K::duration, "WebSocket ping to each agent", &R::ping_interval_ms,
                               1000, 3600000));
        v.push_back(
            num_opt<R>("pong_timeout_ms", "--pong-timeout-ms", "FERRY_PONG_TIMEOUT_MS", K::duration,
                       "An agent is dropped this long after its last pong; above ping_interval_ms",
                       &R::pong_timeout_ms, 1000, 7200000));
        v.push_back(num_opt<R>("drain_timeout_ms", "--drain-timeout-ms", "FERRY_DRAIN_TIMEOUT_MS",
                               K::duration,
                               "Shutdown: in-flight requests get this long before connections are "
                               "cut. Not built yet: SIGTERM stops ferryd at once, and ferryd "
                               "refuses to start with another value than the default",
                               &R::drain_timeout_ms, 0, 3600000));
        v.push_back(str_opt<R>("log_level", "--log-level", "FERRY_LOG_LEVEL",
                               "error|warn|info|debug|trace", "LEVEL", "Log verbosity",
                               &R::log_level, check_log_level));
        v.push_back(list_opt<R>("public_tunnels", "--public-tunnels", "FERRY_PUBLIC_TUNNELS",
                                "list of tunnel names", "NAME[,NAME]",
                                "Tunnels served without a consumer token", &R::public_tunnels,
                                check_tunnel_name));
        v.push_back(list_opt<R>(
            "trusted_proxies", "--trusted-proxies", "FERRY_TRUSTED_PROXIES", "list of CIDRs",
            "CIDR[,CIDR]",
            "Peers whose X-Forwarded-For, Forwarded and X-Real-IP are kept (and extended); from anyone else they are replaced by the address ferryd sees",
            &R::trusted_proxies, check_cidr));
        v.push_back(str_opt<R>(
            "agent_scope", "--agent-scope", "FERRY_AGENT_SCOPE", "scope token", "SCOPE",
            "Agent connections need a token whose scope claim holds this value (docs/security.md); consumer tokens without it cannot register tunnels",
            &R::agent_scope, check_scope));
        for (auto& o : v)
            if (o.key.starts_with("jwt_") || o.key.starts_with("jwks_") || o.key == "log_level" ||
                o.key == "public_tunnels" || o.key == "admin_token_file")
                o.live = true;
        tb.freeze();
        return tb;
    }();
    return t;
}

// ---- agent table --------------------------------------------------------------------------------

struct profile_values {
    std::uint32_t ping, pong, connect, handshake, backoff_initial, backoff_max;
};
constexpr profile_values profile_table[] = {
    {30000, 45000, 10000, 15000, 2000, 60000},    // stable
    {10000, 20000, 5000, 10000, 1000, 15000},     // unstable
    {60000, 120000, 30000, 60000, 5000, 120000},  // low-bandwidth
};
constexpr std::string_view profile_keys[] = {"ping_interval_ms",   "pong_timeout_ms",
                                             "connect_timeout_ms", "handshake_timeout_ms",
                                             "backoff_initial_ms", "backoff_max_ms"};

std::optional<agent_profile> profile_by_name(std::string_view s) {
    if (s == "stable") return agent_profile::stable;
    if (s == "unstable") return agent_profile::unstable;
    if (s == "low-bandwidth") return agent_profile::low_bandwidth;
    return std::nullopt;
}

option<agent_settings> profile_opt() {
    using A = agent_settings;
    option<A> o;
    o.key = "profile", o.flag = "--profile", o.env = "FERRY_PROFILE", o.kind = value_kind::string;
    o.range = "stable|unstable|low-bandwidth", o.metavar = "PROFILE";
    o.help =
        "Timing preset for ping, pong, connect, handshake and backoff (keys set explicitly win)";
    o.set_text = [](A& s, std::string_view t, bool, std::string& why) {
        auto p = profile_by_name(t);
        if (!p) {
            why = "expected stable|unstable|low-bandwidth, got " + quoted(t);
            return false;
        }
        s.profile = *p;
        return true;
    };
    o.set_toml = [set = o.set_text](A& s, const toml::node& n, std::string& why) {
        auto v = n.as_string();
        if (!v) {
            why = std::string("expected a string, got ") + toml_type_name(n);
            return false;
        }
        return set(s, v->get(), false, why);
    };
    o.json = [](const A& s, std::string& out) { json_string(name(s.profile), out); };
    return o;
}

option<agent_settings> tunnels_opt() {
    using A = agent_settings;
    option<A> o;
    o.key = "tunnels", o.flag = "--tunnel", o.env = "FERRY_TUNNELS", o.kind = value_kind::tunnels;
    o.range = "NAME=HOST:PORT entries", o.metavar = "NAME=HOST:PORT";
    o.help =
        "A local service to expose as tunnel NAME (repeat the flag for more; the environment takes "
        "a comma-separated list)";
    auto add = [](A& s, tunnel_target t, std::string& why) {
        for (auto& x : s.tunnels)
            if (x.name == t.name) {
                why = "duplicate tunnel name " + quoted(t.name);
                return false;
            }
        if (s.tunnels.size() >= max_list_items) {
            why = "at most " + std::to_string(max_list_items) + " tunnels";
            return false;
        }
        s.tunnels.push_back(std::move(t));
        return true;
    };
    auto add_text = [add](A& s, std::string_view item, std::string& why) {
        tunnel_target t;
        std::string e = parse_tunnel(item, t);
        if (!e.empty()) {
            why = e + ", got " + quoted(item);
            return false;
        }
        return add(s, std::move(t), why);
    };
    o.set_text = [add_text](A& s, std::string_view t, bool append, std::string& why) {
        if (!append) s.tunnels.clear();
        if (trim(t).empty()) return true;
        while (true) {
            auto comma = t.find(',');
            if (!add_text(s, trim(t.substr(0, comma)), why)) return false;
            if (comma == t.npos) return true;
            t.remove_prefix(comma + 1);
        }
    };
    o.set_toml = [add, add_text](A& s, const toml::node& n, std::string& why) {
        s.tunnels.clear();
        auto arr = n.as_array();
        if (!arr) {
            why = std::string(
                      "expected an array of \"NAME=HOST:PORT\" strings or {name, host, port} "
                      "tables, got ") +
                  toml_type_name(n);
            return false;
        }
        std::size_t idx = 0;
        for (auto& el : *arr) {
            std::string at = "[" + std::to_string(idx++) + "]";
            if (auto str = el.as_string()) {
                if (!add_text(s, str->get(), why)) return why.insert(0, at + ": "), false;
                continue;
            }
            auto tbl = el.as_table();
            if (!tbl) {
                why = at + ": expected a string or a table, got " + toml_type_name(el);
                return false;
            }
            tunnel_target t;
            for (auto& [k, val] : *tbl) {
                if (k.str() != "name" && k.str() != "host" && k.str() != "port") {
                    why = at + ": unknown field " + quoted(k.str()) + " (fields: name, host, port)";
                    return false;
                }
            }
            auto nm = (*tbl)["name"].value<std::string>();
            auto host = (*tbl)["host"].value<std::string>();
            auto port = (*tbl)["port"].value<std::int64_t>();
            if (!nm || !valid_tunnel_name(*nm)) {
                why = at + ".name: " + check_tunnel_name(nm.value_or("")) +
                      (nm ? ", got " + quoted(*nm) : "");
                return false;
            }
            if (!host || !(is_ip_literal(*host) || valid_hostname(*host))) {
                why = at + ".host: expected a host name or IP address" +
                      (host ? ", got " + quoted(*host) : "");
                return false;
            }
            if (!port || *port < 1 || *port > 65535) {
                why = at + ".port: 1..65535" + (port ? ", got " + std::to_string(*port) : "");
                return false;
            }
            t.name = *nm, t.host = *host, t.port = std::uint16_t(*port);
            if (!add(s, std::move(t), why)) return why.insert(0, at + ": "), false;
        }
        return true;
    };
    o.json = [](const A& s, std::string& out) {
        out += '[';
        for (std::size_t i = 0; i < s.tunnels.size(); ++i) {
            if (i) out += ',';
            json_string(tunnel_text(s.tunnels[i]), out);
        }
        out += ']';
    };
    return o;
}

const table<agent_settings>& agent_table() {
    static const table<agent_settings> t = [] {
        using A = agent_settings;
        using K = value_kind;
        table<A> tb;
        auto& v = tb.opts;
        v.push_back(config_opt<A>());
        v.push_back(str_opt<A>("relay", "--relay", "FERRY_RELAY", "ws[s]://HOST[:PORT][/PATH]",
                               "URL", "The relay: wss://HOST[:PORT] (443 by default; path /tunnel)",
                               &A::relay, check_relay_url));
        {
            auto o = str_opt<A>("token", "--token", "FERRY_TOKEN", "JWT", "JWT",
                                "The agent's JWT (visible in ps: prefer token_file or FERRY_TOKEN)",
                                &A::token, check_token);
            o.secret = true;
            v.push_back(std::move(o));
        }
        v.push_back(str_opt<A>("token_file", "--token-file", "FERRY_TOKEN_FILE", "FILE", "FILE",
                               "File holding the JWT; read again before every connection attempt",
                               &A::token_file, check_path));
        v.push_back(str_opt<A>(
            "token_command", "--token-command", "FERRY_TOKEN_COMMAND", "shell command", "CMD",
            "Command (sh -c) that prints the JWT; run before every connection attempt",
            &A::token_command, check_any));
        v.push_back(tunnels_opt());
        v.push_back(str_opt<A>("ca_file", "--ca-file", "FERRY_CA_FILE", "FILE", "FILE",
                               "PEM CA certificates trusted for the relay; empty: the system roots",
                               &A::ca_file, check_path));
        v.push_back(bool_opt<A>(
            "insecure_skip_verify", "--insecure-skip-verify", "FERRY_INSECURE_SKIP_VERIFY",
            "Do not check the relay's TLS certificate at all (development only)",
            &A::insecure_skip_verify));
        v.push_back(str_opt<A>(
            "known_hosts", "--known-hosts", "FERRY_KNOWN_HOSTS", "FILE", "FILE",
            "Relay SSH host keys trusted on first use (default ~/.config/ferry/known_hosts)",
            &A::known_hosts, check_path));
        v.push_back(num_opt<A>("max_attempts", "--max-attempts", "FERRY_MAX_ATTEMPTS", K::integer,
                               "Connection attempts in a row before giving up; 0 = forever",
                               &A::max_attempts, 0, 1000000000));
        v.push_back(profile_opt());
        v.push_back(num_opt<A>("ping_interval_ms", "--ping-interval-ms", "FERRY_PING_INTERVAL_MS",
                               K::duration,
                               "WebSocket ping and SSH keepalive interval (profile default)",
                               &A::ping_interval_ms, 1000, 3600000));
        v.push_back(num_opt<A>(
            "pong_timeout_ms", "--pong-timeout-ms", "FERRY_PONG_TIMEOUT_MS", K::duration,
            "Reconnect when no pong came for this long; above ping_interval_ms (profile default)",
            &A::pong_timeout_ms, 1000, 7200000));
        v.push_back(num_opt<A>("connect_timeout_ms", "--connect-timeout-ms",
                               "FERRY_CONNECT_TIMEOUT_MS", K::duration,
                               "TCP connect to the relay and to local targets (profile default)",
                               &A::connect_timeout_ms, 100, 600000));
        v.push_back(num_opt<A>(
            "handshake_timeout_ms", "--handshake-timeout-ms", "FERRY_HANDSHAKE_TIMEOUT_MS",
            K::duration, "TLS, upgrade and SSH handshake up to the forwards (profile default)",
            &A::handshake_timeout_ms, 1000, 600000));
        v.push_back(num_opt<A>("backoff_initial_ms", "--backoff-initial-ms",
                               "FERRY_BACKOFF_INITIAL_MS", K::duration,
                               "Reconnect: first retry at once, then this delay, doubled each "
                               "time, +-30% jitter (profile default)",
                               &A::backoff_initial_ms, 100, 600000));
        v.push_back(num_opt<A>("backoff_max_ms", "--backoff-max-ms", "FERRY_BACKOFF_MAX_MS",
                               K::duration, "Reconnect delay cap (profile default)",
                               &A::backoff_max_ms, 100, 3600000));
        v.push_back(
            num_opt<A>("drain_ms", "--drain-ms", "FERRY_DRAIN_MS", K::duration,
                       "SIGTERM: in-flight requests get this long before the agent disconnects",
                       &A::drain_ms, 0, 600000));
        v.push_back(num_opt<A>(
            "upstream_keepalive", "--upstream-keepalive", "FERRY_UPSTREAM_KEEPALIVE", K::integer,
            "Idle HTTP keep-alive connections to local targets kept per tunnel for the next "
            "request; 0 = a new connection per request",
            &A::upstream_keepalive, 0, 4096));
        v.push_back(num_opt<A>("upstream_idle_ms", "--upstream-idle-ms", "FERRY_UPSTREAM_IDLE_MS",
                               K::duration,
                               "A kept upstream connection unused this long is closed; keep it "
                               "below the target's own keep-alive timeout",
                               &A::upstream_idle_ms, 100, 3600000));
        v.push_back(str_opt<A>("log_level", "--log-level", "FERRY_LOG_LEVEL",
                               "error|warn|info|debug|trace", "LEVEL", "Log verbosity",
                               &A::log_level, check_log_level));
        tb.freeze();
        return tb;
    }();
    return t;
}

// ---- the engine ---------------------------------------------------------------------------------

struct errors {
    std::vector<std::string> lines;
    bool full() const { return lines.size() >= max_errors; }
    void add(std::string s) {
        if (!full()) lines.push_back(std::move(s));
    }
    std::string text() const {
        std::string r;
        for (auto& l : lines) r += l + "\n";
        if (lines.size() >= max_errors) r += "(more problems not shown)\n";
        return r;
    }
};

template <class S>
std::string hint(const table<S>& t, std::string_view given, bool flags) {
    std::string_view best;
    std::size_t best_d = 4;
    for (auto& o : t.opts) {
        std::string_view cand = flags ? o.flag : o.key;
        std::size_t d = edit_distance(given, cand);
        if (d < best_d) best_d = d, best = cand;
    }
    if (best.empty()) return "";
    return std::string(" (did you mean ") + std::string(best) + "?)";
}

template <class S>
struct parse_state {
    const table<S>& t;
    S s;
    std::vector<std::string> where;  // per option: where its value came from ("" = default)
    errors errs;
    explicit parse_state(const table<S>& tb) : t(tb), where(tb.opts.size()) {}

    // One value from a flag or the environment; `append`: a repeated list flag adds to it.
    void apply_text(const option<S>& o, std::string_view v, const std::string& from, bool append) {
        std::string why;
        if (!o.set_text(s, v, append, why)) {
            errs.add(std::string(o.key) + ": " + why + " (from " + from + ")");
            return;
        }
        where[t.index(&o)] = from;
    }
};

// Reads a whole file of at most `max` bytes.
bool read_small_file(const std::string& path, std::size_t max, std::string& out, std::string& why) {
    std::FILE* f = std::fopen(path.c_str(), "rb");
    if (!f) {
        why = std::string(std::strerror(errno));
        return false;
    }
    out.clear();
    char buf[8192];
    std::size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) {
        out.append(buf, n);
        if (out.size() > max) {
            std::fclose(f);
            why = "larger than " + std::to_string(max) + " bytes";
            return false;
        }
    }
    bool err = std::ferror(f);
    std::fclose(f);
    if (err) {
        why = "read error";
        return false;
    }
    return true;
}

std::string where_toml(std::string_view origin, const toml::node& n) {
    auto& b = n.source().begin;
    if (b.line == 0) return std::string(origin);
    return std::string(origin) + ":" + std::to_string(b.line) + ":" + std::to_string(b.column);
}

template <class S>
void apply_toml(parse_state<S>& st, std::string_view text, std::string_view origin,
                std::string_view other_program,
                const std::function<bool(std::string_view)>& other_has_key) {
    toml::table doc;
    try {
        doc = toml::parse(text, origin);
    } catch (const toml::parse_error& e) {
        auto& b = e.source().begin;
        st.errs.add(std::string(origin) + ":" + std::to_string(b.line) + ":" +
                    std::to_string(b.column) +
                    ": TOML syntax error: " + std::string(e.description()));
        return;
    }
    for (auto& [k, node] : doc) {
        std::string_view key = k.str();
        std::string from = where_toml(origin, node);
        const option<S>* o = st.t.by_key(key);
        if (!o) {
            std::string h = hint(st.t, key, false);
            if (h.empty() && other_has_key(key))
                h = std::string(" (that key belongs to ") + std::string(other_program) + ")";
            if (node.is_table()) h += " (tables are not used: write keys at the top level)";
            st.errs.add(std::string(origin) + ": unknown key " + quoted(key) + h + " (at " + from +
                        ")");
            continue;
        }
        std::string why;
        if (!o->set_toml(st.s, node, why)) {
            st.errs.add(std::string(o->key) + ": " + why + " (from " + from + ")");
            continue;
        }
        st.where[st.t.index(o)] = from;
    }
}

enum class mode : std::uint8_t { relay, agent, connect };

// The generic parse: flags are collected first (to find --config and --help), then the file,
// the flags and the environment are applied in that order.
template <class S>
bool parse_sources(parse_state<S>& st, int argc, char** argv, const env_fn& env, mode m,
                   std::string& help, std::string_view other_program,
                   const std::function<bool(std::string_view)>& other_has_key,
                   std::vector<std::string>& positional, std::string_view positional_key = {}) {
    const table<S>& t = st.t;
    std::vector<std::pair<const option<S>*, std::pair<std::string, std::string>>>
        flags;  // opt, (value, flag)
    bool only_positional = false;
    for (int i = 1; i < argc; ++i) {
        std::string_view a = argv[i] ? argv[i] : "";
        if (only_positional || !a.starts_with("-") || a == "-") {
            positional.emplace_back(a);
            continue;
        }
        if (a == "--") {
            only_positional = true;
            continue;
        }
        if (a == "--help" || a == "-h") {
            help = m == mode::relay ? relay_help() : agent_help(m == mode::connect);
            return false;
        }
        std::string_view name = a, value;
        bool has_value = false;
        if (auto eq = a.find('='); eq != a.npos) {
            name = a.substr(0, eq);
            value = a.substr(eq + 1);
            has_value = true;
        }
        const option<S>* o = nullptr;
        for (auto& x : t.opts)
            if (x.flag == name) o = &x;
        if (!o) {
            std::string h = hint(t, name, true);
            if (h.empty() && name.starts_with("--") &&
                other_has_key(lower(std::string(name.substr(2)))))
                h = std::string(" (a flag of ") + std::string(other_program) + ")";
            st.errs.add("unknown flag " + std::string(name) + h + "; see --help");
            continue;
        }
        if (!has_value) {
            if (o->kind == value_kind::boolean) {
                value = "true";
            } else if (i + 1 < argc) {
                value = argv[++i];
            } else {
                st.errs.add(std::string(o->key) + ": " + std::string(name) + " needs a value (" +
                            std::string(o->metavar) + ")");
                continue;
            }
        }
        flags.push_back({o, {std::string(value), std::string(name)}});
    }

    // `ferry connect URL`: the one positional argument is the relay, with a flag's precedence.
    if (!positional_key.empty() && !positional.empty()) {
        const option<S>* o = t.by_key(positional_key);
        for (auto& f : flags)
            if (f.first == o)
                st.errs.add(std::string(o->key) + ": given both as " + f.second.second +
                            " and as an argument");
        flags.push_back({o, {positional.front(), "argument"}});
        positional.erase(positional.begin());
    }

    // The config file: --config, overridden by FERRY_CONFIG like every key.
    const option<S>* cfg = t.by_key("config");
    std::string cfg_path;
    for (auto& f : flags)
        if (f.first == cfg) cfg_path = f.second.first;
    if (const char* e = env("FERRY_CONFIG"); e && *e) cfg_path = e;
    if (!cfg_path.empty()) {
        std::string text, why;
        if (!read_small_file(cfg_path, max_config_bytes, text, why)) {
            st.errs.add("config: cannot read " + cfg_path + ": " + why);
        } else {
            apply_toml(st, text, cfg_path, other_program, other_has_key);
        }
    }

    // Flags: a list key repeated on the command line appends.
    std::vector<bool> seen(t.opts.size());
    for (auto& f : flags) {
        std::size_t idx = t.index(f.first);
        const std::string& fl = f.second.second;
        st.apply_text(*f.first, f.second.first, fl == "argument" ? fl : "flag " + fl, seen[idx]);
        seen[idx] = true;
    }
    // Environment: an empty value counts as unset (templating often renders "" for absent).
    for (auto& o : t.opts) {
        std::string var(o.env);
        const char* e = env(var.c_str());
        if (!e || !*e) continue;
        st.apply_text(o, e, "env " + var, false);
    }
    return true;
}

std::string format_failure(const errors& e) {
    return e.text();
}

template <class S>
std::string to_json(const table<S>& t, const S& s) {
    std::string out = "{";
    bool first = true;
    for (auto& o : t.opts) {
        if (!first) out += ',';
        first = false;
        json_string(o.key, out);
        out += ':';
        if (o.secret) {
            std::string v;
            o.json(s, v);
            json_string(v == "\"\"" ? "" : "<redacted>", out);
        } else {
            o.json(s, out);
        }
    }
    out += '}';
    return out;
}

template <class S>
std::string default_text(const table<S>& t, std::string_view key) {
    const option<S>* o = t.by_key(key);
    if (!o) return "";
    S s{};
    std::string v;
    o->json(s, v);
    return v;
}

template <class S>
std::string help_text(const table<S>& t, std::string_view usage, std::string_view intro,
                      const std::vector<std::string_view>& skip) {
    std::string r(usage);
    r += "\n";
    r += intro;
    r += "\nFlags (each also a TOML key and a FERRY_* variable; FERRY_* overrides flags, flags "
         "override the file):\n";
    for (auto& o : t.opts) {
        if (std::find(skip.begin(), skip.end(), o.key) != skip.end()) continue;
        std::string line = "  " + std::string(o.flag);
        if (o.kind != value_kind::boolean) line += " " + std::string(o.metavar);
        r += line + "\n      " + std::string(o.help);
        std::string def = default_text(t, o.key);
        if (def != "\"\"" && def != "[]" && def != "false" && !o.secret) r += ". Default " + def;
        if (o.kind == value_kind::integer || o.kind == value_kind::duration ||
            o.kind == value_kind::size)
            r += ", range " + o.range;
        r += ". [" + std::string(o.env) + ", key " + std::string(o.key) + "]\n";
    }
    r += "  --help\n      This text.\n";
    return r;
}

// ---- cross-key checks ---------------------------------------------------------------------------

template <class S>
std::string from_of(const parse_state<S>& st, std::string_view key) {
    const option<S>* o = st.t.by_key(key);
    std::string w = o ? st.where[st.t.index(o)] : "";
    return w.empty() ? "default" : w;
}

// "~" and "~/..." in FILE/DIR keys become $HOME/...: shells expand flags, but not TOML values
// or environment variables.
template <class S>
void expand_home(parse_state<S>& st, const env_fn& env) {
    const char* home = env("HOME");
    if (!home || *home != '/') return;
    for (auto& o : st.t.opts) {
        if (!o.path) continue;
        std::string& v = st.s.*o.path;
        if (v == "~" || v.starts_with("~/")) v = std::string(home) + v.substr(1);
    }
}

void validate_relay(parse_state<relay_settings>& st, const env_fn& env) {
    expand_home(st, env);
    auto& s = st.s;
    if (s.no_tls && (!s.tls_cert.empty() || !s.tls_key.empty()))
        st.errs.add("no_tls: cannot be combined with tls_cert/tls_key (no_tls from " +
                    from_of(st, "no_tls") + ")");
    if (s.tls_cert.empty() != s.tls_key.empty())
        st.errs.add(std::string(s.tls_cert.empty() ? "tls_cert" : "tls_key") +
                    ": required together with " + (s.tls_cert.empty() ? "tls_key" : "tls_cert") +
                    " (from " + from_of(st, s.tls_cert.empty() ? "tls_key" : "tls_cert") + ")");
    if (s.pong_timeout_ms <= s.ping_interval_ms)
        st.errs.add("pong_timeout_ms: must be greater than ping_interval_ms (" +
                    std::to_string(s.ping_interval_ms) + "), got " +
                    std::to_string(s.pong_timeout_ms) + " (from " + from_of(st, "pong_timeout_ms") +
                    ")");
    if (s.jwt_algorithms.empty())
        st.errs.add("jwt_algorithms: at least one of HS256, RS256, ES256, EdDSA (from " +
                    from_of(st, "jwt_algorithms") + ")");
    const std::pair<const char*, std::string*> listeners[] = {
        {"listen", &s.listen}, {"admin_listen", &s.admin_listen}, {"ssh_listen", &s.ssh_listen}};
    for (std::size_t i = 0; i < 3; ++i)
        for (std::size_t j = i + 1; j < 3; ++j) {
            auto& a = *listeners[i].second;
            auto& b = *listeners[j].second;
            if (!a.empty() && a == b && !a.ends_with(":0"))
                st.errs.add(std::string(listeners[j].first) + ": same address as " +
                            listeners[i].first + " (" + a + ")");
        }
}

void validate_agent(parse_state<agent_settings>& st, mode m, const env_fn& env) {
    expand_home(st, env);
    auto& s = st.s;
    // Profile defaults for every timing key no source set.
    const profile_values& p = profile_table[std::size_t(s.profile)];
    std::uint32_t agent_settings::*members[] = {
        &agent_settings::ping_interval_ms,   &agent_settings::pong_timeout_ms,
        &agent_settings::connect_timeout_ms, &agent_settings::handshake_timeout_ms,
        &agent_settings::backoff_initial_ms, &agent_settings::backoff_max_ms};
    const std::uint32_t values[] = {p.ping,       p.pong, p.connect, p.handshake, p.backoff_initial,
                                    p.backoff_max};
    for (std::size_t i = 0; i < std::size(members); ++i)
        if (st.where[st.t.index(st.t.by_key(profile_keys[i]))].empty()) s.*members[i] = values[i];

    if (s.relay.empty())
        st.errs.add(m == mode::connect
                        ? "relay: required (ferry connect wss://HOST:PORT, --relay or FERRY_RELAY)"
                        : "relay: required (--relay wss://HOST:PORT, key relay or FERRY_RELAY)");
    else {
        std::string why;
        auto u = parse_relay_url(s.relay, why);
        if (u) s.relay_target = *u;
    }
    int sources =
        int(!s.token.empty()) + int(!s.token_file.empty()) + int(!s.token_command.empty());
    if (sources == 0)
        st.errs.add(
            "token: required: one of --token-file FILE, --token-command CMD, --token JWT (or "
            "FERRY_TOKEN_FILE, "
            "FERRY_TOKEN_COMMAND, FERRY_TOKEN)");
    else if (sources > 1) {
        std::string which;
        for (auto k : {"token", "token_file", "token_command"}) {
            const option<agent_settings>* o = st.t.by_key(k);
            const std::string& w = st.where[st.t.index(o)];
            if (w.empty()) continue;
            if (!which.empty()) which += ", ";
            which += std::string(k) + " from " + w;
        }
        st.errs.add("token: set only one of token, token_file, token_command (" + which + ")");
    }
    if (m == mode::agent && s.tunnels.empty())
        st.errs.add("tunnels: at least one --tunnel NAME=HOST:PORT (key tunnels, FERRY_TUNNELS)");
    if (s.pong_timeout_ms <= s.ping_interval_ms)
        st.errs.add("pong_timeout_ms: must be greater than ping_interval_ms (" +
                    std::to_string(s.ping_interval_ms) + "), got " +
                    std::to_string(s.pong_timeout_ms) + " (from " + from_of(st, "pong_timeout_ms") +
                    ")");
    if (s.backoff_max_ms < s.backoff_initial_ms)
        st.errs.add("backoff_max_ms: must be at least backoff_initial_ms (" +
                    std::to_string(s.backoff_initial_ms) + "), got " +
                    std::to_string(s.backoff_max_ms) + " (from " + from_of(st, "backoff_max_ms") +
                    ")");
    if (m == mode::connect) {
        for (std::string_view k : connect_ignores) {
            const option<agent_settings>* o = st.t.by_key(k);
            const std::string& w = st.where[st.t.index(o)];
            if (w.empty()) continue;
            const std::string what = std::string(k) + ": ferry connect does not use it (a setting of ferry agent; "
                                     "the SSH client behind ProxyCommand checks host keys and keeps the session alive)";
            if (w.rfind("flag ", 0) == 0) st.errs.add(what + " (from " + w + ")");
            else s.warnings.push_back(what + "; ignored (from " + w + ")");
        }
    }
    if (s.known_hosts.empty()) s.known_hosts = default_known_hosts(env);
}

bool relay_has_key(std::string_view k) {
    for (auto& o : relay_table().opts)
        if (o.key == k || o.flag.substr(2) == k) return true;
    return false;
}
bool agent_has_key(std::string_view k) {
    for (auto& o : agent_table().opts)
        if (o.key == k || o.flag.substr(2) == k) return true;
    return false;
}

result<agent_settings> parse_agent_common(int argc, char** argv, const env_fn& env,
                                          std::string& message, mode m) {
    parse_state<agent_settings> st(agent_table());
    std::string help;
    std::vector<std::string> positional;
    if (!parse_sources(st, argc, argv, env, m, help, "ferryd", relay_has_key, positional,
                       m == mode::connect ? "relay" : "")) {
        message = help;
        return fail(errc::closed, "help");
    }
    for (auto& p : positional) st.errs.add("unexpected argument " + quoted(p) + "; see --help");
    if (st.errs.lines.empty()) validate_agent(st, m, env);
    if (!st.errs.lines.empty()) {
        message = format_failure(st.errs);
        return fail(errc::invalid_argument, "configuration");
    }
    return std::move(st.s);
}

}  // namespace

// ---- public -------------------------------------------------------------------------------------

const env_fn& process_env() {
    static const env_fn f = [](const char* n) -> const char* { return std::getenv(n); };
    return f;
}

std::string_view name(agent_profile p) noexcept {
    switch (p) {
        case agent_profile::stable:
            return "stable";
        case agent_profile::unstable:
            return "unstable";
        case agent_profile::low_bandwidth:
            return "low-bandwidth";
    }
    return "stable";
}

bool valid_tunnel_name(std::string_view s) noexcept {
    if (s.empty() || s.size() > 63 || s.front() == '-' || s.back() == '-') return false;
    for (char c : s)
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) return false;
    return true;
}

result<relay_url> parse_relay_url(std::string_view text, std::string& why) {
    relay_url u;
    std::string l = lower(text.substr(0, std::min<std::size_t>(text.size(), 6)));
    std::string_view rest;
    if (l.starts_with("wss://")) {
        u.tls = true, u.port = 443, rest = text.substr(6);
    } else if (l.starts_with("ws://")) {
        u.tls = false, u.port = 80, rest = text.substr(5);
    } else {
        why = l.starts_with("https:") || l.starts_with("http:")
                  ? "use wss:// for an https relay, ws:// for http"
                  : "scheme must be ws:// or wss://";
        return fail(errc::invalid_argument, "relay url");
    }
    auto slash = rest.find('/');
    std::string_view auth = rest.substr(0, slash);
    std::string_view path = slash == rest.npos ? std::string_view() : rest.substr(slash);
    if (auth.find('@') != auth.npos) {
        why = "credentials in the URL are not supported (use a token)";
        return fail(errc::invalid_argument, "relay url");
    }
    if (path.find_first_of("?# ") != path.npos || rest.find_first_of("?#") < slash) {
        why = "no query or fragment allowed";
        return fail(errc::invalid_argument, "relay url");
    }
    std::string host;
    std::uint16_t port = u.port;
    if (!auth.empty() && auth.front() == '[') {
        if (!split_host_port(auth, host, port)) {
            auto close = auth.find(']');
            std::string h(auth.substr(1, close == auth.npos ? auth.npos : close - 1));
            unsigned char buf[16];
            if (close != auth.size() - 1 || inet_pton(AF_INET6, h.c_str(), buf) != 1) {
                why = "bad IPv6 host or port";
                return fail(errc::invalid_argument, "relay url");
            }
            host = h;
        }
    } else if (auth.find(':') != auth.npos) {
        if (!split_host_port(auth, host, port)) {
            why = "bad host or port (1..65535)";
            return fail(errc::invalid_argument, "relay url");
        }
    } else {
        if (!is_ip_literal(auth) && !valid_hostname(auth)) {
            why = "bad host name";
            return fail(errc::invalid_argument, "relay url");
        }
        host = std::string(auth);
    }
    u.host = lower(host);
    u.port = port;
    if (!path.empty() && path != "/") u.path = std::string(path);
    return u;
}

std::string default_known_hosts(const env_fn& env) {
    if (const char* x = env("XDG_CONFIG_HOME"); x && *x == '/')
        return std::string(x) + "/ferry/known_hosts";
    if (const char* h = env("HOME"); h && *h == '/')
        return std::string(h) + "/.config/ferry/known_hosts";
    return "./ferry-data/known_hosts";
}

result<relay_settings> parse_relay_args(int argc, char** argv, const env_fn& env,
                                        std::string& message) {
    parse_state<relay_settings> st(relay_table());
    std::string help;
    std::vector<std::string> positional;
    if (!parse_sources(st, argc, argv, env, mode::relay, help, "ferry agent", agent_has_key,
                       positional)) {
        message = help;
        return fail(errc::closed, "help");
    }
    for (auto& p : positional) st.errs.add("unexpected argument " + quoted(p) + "; see --help");
    if (st.errs.lines.empty()) validate_relay(st, env);
    if (!st.errs.lines.empty()) {
        message = format_failure(st.errs);
        return fail(errc::invalid_argument, "configuration");
    }
    return std::move(st.s);
}

result<agent_settings> parse_agent_args(int argc, char** argv, const env_fn& env,
                                        std::string& message) {
    return parse_agent_common(argc, argv, env, message, mode::agent);
}

result<agent_settings> parse_connect_args(int argc, char** argv, const env_fn& env,
                                          std::string& message) {
    return parse_agent_common(argc, argv, env, message, mode::connect);
}

result<relay_settings> parse_relay_toml(std::string_view text, std::string_view origin,
                                        std::string& message) {
    parse_state<relay_settings> st(relay_table());
    apply_toml(st, text, origin, "ferry agent", agent_has_key);
    static const env_fn no_env = [](const char*) -> const char* { return nullptr; };
    if (st.errs.lines.empty()) validate_relay(st, no_env);
    if (!st.errs.lines.empty()) {
        message = format_failure(st.errs);
        return fail(errc::invalid_argument, "configuration");
    }
    return std::move(st.s);
}

result<agent_settings> parse_agent_toml(std::string_view text, std::string_view origin,
                                        std::string& message) {
    parse_state<agent_settings> st(agent_table());
    apply_toml(st, text, origin, "ferryd", relay_has_key);
    static const env_fn no_env = [](const char*) -> const char* { return nullptr; };
    if (st.errs.lines.empty()) validate_agent(st, mode::agent, no_env);
    if (!st.errs.lines.empty()) {
        message = format_failure(st.errs);
        return fail(errc::invalid_argument, "configuration");
    }
    return std::move(st.s);
}

int report_parse_failure(const error& e, const std::string& message, std::string_view program) {
    if (is_help(e)) {
        std::fputs(message.c_str(), stdout);
        return 0;
    }
    std::string m = message.empty() ? std::string("invalid configuration\n") : message;
    std::size_t start = 0;
    while (start < m.size()) {
        auto nl = m.find('\n', start);
        std::string line = m.substr(start, nl == m.npos ? m.npos : nl - start);
        std::fprintf(stderr, "%.*s: %s\n", int(program.size()), program.data(), line.c_str());
        if (nl == m.npos) break;
        start = nl + 1;
    }
    return 2;
}

std::string relay_help() {
    return help_text(relay_table(), "usage: ferryd [--config FILE] [flags]",
                     "The ferry relay: agents dial in over WebSocket + SSH, consumers reach their "
                     "tunnels over HTTP.\n",
                     {});
}

std::string agent_help(bool connect) {
    if (connect)
        return help_text(agent_table(),
                         "usage: ferry connect [wss://HOST:PORT] [--token-file FILE] [flags]",
                         "Bridges stdin/stdout to the relay's WebSocket, for ssh -o "
                         "ProxyCommand='ferry connect ...'.\n",
                         std::vector<std::string_view>(std::begin(connect_ignores), std::end(connect_ignores)));
    return help_text(agent_table(),
                     "usage: ferry agent --relay wss://HOST:PORT --token-file FILE --tunnel "
                     "NAME=HOST:PORT [flags]",
                     "Exposes local services through a ferry relay.\n", {});
}

std::string redacted_json(const relay_settings& s) {
    return to_json(relay_table(), s);
}
std::string redacted_json(const agent_settings& s) {
    return to_json(agent_table(), s);
}

std::vector<std::string_view> changed_keys(const relay_settings& a, const relay_settings& b) {
    std::vector<std::string_view> r;
    for (auto& o : relay_table().opts) {
        std::string x, y;
        o.json(a, x);
        o.json(b, y);
        if (x != y) r.push_back(o.key);
    }
    return r;
}

std::span<const key_info> relay_keys() {
    return relay_table().infos;
}
std::span<const key_info> agent_keys() {
    return agent_table().infos;
}
std::string relay_default_text(std::string_view key) {
    return default_text(relay_table(), key);
}
std::string agent_default_text(std::string_view key) {
    return default_text(agent_table(), key);
}

std::string reference_markdown() {
    auto cell = [](std::string_view s) {
        std::string r;
        for (char c : s) {
            if (c == '|')
                r += "\\|";
            else
                r += c;
        }
        return r;
    };
    auto section = [&](std::string_view title, std::span<const key_info> keys,
                       std::string (*def)(std::string_view)) {
        std::string r = "### " + std::string(title) + "\n\n";
        r += "| TOML key | flag | environment | default | range | live | meaning |\n";
        r += "|---|---|---|---|---|---|---|\n";
        for (auto& k : keys) {
            std::string d = k.secret ? "" : def(k.key);
            r += "| `" + std::string(k.key) + "` | `" + std::string(k.flag) + "` | `" +
                 std::string(k.env) + "` | " + (d.empty() ? "" : "`" + cell(d) + "`") + " | " +
                 cell(k.range) + " | " + (k.live ? "yes" : "no") + " | " + cell(k.help) + " |\n";
        }
        return r + "\n";
    };
    return section("ferryd", relay_keys(), relay_default_text) +
           section("ferry agent / ferry connect", agent_keys(), agent_default_text);
}

}  // namespace ferry::control
