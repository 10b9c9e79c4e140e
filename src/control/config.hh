#pragma once
// Settings of `ferryd` (relay_settings) and `ferry agent` / `ferry connect` (agent_settings):
// plain structs with the documented defaults, filled from three sources (SPEC §4, R9):
//
//     defaults  <  TOML file (--config FILE)  <  command-line flags  <  FERRY_* environment
//
// Every key is described once, in a table (config.cc) that names its TOML key, its flag, its
// environment variable, its kind, its range and its validator; the file reader, the flag parser,
// the environment reader, `--help`, redacted_json() and docs/configuration.md all walk that same
// table, so the sources cannot drift apart (tests/control/config_doc_test.cc fails when the doc
// misses a key).
//
// Rules shared by every source:
//   - unknown keys, flags and config-file tables are errors, with a "did you mean" hint;
//   - integers are decimal; durations (`*_ms`, `*_s` keys) also take a unit ("30s", "500ms",
//     "2m", "1h"), sizes also take "KiB"/"MiB"/"GiB"; every number is range-checked;
//   - a list (public_tunnels, tunnels, jwt_audience, ...) given by a higher source replaces the
//     lower source's list; repeating a flag appends within the command line;
//   - error messages name the key, the allowed range and where the value came from:
//     "shards: 0..256, got 999 (from env FERRY_SHARDS)".
//
// Start-up code (control plane): allocates freely, may throw internally (toml++), but every
// public function reports failure as a `result` plus a human-readable message.
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "proto/base/result.hh"

namespace ferry::control {

// getenv-like: the value of `name`, or nullptr when it is not set. Injected so tests control
// the environment.
using env_fn = std::function<const char*(const char* name)>;
// The process environment (::getenv).
const env_fn& process_env();

// ---- relay (ferryd) -----------------------------------------------------------------------------

struct relay_settings {
    std::string config_file;  // the TOML file read ("" if none)

    // Listeners ("HOST:PORT" with a numeric host, as reactor::address::parse takes it).
    std::string listen = "0.0.0.0:8443";          // public: agents (/tunnel) and consumers (/t/...)
    std::string admin_listen = "127.0.0.1:9090";  // admin API and metrics; "" = off
    std::string ssh_listen;                       // optional raw SSH port for agents; "" = off

    // TLS on the public listener.
    std::string tls_cert, tls_key;        // PEM paths; both or neither
    bool no_tls = false;                  // plain TCP (development, or TLS ends upstream)
    std::string tls_min_version = "1.3";  // "1.3" or "1.2"

    // JWT (SPEC R4).
    std::string jwt_secret_file;            // HS256 secret file (>= 32 bytes)
    std::string jwks_file;                  // JWK set file (RS256, ES256, EdDSA, HS256 oct)
    std::string jwks_url;                   // JWK set URL (https), fetched by the control plane
    std::string jwt_issuer;                 // required `iss`; "" = not checked
    std::vector<std::string> jwt_audience;  // accepted `aud` values; empty: tokens with aud fail
    std::uint32_t jwt_leeway_s = 60;        // clock skew tolerated
    std::vector<std::string> jwt_algorithms{"HS256", "RS256", "ES256", "EdDSA"};  // allow-list
    std::string admin_token_file;  // bearer token for the admin API; "" = API off

    // Process and storage.
    std::uint32_t shards = 0;               // 0 = CPUs available to the process
    std::string data_dir = "./ferry-data";  // host key, generated dev material
    std::string host_key_file;              // "" = <data_dir>/ssh_host_ed25519_key (created)
    std::string base_domain;                // host routing <tunnel>.<base_domain>; "" = off

    // Tunnels and limits.
    std::uint32_t lease_s = 60;  // a dropped owner keeps its names this long
    std::uint32_t max_agents_per_user = 3;
    std::uint32_t max_names_per_user = 256;  // online and leased names per token subject
    std::uint32_t max_channels_per_tunnel = 1024;
    std::uint32_t user_rate_limit = 100;  // consumer requests per minute per user; 0 = off
    std::uint32_t queue_max = 100;        // per-tunnel wait queue; 0 = no queue
    std::uint32_t queue_wait_ms = 30000;
    std::uint32_t head_timeout_ms = 10000;         // consumer request head (and TLS handshake)
    std::uint32_t idle_timeout_ms = 120000;        // no byte either way
    std::uint32_t unauthenticated_idle_timeout_ms = 10000;  // ... before any valid token
    std::uint32_t handshake_timeout_ms = 15000;    // agent: upgrade -> SSH authenticated
    std::uint32_t max_connections = 0;             // public listener; 0 = from RLIMIT_NOFILE
    std::uint32_t max_connections_per_ip = 512;    // 0 = off
    std::uint32_t max_pipelined_requests = 16;     // answers queued unread per connection
    std::uint32_t first_byte_timeout_ms = 300000;  // request sent -> first response byte (LLMs)
    std::uint32_t max_head_bytes = 16384;
    std::uint32_t max_headers = 100;
    std::uint64_t max_body_bytes = 0;  // 0 = unlimited
    std::uint32_t ws_max_frame = 1u << 20;
    std::uint32_t ping_interval_ms = 30000;  // WebSocket ping to agents
    std::uint32_t pong_timeout_ms = 45000;   // agent declared dead this long after its last pong
    std::uint32_t drain_timeout_ms = 30000;  // SPEC R8

