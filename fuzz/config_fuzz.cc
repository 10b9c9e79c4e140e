// Fuzz target `config`: the control plane's parsers of operator input (src/control): TOML files
// for ferryd and the agent, command lines, relay URLs and OpenSSH host key files. Config input is
// read whole (a file, an argv), so there is no streaming split here; the first byte picks what
// the rest is:
//   mode 0  a ferryd TOML file (parse_relay_toml)
//   mode 1  an agent TOML file (parse_agent_toml)
//   mode 2  a command line: NUL-separated arguments (bit 2: agent, else relay), empty environment;
//           arguments that would read a file (--config) are dropped
//   mode 3  bit 2 clear: the base64 body of an OpenSSH private key (the harness adds the armour
//           lines, so seeds do not look like key files), bit 2 set: a relay URL
// Invariants on success: what the validators promise (names, ranges, pairs) holds, the JSON
// view is an object that never contains the agent's token, and a decoded key re-encodes to a
// text that decodes to the same seed.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "control/config.hh"
#include "control/keys.hh"
#include "proto/ssh/crypto.hh"

using namespace ferry;
using namespace ferry::control;

namespace {

#define CHECK(c)                                                                                \
    do {                                                                                        \
        if (!(c)) {                                                                             \
            std::fprintf(stderr, "config_fuzz invariant failed: %s (line %d)\n", #c, __LINE__); \
            std::abort();                                                                       \
        }                                                                                       \
    } while (0)

void check_relay(const relay_settings& s) {
    CHECK(changed_keys(s, s).empty());
    std::string j = redacted_json(s);
    CHECK(j.size() >= 2 && j.front() == '{' && j.back() == '}');
    for (auto& t : s.public_tunnels) CHECK(valid_tunnel_name(t));
    CHECK(s.pong_timeout_ms > s.ping_interval_ms);
    CHECK(s.tls_cert.empty() == s.tls_key.empty());
    CHECK(!(s.no_tls && !s.tls_cert.empty()));
    CHECK(!s.jwt_algorithms.empty());
    CHECK(s.shards <= FERRY_MAX_SHARDS);
}

void check_agent(const agent_settings& s, bool connect) {
    std::string j = redacted_json(s);
    CHECK(j.size() >= 2 && j.front() == '{' && j.back() == '}');
    if (s.token.size() >= 4) CHECK(j.find(s.token) == std::string::npos);
    CHECK(int(!s.token.empty()) + int(!s.token_file.empty()) + int(!s.token_command.empty()) == 1);
    CHECK(!s.relay_target.host.empty());
    CHECK(!s.relay_target.path.empty() && s.relay_target.path[0] == '/');
    if (!connect) CHECK(!s.tunnels.empty());
    for (auto& t : s.tunnels) {
        CHECK(valid_tunnel_name(t.name));
        CHECK(t.port != 0);
        CHECK(!t.host.empty());
    }
    CHECK(s.pong_timeout_ms > s.ping_interval_ms);
    CHECK(s.backoff_max_ms >= s.backoff_initial_ms);
}

const env_fn& no_env() {
    static const env_fn f = [](const char*) -> const char* { return nullptr; };
    return f;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 1) return 0;
    unsigned sel = data[0];
    std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);
    if (rest.size() > 64 * 1024) return 0;
    std::string msg;
    switch (sel & 3) {
        case 0: {
            auto r = parse_relay_toml(rest, "fuzz.toml", msg);
            if (r)
                check_relay(*r);
            else
                CHECK(!msg.empty());
            break;
        }
        case 1: {
            auto r = parse_agent_toml(rest, "fuzz.toml", msg);
            if (r)
                check_agent(*r, false);
            else
                CHECK(!msg.empty());
            break;
        }
        case 2: {
            std::vector<std::string> args{"prog"};
            std::size_t start = 0;
            while (start <= rest.size() && args.size() < 64) {
                auto nul = rest.find('\0', start);
                std::string a(rest.substr(start, nul == rest.npos ? rest.npos : nul - start));
                if (!a.starts_with("--config")) args.push_back(std::move(a));
                if (nul == rest.npos) break;
                start = nul + 1;
            }
            std::vector<char*> argv;
            for (auto& a : args) argv.push_back(a.data());
            argv.push_back(nullptr);
            int argc = int(args.size());
            if (sel & 4) {
                bool connect = sel & 8;
                auto r = connect ? parse_connect_args(argc, argv.data(), no_env(), msg)
                                 : parse_agent_args(argc, argv.data(), no_env(), msg);
                if (r)
                    check_agent(*r, connect);
                else
                    CHECK(!msg.empty());
            } else {
                auto r = parse_relay_args(argc, argv.data(), no_env(), msg);
                if (r)
                    check_relay(*r);
                else
                    CHECK(!msg.empty());
            }
            break;
        }
        case 3: {
            if (sel & 4) {
                auto u = parse_relay_url(rest, msg);
                if (u) {
                    CHECK(u->port != 0);
                    CHECK(!u->host.empty());
                    CHECK(!u->path.empty() && u->path[0] == '/');
                } else {
                    CHECK(!msg.empty());
                }
                break;
            }
            std::string text = "-----BEGIN OPENSSH PRIVATE KEY-----\n";
            text += rest;
            text += "\n-----END OPENSSH PRIVATE KEY-----\n";
            auto seed = decode_openssh_ed25519(text, msg);
            if (!seed) {
                CHECK(!msg.empty());
                break;
            }
            auto key = ssh::ed25519_private::from_seed(bytes(*seed));
            CHECK(key);
            std::string again = encode_openssh_ed25519(*seed, key->public_key(), 7, "fuzz");
            std::string why;
            auto back = decode_openssh_ed25519(again, why);
            CHECK(back);
            CHECK(*back == *seed);
            break;
        }
    }
    return 0;
}
