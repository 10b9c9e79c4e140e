// `ferry`: the client-side binary. Subcommands:
//
//   ferry agent ...      expose local services through a relay (agent_cmd.hh)
//   ferry connect URL    stdio <-> relay WebSocket bridge for ssh ProxyCommand (agent_cmd.hh)
//   ferry token ...      mint / inspect development HS256 tokens
//   ferry version
//   ferry help [config-reference]
//
// Flag parsing and wiring only (src/cmd); minting and verification are src/proto/jwt's.
#include <sys/stat.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <iostream>
#include <string>
#include <string_view>
#include <vector>

#include "cmd/agent_cmd.hh"
#include "control/config.hh"
#include "control/keys.hh"
#include "proto/jwt/base64url.hh"
#include "proto/jwt/jwt.hh"
#include "proto/ssh/crypto.hh"

#ifndef FERRY_VERSION
#define FERRY_VERSION "unknown"
#endif

namespace {

using namespace ferry;

constexpr const char* usage_text =
    "usage: ferry <command> [flags]\n"
    "\n"
    "Commands:\n"
    "  agent     expose local services through a ferry relay (ferry agent --help)\n"
    "  connect   bridge stdin/stdout to a relay's WebSocket, for ssh -o ProxyCommand (ferry "
    "connect --help)\n"
    "  token     mint or inspect development HS256 tokens (ferry token --help)\n"
    "  version   print the version\n"
    "  help      this text; `ferry help config-reference` prints every configuration key "
    "(markdown)\n";

constexpr const char* token_usage =
    "usage: ferry token --secret-file FILE --sub SUBJECT [--agent] [--ttl DURATION] [--tunnels A,B]\n"
    "                   [--aud AUD] [--iss ISS] [--kid KID] [--scope SCOPE]\n"
    "       ferry token inspect TOKEN|- [--secret-file FILE] [--aud AUD] [--iss ISS] [--leeway "
    "SECONDS]\n"
    "\n"
    "Mints an HS256 token with the secret in FILE (raw bytes, one trailing newline ignored, at "
    "least\n"
    "32 bytes; the relay's --jwt-secret-file) and prints it. Development only: production tokens "
    "come\n"
    "from an identity provider.\n"
    "  --sub SUBJECT      the token's owner (tunnels it registers belong to it)\n"
    "  --agent            an agent token: scope \"ferry:agent\", without which the relay refuses\n"
    "                     to let a token register tunnels (consumer tokens leave it out)\n"
    "  --scope SCOPE      the scope claim as given (space-separated; --agent adds ferry:agent)\n"
    "  --ttl DURATION     lifetime: 3600, 90s, 30m, 12h, 7d (default 1h; at most 10 years)\n"
    "  --tunnels A,B      ferry_tunnels claim: other tunnels the bearer may use (repeatable)\n"
    "  --aud AUD, --iss ISS, --kid KID   optional aud / iss claims and header kid\n"
    "\n"
    "inspect prints the header and claims of TOKEN (\"-\" reads it from stdin). Without "
    "--secret-file\n"
    "nothing is verified; with it the signature and times are checked (iss/aud too when given) "
    "and\n"
    "the verdict is printed: valid (exit 0), expired or invalid (exit 1).\n";

int usage_error(const std::string& msg, const char*) {
    std::fprintf(stderr, "ferry token: %s (see ferry token --help)\n", msg.c_str());
    return 2;
}

// "3600", "90s", "30m", "12h", "7d" -> seconds; -1 when malformed.
std::int64_t parse_ttl(std::string_view t) {
    if (t.empty()) return -1;
    std::int64_t v = 0;
    std::size_t i = 0;
    for (; i < t.size() && t[i] >= '0' && t[i] <= '9'; ++i) {
        if (v > 1'000'000'000'000) return -1;
        v = v * 10 + (t[i] - '0');
    }
    if (i == 0) return -1;
    std::string_view unit = t.substr(i);
    std::int64_t mul = unit.empty() || unit == "s" ? 1
                       : unit == "m"               ? 60
                       : unit == "h"               ? 3600
                       : unit == "d"               ? 86400
                                                   : -1;
    if (mul < 0 || v > INT64_MAX / mul) return -1;
    return v * mul;
}

std::string utc(std::int64_t t) {
    std::time_t tt = static_cast<std::time_t>(t);
    std::tm tm{};
    if (!gmtime_r(&tt, &tm)) return std::to_string(t);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

std::string span_text(std::int64_t s) {
    if (s < 0) s = -s;
    std::string r;
    if (s >= 86400) r += std::to_string(s / 86400) + "d", s %= 86400;
    if (s >= 3600) r += std::to_string(s / 3600) + "h", s %= 3600;
    if (s >= 60) r += std::to_string(s / 60) + "m", s %= 60;
    if (s || r.empty()) r += std::to_string(s) + "s";
    return r;
}

struct flag_reader {
    int argc;
    char** argv;
    int i = 0;
    std::string name, value;
    bool has_inline = false;
    // Splits "--name=value"; true when argv[i] is a flag.
    bool flag() {
        std::string_view a = argv[i];
        if (!a.starts_with("--")) return false;
        auto eq = a.find('=');
        has_inline = eq != a.npos;
        name = std::string(a.substr(0, eq));
        value = has_inline ? std::string(a.substr(eq + 1)) : std::string();
        return true;
    }
    bool take_value() {
        if (has_inline) return true;
        if (i + 1 >= argc) return false;
        value = argv[++i];
        return true;
    }
};

int token_inspect(int argc, char** argv) {
    std::string token, secret_file;
    jwt::verify_options vo;
    bool aud_given = false;
    flag_reader f{argc, argv};
    for (f.i = 0; f.i < argc; ++f.i) {
        if (!f.flag()) {
            if (!token.empty()) return usage_error("one token at a time", token_usage);
            token = argv[f.i];
            continue;
        }
        if (f.name == "--help" || f.name == "-h") {
            std::fputs(token_usage, stdout);
            return 0;
        }
        if (f.name != "--secret-file" && f.name != "--aud" && f.name != "--iss" &&
            f.name != "--leeway")
            return usage_error("unknown flag " + f.name, token_usage);
        if (!f.take_value()) return usage_error(f.name + " needs a value", token_usage);
        if (f.name == "--secret-file")
            secret_file = f.value;
        else if (f.name == "--aud")
            vo.audiences.push_back(f.value), aud_given = true;
        else if (f.name == "--iss")
            vo.issuer = f.value;
        else {
            std::int64_t l = parse_ttl(f.value);
            if (l < 0 || l > 3600) return usage_error("--leeway: 0..3600 seconds", token_usage);
            vo.leeway = l;
        }
    }
    if (token.empty())
        return usage_error("inspect needs a TOKEN (or - to read it from stdin)", token_usage);
    if (token == "-") {
        std::getline(std::cin, token);
        while (!token.empty() && (token.back() == '\r' || token.back() == ' ')) token.pop_back();
    }
    auto c = jwt::inspect(token);
    if (!c) {
        std::fprintf(stderr, "ferry: not a readable JWT: %s (%s)\n", to_string(c.code()),
                     c.err().detail);
        return 1;
    }
    // inspect() accepted three strict base64url parts with JSON inside: print them as sent.
    auto dot1 = token.find('.');
    auto dot2 = token.find('.', dot1 + 1);
    auto header = jwt::base64url::decode(std::string_view(token).substr(0, dot1));
    auto payload =
        jwt::base64url::decode(std::string_view(token).substr(dot1 + 1, dot2 - dot1 - 1));
    std::int64_t now = std::time(nullptr);
    std::printf("header:     %s\n", header ? header->c_str() : "?");
    std::printf("claims:     %s\n", payload ? payload->c_str() : "?");
    std::printf("sub:        %s\n", c->sub.empty() ? "(missing)" : c->sub.c_str());
    if (c->iss) std::printf("iss:        %s\n", c->iss->c_str());
    if (!c->aud.empty()) {
        std::string a;
        for (auto& x : c->aud) a += (a.empty() ? "" : ", ") + x;
        std::printf("aud:        %s\n", a.c_str());
    }
    if (c->iat) std::printf("issued:     %s\n", utc(*c->iat).c_str());
    if (c->nbf) std::printf("not before: %s\n", utc(*c->nbf).c_str());
    if (c->exp)
        std::printf("expires:    %s (%s %s)\n", utc(*c->exp).c_str(),
                    *c->exp > now ? "in" : "expired",
                    (span_text(*c->exp - now) + (*c->exp > now ? "" : " ago")).c_str());
    else
        std::printf("expires:    never (no exp: the relay refuses such tokens)\n");
    if (!c->tunnels.empty()) {
        std::string t;
        for (auto& x : c->tunnels) t += (t.empty() ? "" : ", ") + x;
        std::printf("tunnels:    %s\n", t.c_str());
    }
    if (!c->scope.empty()) std::printf("scope:      %s\n", c->scope.c_str());
    std::printf("agent:      %s\n", c->has_scope("ferry:agent")
                                       ? "yes (scope ferry:agent, what relays ask of agents by default)"
                                       : "no (no ferry:agent scope: relays refuse it for agents by default)");
    if (secret_file.empty()) {
        std::printf("signature:  not checked (give --secret-file to verify)\n");
        return 0;
    }
    std::string message;
    auto secret = control::read_hs256_secret(secret_file, message);
    if (!secret) {
        std::fprintf(stderr, "ferry: --secret-file %s\n", message.c_str());
        return 1;
    }
    jwt::key_set_builder b;
    std::string why;
    auto st = b.add_hs256_secret(bytes(secret->data(), secret->size()), {}, &why);
    ssh::wipe(mut_bytes(secret->data(), secret->size()));
    if (!st) {
        std::fprintf(stderr, "ferry: --secret-file %s: %s\n", secret_file.c_str(), why.c_str());
        return 1;
    }
    // Without --aud, the token's own audiences are accepted: only the signature and times count.
    if (!aud_given) vo.audiences = c->aud;
    auto ks = b.build();
    auto v = jwt::verify(token, *ks, vo, now);
    if (v) {
        std::printf("verdict:    valid\n");
        return 0;
    }
    if (jwt::is_expired(v.code()))
        std::printf("verdict:    expired\n");
    else
        std::printf("verdict:    invalid (%s%s%s)\n", to_string(v.code()),
                    *v.err().detail ? ": " : "", v.err().detail);
    return 1;
}

int token_main(int argc, char** argv) {
    // argv[0] = "token"
    if (argc >= 2 && std::string_view(argv[1]) == "inspect")
        return token_inspect(argc - 2, argv + 2);
    std::string secret_file;
    jwt::mint_request req;
    req.ttl = 3600;
    bool agent = false;
    flag_reader f{argc, argv};
    for (f.i = 1; f.i < argc; ++f.i) {
        if (!f.flag())
            return usage_error(std::string("unexpected argument ") + argv[f.i], token_usage);
        if (f.name == "--help" || f.name == "-h") {
            std::fputs(token_usage, stdout);
            return 0;
        }
        if (f.name == "--agent") {
            agent = true;
            continue;
        }
        static const char* known[] = {"--secret-file", "--sub", "--ttl",   "--tunnels",
                                      "--aud",         "--iss", "--kid",   "--scope"};
        bool ok = false;
        for (auto k : known) ok |= f.name == k;
        if (!ok) return usage_error("unknown flag " + f.name, token_usage);
        if (!f.take_value()) return usage_error(f.name + " needs a value", token_usage);
        if (f.name == "--secret-file")
            secret_file = f.value;
        else if (f.name == "--sub")
            req.sub = f.value;
        else if (f.name == "--aud")
            req.aud = f.value;
        else if (f.name == "--iss")
            req.iss = f.value;
        else if (f.name == "--kid")
            req.kid = f.value;
        else if (f.name == "--scope")
            req.scope = f.value;
        else if (f.name == "--ttl") {
            req.ttl = parse_ttl(f.value);
            if (req.ttl < 1 || req.ttl > 10ll * 366 * 86400)
                return usage_error(
                    "--ttl: 1s..10 years (3600, 90s, 30m, 12h, 7d), got \"" + f.value + "\"",
                    token_usage);
        } else {
            std::string_view list = f.value;
            while (!list.empty()) {
                auto comma = list.find(',');
                std::string_view name = list.substr(0, comma);
                if (!control::valid_tunnel_name(name))
                    return usage_error(
                        "--tunnels: \"" + std::string(name) +
                            "\" is not a tunnel name (1-63 of [a-z0-9-], no '-' at either end)",
                        token_usage);
                req.tunnels.emplace_back(name);
                if (comma == std::string_view::npos) break;
                list.remove_prefix(comma + 1);
                if (list.empty()) return usage_error("--tunnels: empty name", token_usage);
            }
        }
    }
    if (secret_file.empty()) return usage_error("--secret-file is required", token_usage);
    if (req.sub.empty()) return usage_error("--sub is required", token_usage);
    if (agent) {
        jwt::claims scopes;
        scopes.scope = req.scope;
        if (!scopes.has_scope("ferry:agent")) req.scope = req.scope.empty() ? "ferry:agent" : req.scope + " ferry:agent";
    }
    std::string message;
    auto secret = control::read_hs256_secret(secret_file, message);
    if (!secret) {
        std::fprintf(stderr, "ferry: --secret-file %s\n", message.c_str());
        return 1;
    }
    auto tok = jwt::mint_hs256(bytes(secret->data(), secret->size()), req, std::time(nullptr));
    ssh::wipe(mut_bytes(secret->data(), secret->size()));
    if (!tok) {
        std::fprintf(stderr, "ferry: cannot mint: %s (%s)\n", to_string(tok.code()),
                     tok.err().detail);
        return 1;
    }
    std::printf("%s\n", tok->c_str());
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 2) {
        std::fputs(usage_text, stderr);
        return 2;
    }
    std::string_view cmd = argv[1];
    if (cmd == "agent") return agent_main(argc - 1, argv + 1);
    if (cmd == "connect") return connect_main(argc - 1, argv + 1);
    if (cmd == "token") return token_main(argc - 1, argv + 1);
    if (cmd == "version" || cmd == "--version") {
        std::printf("ferry %s\n", FERRY_VERSION);
        return 0;
    }
    if (cmd == "help" || cmd == "--help" || cmd == "-h") {
        if (argc >= 3 && std::string_view(argv[2]) == "config-reference") {
            std::fputs(control::reference_markdown().c_str(), stdout);
            return 0;
        }
        std::fputs(usage_text, stdout);
        return 0;
    }
    std::fprintf(stderr, "ferry: unknown command \"%s\"\n%s", argv[1], usage_text);
    return 2;
}