    std::string log_level = "info";           // error|warn|info|debug|trace
    std::vector<std::string> public_tunnels;  // served without a consumer token
    std::vector<std::string> trusted_proxies;  // CIDRs whose X-Forwarded-For/Forwarded are kept
    std::string agent_scope = "ferry:agent";   // the scope an agent token must carry
};

// ---- agent (ferry agent, ferry connect) -------------------------------------------------------

// The relay URL, split: ws[s]://HOST[:PORT][/PATH].
struct relay_url {
    bool tls = true;               // wss://
    std::string host;              // without brackets for IPv6 literals
    std::uint16_t port = 443;      // default 443 for wss, 80 for ws
    std::string path = "/tunnel";  // default /tunnel
};
// Parses a relay URL. On failure `why` says what is wrong (no key name).
result<relay_url> parse_relay_url(std::string_view text, std::string& why);

// One `--tunnel NAME=HOST:PORT`: requests for NAME go to HOST:PORT next to the agent.
struct tunnel_target {
    std::string name;        // DNS label: 1..63 of [a-z0-9-], no leading/trailing '-'
    std::string host;        // host name or IP literal (IPv6 without brackets)
    std::uint16_t port = 0;  // 1..65535
};

// Timing presets (`--profile`). Keys set explicitly in any source win over the profile.
//                 ping   pong   connect handshake backoff first..cap
//   stable         30 s   45 s   10 s    15 s      2 s .. 60 s    (default; SPEC R1, R6)
//   unstable       10 s   20 s    5 s    10 s      1 s .. 15 s    (flaky Wi-Fi, mobile: notice
//                                                                  loss fast, come back fast)
//   low-bandwidth  60 s  120 s   30 s    60 s      5 s .. 120 s   (satellite, metered: fewer
//                                                                  pings, patient handshakes)
enum class agent_profile : std::uint8_t { stable, unstable, low_bandwidth };
std::string_view name(agent_profile p) noexcept;

struct agent_settings {
    std::string config_file;

    std::string relay;       // ws[s]://HOST[:PORT][/PATH]; required
    relay_url relay_target;  // `relay`, parsed (derived, not a key)

    // Exactly one token source.
    std::string token;          // the JWT itself (secret: never printed)
    std::string token_file;     // a file holding it (re-read on every reconnect)
    std::string token_command;  // a command printing it (run via /bin/sh -c)

    std::vector<tunnel_target> tunnels;  // required for `ferry agent`

    std::string ca_file;                // trusted CAs (PEM); "" = system roots
    bool insecure_skip_verify = false;  // no TLS certificate check at all (development)
    std::string known_hosts;            // TOFU store (OpenSSH format); default below

    std::uint32_t max_attempts = 0;  // connection attempts before giving up; 0 = forever
    agent_profile profile = agent_profile::stable;
    std::uint32_t ping_interval_ms = 30000;
    std::uint32_t pong_timeout_ms = 45000;
    std::uint32_t connect_timeout_ms = 10000;    // TCP connect (relay and local targets)
    std::uint32_t handshake_timeout_ms = 15000;  // TLS + upgrade + SSH up to the forwards
    std::uint32_t backoff_initial_ms = 2000;     // first retry is immediate, then this, x2, +-30%
    std::uint32_t backoff_max_ms = 60000;
    std::uint32_t drain_ms = 10000;  // SIGTERM: in-flight channels get this long
    std::uint32_t upstream_keepalive = 128;   // idle upstream connections kept per tunnel; 0 = off
    std::uint32_t upstream_idle_ms = 4000;    // a kept upstream connection unused this long closes

    std::string log_level = "info";

    // Problems that do not stop the start, for the caller to log (derived, not a key): e.g.
    // agent-only keys that `ferry connect` found in a shared config file or the environment.
    std::vector<std::string> warnings;
};
// Keys of agent_settings that `ferry connect` does not use (it bridges bytes; the SSH client
// checks the host key and keeps the session alive): a flag for one of them is refused, a value
// from the config file or the environment is a warning.
inline constexpr std::string_view connect_ignores[] = {
    "tunnels", "known_hosts", "max_attempts", "ping_interval_ms", "pong_timeout_ms",
    "backoff_initial_ms", "backoff_max_ms", "drain_ms", "upstream_keepalive", "upstream_idle_ms"};
// The default known_hosts path: $XDG_CONFIG_HOME/ferry/known_hosts, else
// $HOME/.config/ferry/known_hosts, else ./ferry-data/known_hosts.
std::string default_known_hosts(const env_fn& env);

// ---- parsing ------------------------------------------------------------------------------------

// Parses argv (argv[0] is the program or subcommand name and is skipped) with the config file
// and environment. On failure the result carries errc::invalid_argument and `message` says why
// (one line per problem). `--help` / `-h` is not a failure of the user's: the result carries
// errc::closed and `message` holds the help text (see is_help()).
result<relay_settings> parse_relay_args(int argc, char** argv, const env_fn& env,
                                        std::string& message);
// `ferry agent`: relay, a token source and at least one tunnel are required.
result<agent_settings> parse_agent_args(int argc, char** argv, const env_fn& env,
                                        std::string& message);
// `ferry connect [URL]`: the same keys; the relay URL may be given as the one positional
// argument, tunnels are not required.
result<agent_settings> parse_connect_args(int argc, char** argv, const env_fn& env,
                                          std::string& message);

// Settings from a TOML text alone (no flags, no environment; for tests, fuzzing, reload checks).
// `origin` names the text in messages ("ferry.toml").
result<relay_settings> parse_relay_toml(std::string_view text, std::string_view origin,
                                        std::string& message);
result<agent_settings> parse_agent_toml(std::string_view text, std::string_view origin,
                                        std::string& message);

// True when a parse_* result failed because --help was asked for (message = help text).
inline bool is_help(const error& e) noexcept {
    return e.code == errc::closed;
}
// For mains: prints `message` (help to stdout, errors to stderr prefixed by `program`) and
// returns the exit code (0 for help, 2 for usage errors).
int report_parse_failure(const error& e, const std::string& message, std::string_view program);

// The help texts (generated from the tables).
std::string relay_help();
std::string agent_help(bool connect = false);

// Effective settings as a JSON object, key -> value, for logs and GET /api/v1/config. Secrets
// (the agent's token) are printed as "<redacted>" when set; paths and file names are printed,
// never file contents.
std::string redacted_json(const relay_settings& s);
std::string redacted_json(const agent_settings& s);

// Keys whose values differ (TOML names), for reload: each is checked against key_info::live.
std::vector<std::string_view> changed_keys(const relay_settings& a, const relay_settings& b);

// ---- the table, read-only (docs, tests, admin API) ---------------------------------------------

enum class value_kind : std::uint8_t {
    string,    // free text or a validated form (range says which)
    integer,   // count
    duration,  // integer in the key's unit (ms or s); text may carry a unit
    size,      // bytes; text may carry KiB/MiB/GiB
    boolean,   // flag without value = true; text: true/false/1/0/yes/no/on/off
    list,      // strings; text: comma-separated
    tunnels,   // NAME=HOST:PORT entries (agent)
};

struct key_info {
    std::string_view key;   // TOML key
    std::string_view flag;  // "--listen"
    std::string_view env;   // "FERRY_LISTEN"
    value_kind kind;
    std::string_view range;  // "0..256", "HOST:PORT", "error|warn|info|debug|trace", ...
    std::string_view help;   // one line
    bool secret = false;     // redacted in output
    bool live = false;       // may change on reload (SIGHUP / admin API) without a restart
};

std::span<const key_info> relay_keys();
std::span<const key_info> agent_keys();
// The default value of a key as redacted_json() would print it (for docs).
std::string relay_default_text(std::string_view key);
std::string agent_default_text(std::string_view key);

// The reference tables of docs/configuration.md (markdown, between its GENERATED markers).
// `ferry help config-reference` prints it.
std::string reference_markdown();

// ---- validators (also used by other code) -----------------------------------------------------

// DNS label rules for tunnel names: 1..63 of [a-z0-9-], not starting or ending with '-'.
bool valid_tunnel_name(std::string_view s) noexcept;

}  // namespace ferry::control
