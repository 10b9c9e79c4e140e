// src/control/config: defaults, the three sources and their precedence, every validator's
// message, TOML errors with positions, help, redaction.
#include "control/config.hh"

#include <gtest/gtest.h>

#include <string>

#include "helpers.hh"

using namespace ferry;
using namespace ferry::control;
using namespace ferry::control::test;

namespace {

struct relay_run {
    result<relay_settings> r;
    std::string msg;
};

relay_run relay(std::initializer_list<std::string> args, const fake_env& env = {}) {
    argv_builder a(args);
    std::string msg;
    auto r = parse_relay_args(a.argc(), a.argv(), env.fn(), msg);
    return {std::move(r), msg};
}

struct agent_run {
    result<agent_settings> r;
    std::string msg;
};

agent_run agent(std::initializer_list<std::string> args, const fake_env& env = {}) {
    argv_builder a(args);
    std::string msg;
    auto r = parse_agent_args(a.argc(), a.argv(), env.fn(), msg);
    return {std::move(r), msg};
}

agent_run connect(std::initializer_list<std::string> args, const fake_env& env = {}) {
    argv_builder a(args);
    std::string msg;
    auto r = parse_connect_args(a.argc(), a.argv(), env.fn(), msg);
    return {std::move(r), msg};
}

#define EXPECT_MSG(run, text)                                                           \
    do {                                                                                \
        EXPECT_FALSE((run).r);                                                          \
        EXPECT_NE((run).msg.find(text), std::string::npos) << "message: " << (run).msg; \
    } while (0)

}  // namespace

// ---- defaults -----------------------------------------------------------------------------------

TEST(ConfigRelay, DefaultsAreTheDocumentedOnes) {
    auto run = relay({});
    ASSERT_TRUE(run.r) << run.msg;
    const relay_settings& s = *run.r;
    EXPECT_EQ(s.listen, "0.0.0.0:8443");
    EXPECT_EQ(s.admin_listen, "127.0.0.1:9090");
    EXPECT_FALSE(s.no_tls);
    EXPECT_EQ(s.jwt_leeway_s, 60u);
    EXPECT_EQ(s.shards, 0u);
    EXPECT_EQ(s.data_dir, "./ferry-data");
    EXPECT_EQ(s.base_domain, "");
    EXPECT_EQ(s.lease_s, 60u);
    EXPECT_EQ(s.max_agents_per_user, 3u);
    EXPECT_EQ(s.max_channels_per_tunnel, 1024u);
    EXPECT_EQ(s.queue_max, 100u);
    EXPECT_EQ(s.queue_wait_ms, 30000u);
    EXPECT_EQ(s.head_timeout_ms, 10000u);
    EXPECT_EQ(s.idle_timeout_ms, 120000u);
    EXPECT_EQ(s.first_byte_timeout_ms, 300000u);
    EXPECT_EQ(s.max_head_bytes, 16384u);
    EXPECT_EQ(s.max_headers, 100u);
    EXPECT_EQ(s.max_body_bytes, 0u);
    EXPECT_EQ(s.ws_max_frame, 1u << 20);
    EXPECT_EQ(s.ping_interval_ms, 30000u);
    EXPECT_EQ(s.pong_timeout_ms, 45000u);
    EXPECT_EQ(s.log_level, "info");
    EXPECT_TRUE(s.public_tunnels.empty());
    EXPECT_EQ(s.jwt_algorithms.size(), 4u);
}

TEST(ConfigAgent, DefaultsAndRequiredKeys) {
    fake_env env;
    env.vars["HOME"] = "/home/u";
    auto run = agent(
        {"--relay", "wss://relay.example", "--token-file", "/t", "--tunnel", "llm=127.0.0.1:11434"},
        env);
    ASSERT_TRUE(run.r) << run.msg;
    const agent_settings& s = *run.r;
    EXPECT_TRUE(s.relay_target.tls);
    EXPECT_EQ(s.relay_target.host, "relay.example");
    EXPECT_EQ(s.relay_target.port, 443);
    EXPECT_EQ(s.relay_target.path, "/tunnel");
    ASSERT_EQ(s.tunnels.size(), 1u);
    EXPECT_EQ(s.tunnels[0].name, "llm");
    EXPECT_EQ(s.tunnels[0].host, "127.0.0.1");
    EXPECT_EQ(s.tunnels[0].port, 11434);
    EXPECT_EQ(s.known_hosts, "/home/u/.config/ferry/known_hosts");
    EXPECT_EQ(s.max_attempts, 0u);
    EXPECT_EQ(s.drain_ms, 10000u);
    EXPECT_EQ(s.profile, agent_profile::stable);
    EXPECT_EQ(s.ping_interval_ms, 30000u);
    EXPECT_EQ(s.pong_timeout_ms, 45000u);
    EXPECT_EQ(s.backoff_initial_ms, 2000u);
    EXPECT_EQ(s.backoff_max_ms, 60000u);

    auto none = agent({});
    EXPECT_MSG(none, "relay: required");
    EXPECT_MSG(none, "token: required");
    EXPECT_MSG(none, "tunnels: at least one --tunnel");
}

TEST(ConfigAgent, KnownHostsDefaultFollowsXdgThenHomeThenDataDir) {
    fake_env env;
    EXPECT_EQ(default_known_hosts(env.fn()), "./ferry-data/known_hosts");
    env.vars["HOME"] = "/h";
    EXPECT_EQ(default_known_hosts(env.fn()), "/h/.config/ferry/known_hosts");
    env.vars["XDG_CONFIG_HOME"] = "/x";
    EXPECT_EQ(default_known_hosts(env.fn()), "/x/ferry/known_hosts");
}

// ---- precedence: file < flag < env --------------------------------------------------------------

TEST(ConfigRelay, PrecedenceFileThenFlagThenEnv) {
    temp_dir d;
    auto cfg = d.write("ferry.toml",
                       "listen = \"127.0.0.1:1001\"\nshards = 2\nqueue_max = 7\n"
                       "public_tunnels = [\"a\", \"b\"]\n");
    // File only.
    auto f = relay({"--config", cfg});
    ASSERT_TRUE(f.r) << f.msg;
    EXPECT_EQ(f.r->listen, "127.0.0.1:1001");
    EXPECT_EQ(f.r->shards, 2u);
    EXPECT_EQ(f.r->config_file, cfg);
    EXPECT_EQ(f.r->public_tunnels, (std::vector<std::string>{"a", "b"}));
    // Flag over file (the flag comes first on the command line: order does not matter).
    auto g = relay({"--listen", "127.0.0.1:1002", "--public-tunnels", "c", "--config=" + cfg});
    ASSERT_TRUE(g.r) << g.msg;
    EXPECT_EQ(g.r->listen, "127.0.0.1:1002");
    EXPECT_EQ(g.r->shards, 2u);
    EXPECT_EQ(g.r->public_tunnels, (std::vector<std::string>{"c"}));  // replaced, not merged
    // Env over flag and file.
    fake_env env;
    env.vars["FERRY_LISTEN"] = "127.0.0.1:1003";
    env.vars["FERRY_SHARDS"] = "3";
    env.vars["FERRY_PUBLIC_TUNNELS"] = "x, y";
    auto h = relay({"--listen", "127.0.0.1:1002", "--config", cfg}, env);
    ASSERT_TRUE(h.r) << h.msg;
    EXPECT_EQ(h.r->listen, "127.0.0.1:1003");
    EXPECT_EQ(h.r->shards, 3u);
    EXPECT_EQ(h.r->queue_max, 7u);  // untouched by flags and env: the file's
    EXPECT_EQ(h.r->public_tunnels, (std::vector<std::string>{"x", "y"}));
}

TEST(ConfigRelay, FerryConfigEnvOverridesConfigFlag) {
    temp_dir d;
    auto a = d.write("a.toml", "shards = 1\n");
    auto b = d.write("b.toml", "shards = 2\n");
    fake_env env;
    env.vars["FERRY_CONFIG"] = b;
    auto r = relay({"--config", a}, env);
    ASSERT_TRUE(r.r) << r.msg;
    EXPECT_EQ(r.r->shards, 2u);
}

TEST(ConfigRelay, EmptyEnvironmentValueCountsAsUnset) {
    fake_env env;
    env.vars["FERRY_SHARDS"] = "";
    env.vars["FERRY_LISTEN"] = "";
    auto r = relay({"--shards", "4"}, env);
    ASSERT_TRUE(r.r) << r.msg;
    EXPECT_EQ(r.r->shards, 4u);
    EXPECT_EQ(r.r->listen, "0.0.0.0:8443");
}

TEST(ConfigRelay, HomeIsExpandedInFileKeysOnly) {
    temp_dir d;
    auto cfg = d.write("f.toml",
                       "data_dir = \"~/ferry\"\njwt_secret_file = \"~/s\"\njwt_issuer = \"~/x\"\n");
    fake_env env;
    env.vars["HOME"] = "/home/op";
    env.vars["FERRY_TLS_CERT"] = "~/c";
    auto r = relay({"--config", cfg, "--tls-key", "~"}, env);
    ASSERT_TRUE(r.r) << r.msg;
    EXPECT_EQ(r.r->data_dir, "/home/op/ferry");
    EXPECT_EQ(r.r->jwt_secret_file, "/home/op/s");
    EXPECT_EQ(r.r->tls_cert, "/home/op/c");
    EXPECT_EQ(r.r->tls_key, "/home/op");
    EXPECT_EQ(r.r->jwt_issuer, "~/x");  // not a path: left alone
    auto a = agent({"--relay", "ws://r:1", "--token-file", "~/.config/ferry/token", "--tunnel",
                    "a=h:1", "--known-hosts", "~user/kh"},
                   env);
    ASSERT_TRUE(a.r) << a.msg;
    EXPECT_EQ(a.r->token_file, "/home/op/.config/ferry/token");
    EXPECT_EQ(a.r->known_hosts, "~user/kh");  // only "~" and "~/" are expanded
}

TEST(ConfigRelay, RepeatedListFlagsAppendAndRepeatedScalarsTakeTheLast) {
    auto r = relay(
        {"--public-tunnels", "a,b", "--public-tunnels", "c", "--shards", "1", "--shards", "2"});
    ASSERT_TRUE(r.r) << r.msg;
    EXPECT_EQ(r.r->public_tunnels, (std::vector<std::string>{"a", "b", "c"}));
    EXPECT_EQ(r.r->shards, 2u);
    EXPECT_MSG(relay({"--public-tunnels", "a", "--public-tunnels", "a"}),
               "public_tunnels: duplicate entry \"a\"");
}

TEST(ConfigAgent, TunnelsFromEveryForm) {
    temp_dir d;
    auto cfg =
        d.write("agent.toml",
                "relay = \"ws://127.0.0.1:8443\"\n"
                "token_file = \"/t\"\n"
                "tunnels = [\"a=127.0.0.1:1\", { name = \"b\", host = \"::1\", port = 2 }]\n");
    auto f = agent({"--config", cfg});
    ASSERT_TRUE(f.r) << f.msg;
    ASSERT_EQ(f.r->tunnels.size(), 2u);
    EXPECT_EQ(f.r->tunnels[1].host, "::1");
    EXPECT_EQ(f.r->tunnels[1].port, 2);
    EXPECT_FALSE(f.r->relay_target.tls);
    EXPECT_EQ(f.r->relay_target.port, 8443);
    EXPECT_NE(redacted_json(*f.r).find("\"tunnels\":[\"a=127.0.0.1:1\",\"b=[::1]:2\"]"),
              std::string::npos);
    // Flags replace the file's list and append to each other.
    auto g = agent({"--config", cfg, "--tunnel", "c=localhost:3", "--tunnel", "d=[::1]:4"});
    ASSERT_TRUE(g.r) << g.msg;
    ASSERT_EQ(g.r->tunnels.size(), 2u);
    EXPECT_EQ(g.r->tunnels[0].name, "c");
    EXPECT_EQ(g.r->tunnels[1].host, "::1");
    // The environment replaces both.
    fake_env env;
    env.vars["FERRY_TUNNELS"] = "e=10.0.0.1:5,f=h.example:6";
    auto h = agent({"--config", cfg, "--tunnel", "c=localhost:3"}, env);
    ASSERT_TRUE(h.r) << h.msg;
    ASSERT_EQ(h.r->tunnels.size(), 2u);
    EXPECT_EQ(h.r->tunnels[0].name, "e");
    EXPECT_EQ(h.r->tunnels[1].host, "h.example");
}

TEST(ConfigAgent, ProfileSetsTimingsUnlessAKeyIsSetExplicitly) {
    auto base = std::initializer_list<std::string>{};
    (void)base;
    auto u = agent({"--relay", "ws://r:1", "--token", "t", "--tunnel", "a=h:1", "--profile",
                    "unstable", "--ping-interval-ms", "5s"});
    ASSERT_TRUE(u.r) << u.msg;
    EXPECT_EQ(u.r->profile, agent_profile::unstable);
    EXPECT_EQ(u.r->ping_interval_ms, 5000u);    // explicit
    EXPECT_EQ(u.r->pong_timeout_ms, 20000u);    // profile
    EXPECT_EQ(u.r->backoff_initial_ms, 1000u);  // profile
    EXPECT_EQ(u.r->backoff_max_ms, 15000u);
    fake_env env;
    env.vars["FERRY_PROFILE"] = "low-bandwidth";
    auto l = agent(
        {"--relay", "ws://r:1", "--token", "t", "--tunnel", "a=h:1", "--profile", "unstable"}, env);
    ASSERT_TRUE(l.r) << l.msg;
    EXPECT_EQ(l.r->profile, agent_profile::low_bandwidth);
    EXPECT_EQ(l.r->ping_interval_ms, 60000u);
    EXPECT_EQ(l.r->pong_timeout_ms, 120000u);
    EXPECT_EQ(l.r->connect_timeout_ms, 30000u);
    EXPECT_MSG(
        agent({"--profile", "fast"}),
        "profile: expected stable|unstable|low-bandwidth, got \"fast\" (from flag --profile)");
    // An explicit pong below the profile's ping is caught after the profile is applied.
    EXPECT_MSG(agent({"--relay", "ws://r:1", "--token", "t", "--tunnel", "a=h:1", "--profile",
                      "low-bandwidth", "--pong-timeout-ms", "50000"}),
               "pong_timeout_ms: must be greater than ping_interval_ms (60000), got 50000 (from "
               "flag --pong-timeout-ms)");
}

TEST(ConfigAgent, TokenSourcesExactlyOneNamingWhereEachCameFrom) {
    temp_dir d;
    auto cfg = d.write("a.toml", "token_file = \"/t\"\n");
    fake_env env;
    env.vars["FERRY_TOKEN"] = "abc";
    auto r = agent({"--config", cfg, "--relay", "ws://r:1", "--tunnel", "a=h:1"}, env);
    EXPECT_MSG(r,
               "token: set only one of token, token_file, token_command (token from env "
               "FERRY_TOKEN, token_file from " +
                   cfg + ":1:14)");
}

TEST(ConfigConnect, PositionalRelayAndNoTunnelsNeeded) {
    auto c = connect({"wss://relay.example:8443/custom", "--token-file", "/t"});
    ASSERT_TRUE(c.r) << c.msg;
    EXPECT_EQ(c.r->relay_target.port, 8443);
    EXPECT_EQ(c.r->relay_target.path, "/custom");
    EXPECT_TRUE(c.r->tunnels.empty());
    EXPECT_MSG(connect({"wss://a", "--relay", "wss://b", "--token", "t"}),
               "relay: given both as --relay and as an argument");
    EXPECT_MSG(connect({"wss://a", "wss://b", "--token", "t"}), "unexpected argument \"wss://b\"");
    fake_env env;
    env.vars["FERRY_RELAY"] = "ws://c:1";
    auto e = connect({"wss://a", "--token", "t"}, env);
    ASSERT_TRUE(e.r) << e.msg;
    EXPECT_EQ(e.r->relay_target.host, "c");  // the environment wins, as over any flag
    EXPECT_MSG(connect({"--token", "t"}), "relay: required (ferry connect wss://HOST:PORT");
}

TEST(ConfigConnect, AgentOnlyKeysAreRefusedAsFlagsAndWarnedFromTheEnvironment) {
    // Every key connect does not use: a flag is an error naming it, never silently ignored.
    EXPECT_MSG(connect({"wss://a", "--token", "t", "--tunnel", "x=127.0.0.1:1"}),
               "tunnels: ferry connect does not use it");
    EXPECT_MSG(connect({"wss://a", "--token", "t", "--known-hosts", "/k"}),
               "known_hosts: ferry connect does not use it");
    for (const char* f : {"--ping-interval-ms", "--pong-timeout-ms", "--backoff-initial-ms", "--backoff-max-ms",
                          "--upstream-keepalive", "--upstream-idle-ms", "--max-attempts", "--drain-ms"}) {
        auto c = connect({"wss://a", "--token", "t", f, "2000"});
        EXPECT_FALSE(c.r) << f;
        EXPECT_NE(c.msg.find("ferry connect does not use it"), std::string::npos) << f << ": " << c.msg;
        EXPECT_NE(c.msg.find(std::string("flag ") + f), std::string::npos) << c.msg;
    }
    // The same key from the environment (shared with the agent) starts, with a warning.
    fake_env env;
    env.vars["FERRY_TUNNELS"] = "x=127.0.0.1:1";
    auto e = connect({"wss://a", "--token", "t"}, env);
    ASSERT_TRUE(e.r) << e.msg;
    ASSERT_EQ(e.r->warnings.size(), 1u);
    EXPECT_NE(e.r->warnings[0].find("tunnels: ferry connect does not use it"), std::string::npos);
    EXPECT_NE(e.r->warnings[0].find("env FERRY_TUNNELS"), std::string::npos) << e.r->warnings[0];
    // What connect does use is accepted, and the agent is not affected.
    EXPECT_TRUE(connect({"wss://a", "--token", "t", "--connect-timeout-ms", "2000", "--ca-file", "/ca"}).r);
    EXPECT_TRUE(agent({"--relay", "wss://a", "--token", "t", "--tunnel", "x=127.0.0.1:1", "--ping-interval-ms",
                       "2000"})
                    .r);
    // Its help does not offer them.
    auto h = connect({"--help"});
    EXPECT_EQ(h.msg.find("--tunnel"), std::string::npos);
    EXPECT_EQ(h.msg.find("--known-hosts"), std::string::npos);
    EXPECT_NE(h.msg.find("--connect-timeout-ms"), std::string::npos);
}

// ---- every validator ----------------------------------------------------------------------------

namespace {
std::pair<std::uint64_t, std::uint64_t> bounds(std::string_view range) {
    auto dots = range.find("..");
    return {std::stoull(std::string(range.substr(0, dots))),
            std::stoull(std::string(range.substr(dots + 2)))};
}
bool numeric(value_kind k) {
    return k == value_kind::integer || k == value_kind::duration || k == value_kind::size;
}
}  // namespace

TEST(ConfigRelay, EveryNumericKeyReportsItsRangeFromEachSource) {
    int checked = 0;
    for (const key_info& k : relay_keys()) {
        if (!numeric(k.kind)) continue;
        auto [lo, hi] = bounds(k.range);
        std::string over = std::to_string(hi + 1);
        auto f = relay({std::string(k.flag), over});
        EXPECT_MSG(f, std::string(k.key) + ": " + std::string(k.range) + ", got " + over +
                          " (from flag " + std::string(k.flag) + ")");
        fake_env env;
        env.vars[std::string(k.env)] = over;
        auto e = relay({}, env);
        EXPECT_MSG(e, std::string(k.key) + ": " + std::string(k.range) + ", got " + over +
                          " (from env " + std::string(k.env) + ")");
        if (lo > 0) {
            std::string under = std::to_string(lo - 1);
            EXPECT_MSG(relay({std::string(k.flag) + "=" + under}),
                       std::string(k.key) + ": " + std::string(k.range) + ", got " + under);
        }
        // The bounds themselves are accepted by the key's own check.
        for (auto v : {lo, hi}) {
            auto ok = relay({std::string(k.flag), std::to_string(v)});
            EXPECT_EQ(ok.msg.find(std::string(k.key) + ": " + std::string(k.range)),
                      std::string::npos)
                << ok.msg;
        }
        EXPECT_MSG(relay({std::string(k.flag), "-1"}), std::string(k.key) + ": expected ");
        EXPECT_MSG(relay({std::string(k.flag), "12abc"}), std::string(k.key) + ": ");
        ++checked;
    }
    EXPECT_GE(checked, 18);
}

TEST(ConfigAgent, EveryNumericKeyReportsItsRange) {
    int checked = 0;
    for (const key_info& k : agent_keys()) {
        if (!numeric(k.kind)) continue;
        auto [lo, hi] = bounds(k.range);
        std::string over = std::to_string(hi + 1);
        EXPECT_MSG(agent({std::string(k.flag), over}),
                   std::string(k.key) + ": " + std::string(k.range) + ", got " + over +
                       " (from flag " + std::string(k.flag) + ")");
        ++checked;
    }
    EXPECT_GE(checked, 8);
}

TEST(ConfigRelay, ShardsMessageMatchesTheBrief) {
    fake_env env;
    env.vars["FERRY_SHARDS"] = "999";
    auto r = relay({}, env);
    EXPECT_MSG(
        r, "shards: 0.." + std::to_string(FERRY_MAX_SHARDS) + ", got 999 (from env FERRY_SHARDS)");
}

TEST(ConfigRelay, UnitsOnDurationsAndSizes) {
    auto r = relay({"--queue-wait-ms", "45s", "--jwt-leeway-s", "2m", "--ws-max-frame", "2MiB",
                    "--max-head-bytes", "32KiB", "--idle-timeout-ms", "1h", "--lease-s", "1000ms"});
    ASSERT_TRUE(r.r) << r.msg;
    EXPECT_EQ(r.r->queue_wait_ms, 45000u);
    EXPECT_EQ(r.r->jwt_leeway_s, 120u);
    EXPECT_EQ(r.r->ws_max_frame, 2u << 20);
    EXPECT_EQ(r.r->max_head_bytes, 32u << 10);
    EXPECT_EQ(r.r->idle_timeout_ms, 3600000u);
    EXPECT_EQ(r.r->lease_s, 1u);
    EXPECT_MSG(relay({"--lease-s", "1500ms"}),
               "lease_s: not a whole number of the key's unit, got \"1500ms\"");
    EXPECT_MSG(relay({"--queue-wait-ms", "3w"}),
               "queue_wait_ms: unknown duration unit (ms, s, m, h, d), got \"3w\"");
    EXPECT_MSG(relay({"--ws-max-frame", "1MB"}),
               "ws_max_frame: unknown size unit (B, KiB, MiB, GiB), got \"1MB\"");
    EXPECT_MSG(relay({"--shards", "4s"}), "shards: expected a non-negative integer, got \"4s\"");
    EXPECT_MSG(relay({"--max-body-bytes", "99999999999999999999999"}),
               "max_body_bytes: number too large");
    // The same text forms work in the TOML file.
    std::string m;
    auto t = parse_relay_toml("queue_wait_ms = \"2s\"\nws_max_frame = \"64KiB\"\n", "f.toml", m);
    ASSERT_TRUE(t) << m;
    EXPECT_EQ(t->queue_wait_ms, 2000u);
    EXPECT_EQ(t->ws_max_frame, 64u << 10);
}

TEST(ConfigRelay, StringValidators) {
    EXPECT_MSG(relay({"--listen", "localhost:80"}),
               "listen: expected HOST:PORT with a numeric host (0.0.0.0:8443, [::]:8443, "
               "127.0.0.1:0), got "
               "\"localhost:80\" (from flag --listen)");
    EXPECT_MSG(relay({"--listen", "1.2.3.4"}), "listen: expected HOST:PORT");
    EXPECT_MSG(relay({"--admin-listen", "1.2.3.4:99999"}), "admin_listen: expected HOST:PORT");
    EXPECT_TRUE(relay({"--admin-listen", ""}).r);  // empty turns it off
    EXPECT_TRUE(relay({"--listen", "[::]:8443"}).r);
    EXPECT_MSG(relay({"--log-level", "verbose"}),
               "log_level: expected error|warn|info|debug|trace, got \"verbose\"");
    EXPECT_MSG(relay({"--tls-min-version", "1.1"}),
               "tls_min_version: expected 1.2 or 1.3, got \"1.1\"");
    EXPECT_MSG(relay({"--jwks-url", "ftp://x"}),
               "jwks_url: expected an https:// URL, got \"ftp://x\"");
    EXPECT_MSG(relay({"--base-domain", "Tunnels.Example"}),
               "base_domain: expected a lower-case DNS name");
    EXPECT_MSG(relay({"--base-domain", ".example.com"}),
               "base_domain: expected a lower-case DNS name");
    EXPECT_TRUE(relay({"--base-domain", "t.example.com"}).r);
    EXPECT_MSG(
        relay({"--jwt-algorithms", "HS256,none"}),
        "jwt_algorithms: expected HS256, RS256, ES256 or EdDSA (case-sensitive), got \"none\"");
    EXPECT_MSG(relay({"--jwt-algorithms", "hs256"}), "jwt_algorithms: expected HS256");
    EXPECT_MSG(relay({"--jwt-algorithms", ""}), "jwt_algorithms: at least one of HS256");
    EXPECT_MSG(relay({"--data-dir", ""}), "data_dir: expected a non-empty value");
    EXPECT_MSG(relay({"--no-tls=maybe"}),
               "no_tls: expected true or false, got \"maybe\" (from flag --no-tls)");
    fake_env env;
    env.vars["FERRY_NO_TLS"] = "yes";
    auto r = relay({}, env);
    ASSERT_TRUE(r.r) << r.msg;
    EXPECT_TRUE(r.r->no_tls);
    EXPECT_MSG(relay({"--public-tunnels", "ok,a,"}), "public_tunnels: expected a non-empty entry");
}

// The issue 11 keys: trusted_proxies (CIDRs) and agent_scope (one scope token).
TEST(ConfigRelay, TrustedProxiesAndAgentScope) {
    auto ok = relay({"--trusted-proxies", "10.0.0.0/8, 2001:db8::/32,192.0.2.7", "--agent-scope", "tunnels:register"});
    ASSERT_TRUE(ok.r) << ok.msg;
    EXPECT_EQ(ok.r->trusted_proxies, (std::vector<std::string>{"10.0.0.0/8", "2001:db8::/32", "192.0.2.7"}));
    EXPECT_EQ(ok.r->agent_scope, "tunnels:register");
    EXPECT_EQ(relay({}).r->agent_scope, "ferry:agent");
    EXPECT_MSG(relay({"--trusted-proxies", "10.0.0.1/8"}),
               "trusted_proxies: expected an IP network like 10.0.0.0/8 or 2001:db8::/32 (address has bits set "
               "below the prefix length), got \"10.0.0.1/8\"");
    EXPECT_MSG(relay({"--trusted-proxies", "proxy.example"}), "trusted_proxies: expected an IP network");
    EXPECT_MSG(relay({"--agent-scope", "a b"}), "agent_scope: expected one scope token");
    EXPECT_MSG(relay({"--agent-scope", ""}), "agent_scope: expected a scope token");
    EXPECT_MSG(relay({"--max-pipelined-requests", "0"}), "max_pipelined_requests: 1..1024, got 0");
}

TEST(ConfigRelay, TunnelNamesFollowDnsLabelRules) {
    for (const std::string& bad :
         std::vector<std::string>{"-a", "a-", "A", "a_b", "a.b", std::string(64, 'a'), "é"}) {
        EXPECT_FALSE(valid_tunnel_name(bad)) << bad;
        EXPECT_MSG(relay({"--public-tunnels", bad}),
                   "public_tunnels: expected a tunnel name: 1-63 of [a-z0-9-], not starting or "
                   "ending with '-'");
    }
    for (const std::string& good :
         std::vector<std::string>{"a", "0", "a-b", "llm-1", std::string(63, 'z')}) {
        EXPECT_TRUE(valid_tunnel_name(good)) << good;
        EXPECT_TRUE(relay({"--public-tunnels", good}).r) << good;
    }
    EXPECT_FALSE(valid_tunnel_name(""));
}

TEST(ConfigRelay, CrossKeyRules) {
    EXPECT_MSG(relay({"--tls-cert", "/c"}),
               "tls_key: required together with tls_cert (from flag --tls-cert)");
    EXPECT_MSG(relay({"--tls-key", "/k"}),
               "tls_cert: required together with tls_key (from flag --tls-key)");
    EXPECT_MSG(relay({"--no-tls", "--tls-cert", "/c", "--tls-key", "/k"}),
               "no_tls: cannot be combined with tls_cert/tls_key");
    EXPECT_TRUE(relay({"--tls-cert", "/c", "--tls-key", "/k"}).r);
    EXPECT_MSG(
        relay({"--ping-interval-ms", "60000"}),
        "pong_timeout_ms: must be greater than ping_interval_ms (60000), got 45000 (from default)");
    EXPECT_MSG(relay({"--admin-listen", "0.0.0.0:8443"}),
               "admin_listen: same address as listen (0.0.0.0:8443)");
}

TEST(ConfigAgent, Validators) {
    EXPECT_MSG(agent({"--relay", "https://r"}),
               "relay: expected ws://HOST[:PORT][/PATH] or wss://HOST[:PORT][/PATH] "
               "(use wss:// for an https relay, ws:// for http), got \"https://r\"");
    EXPECT_MSG(agent({"--relay", "wss://u:p@r"}), "credentials in the URL are not supported");
    EXPECT_MSG(agent({"--relay", "wss://r:0"}), "bad host or port");
    EXPECT_MSG(agent({"--relay", "wss://r/x?y"}), "no query or fragment");
    EXPECT_MSG(agent({"--tunnel", "a"}),
               "tunnels: expected NAME=HOST:PORT, got \"a\" (from flag --tunnel)");
    EXPECT_MSG(agent({"--tunnel", "Bad=h:1"}),
               "tunnels: expected NAME=HOST:PORT with NAME 1-63 of [a-z0-9-]");
    EXPECT_MSG(agent({"--tunnel", "a=h:70000"}),
               "tunnels: expected NAME=HOST:PORT with a host name or IP");
    EXPECT_MSG(agent({"--tunnel", "a=::1:80"}),
               "tunnels: expected NAME=HOST:PORT with a host name or IP");
    EXPECT_MSG(agent({"--tunnel", "a=h:1", "--tunnel", "a=h:2"}),
               "tunnels: duplicate tunnel name \"a\"");
    EXPECT_MSG(agent({"--relay", "ws://r:1", "--token", "t", "--tunnel", "a=h:1",
                      "--backoff-initial-ms", "10s", "--backoff-max-ms", "5s"}),
               "backoff_max_ms: must be at least backoff_initial_ms (10000), got 5000 (from flag "
               "--backoff-max-ms)");
    std::string why;
    auto ipv6 = parse_relay_url("wss://[::1]:9000", why);
    ASSERT_TRUE(ipv6) << why;
    EXPECT_EQ(ipv6->host, "::1");
    EXPECT_EQ(ipv6->port, 9000);
    auto bare6 = parse_relay_url("ws://[::1]", why);
    ASSERT_TRUE(bare6) << why;
    EXPECT_EQ(bare6->port, 80);
    auto upper = parse_relay_url("WSS://Relay.Example.COM/", why);
    ASSERT_TRUE(upper) << why;
    EXPECT_EQ(upper->host, "relay.example.com");
    EXPECT_EQ(upper->path, "/tunnel");
}

TEST(ConfigAgent, TokenIsNeverEchoedInErrors) {
    auto r = agent({"--token", "secret value with spaces"});
    EXPECT_MSG(r,
               "token: expected a JWT (no whitespace or control characters) (from flag --token)");
    EXPECT_EQ(r.msg.find("secret value"), std::string::npos) << r.msg;
    std::string m;
    auto t = parse_agent_toml("token = \"leak me\"\n", "a.toml", m);
    EXPECT_FALSE(t);
    EXPECT_EQ(m.find("leak"), std::string::npos) << m;
}

// ---- unknown keys and flags ---------------------------------------------------------------------

TEST(ConfigRelay, UnknownFlagsAndKeysAreErrorsWithHints) {
    EXPECT_MSG(relay({"--listn", "1.2.3.4:5"}),
               "unknown flag --listn (did you mean --listen?); see --help");
    EXPECT_MSG(relay({"--jwt_secret_file", "/x"}),
               "unknown flag --jwt_secret_file (did you mean --jwt-secret-file?)");
    EXPECT_MSG(relay({"--relay", "wss://x"}), "unknown flag --relay (a flag of ferry agent)");
    EXPECT_MSG(relay({"stray"}), "unexpected argument \"stray\"");
    EXPECT_MSG(relay({"--listen"}), "listen: --listen needs a value (HOST:PORT)");
    std::string m;
    EXPECT_FALSE(parse_relay_toml("shard = 3\n", "f.toml", m));
    EXPECT_NE(m.find("f.toml: unknown key \"shard\" (did you mean shards?) (at f.toml:1:9)"),
              std::string::npos)
        << m;
    EXPECT_FALSE(parse_relay_toml("token_file = \"/t\"\n", "f.toml", m));
    EXPECT_NE(m.find("unknown key \"token_file\" (that key belongs to ferry agent)"),
              std::string::npos)
        << m;
    EXPECT_FALSE(parse_relay_toml("[jwt]\nissuer = \"x\"\n", "f.toml", m));
    EXPECT_NE(m.find("tables are not used"), std::string::npos) << m;
    EXPECT_FALSE(parse_relay_toml("config = \"/other.toml\"\n", "f.toml", m));
    EXPECT_NE(m.find("config: cannot be set inside a config file"), std::string::npos) << m;
}

TEST(ConfigRelay, AllProblemsAreReportedTogether) {
    auto r = relay({"--shards", "999", "--listen", "x", "--log-level", "loud"});
    EXPECT_MSG(r, "shards: ");
    EXPECT_MSG(r, "listen: ");
    EXPECT_MSG(r, "log_level: ");
    EXPECT_EQ(std::count(r.msg.begin(), r.msg.end(), '\n'), 3) << r.msg;
}

// ---- TOML ---------------------------------------------------------------------------------------

TEST(ConfigToml, SyntaxErrorsCarryFileLineAndColumn) {
    std::string m;
    EXPECT_FALSE(parse_relay_toml("listen = \"0.0.0.0:1\"\nshards = \n", "ferryd.toml", m));
    EXPECT_NE(m.find("ferryd.toml:2:"), std::string::npos) << m;
    EXPECT_NE(m.find("TOML syntax error"), std::string::npos) << m;
    EXPECT_FALSE(parse_relay_toml("a = 1\na = 2\n", "x.toml", m));
    EXPECT_NE(m.find("x.toml:2:"), std::string::npos) << m;
    EXPECT_FALSE(parse_relay_toml("listen = \"unterminated\n", "u.toml", m));
    EXPECT_NE(m.find("u.toml:1:"), std::string::npos) << m;
}

TEST(ConfigToml, TypeAndRangeErrorsCarryTheValuePosition) {
    std::string m;
    EXPECT_FALSE(parse_relay_toml("# comment\nshards = \"four\"\n", "f.toml", m));
    EXPECT_NE(m.find("shards: expected an integer, got a string (from f.toml:2:10)"),
              std::string::npos)
        << m;
    EXPECT_FALSE(parse_relay_toml("\n\nqueue_max = 100001\n", "f.toml", m));
    EXPECT_NE(m.find("queue_max: 0..100000, got 100001 (from f.toml:3:13)"), std::string::npos)
        << m;
    EXPECT_FALSE(parse_relay_toml("no_tls = \"yes\"\n", "f.toml", m));
    EXPECT_NE(m.find("no_tls: expected a boolean, got a string"), std::string::npos) << m;
    EXPECT_FALSE(parse_relay_toml("public_tunnels = [1]\n", "f.toml", m));
    EXPECT_NE(m.find("public_tunnels: expected an array of strings"), std::string::npos) << m;
    EXPECT_FALSE(parse_relay_toml("shards = -1\n", "f.toml", m));
    EXPECT_NE(m.find("shards: expected a non-negative integer, got -1"), std::string::npos) << m;
    EXPECT_FALSE(parse_relay_toml("ping_interval_ms = 1.5\n", "f.toml", m));
    EXPECT_NE(m.find("ping_interval_ms: expected an integer, got a float"), std::string::npos) << m;
    std::string am;
    EXPECT_FALSE(
        parse_agent_toml("relay = \"ws://r:1\"\ntoken = \"t\"\ntunnels = [{ name = \"a\", host = "
                         "\"h\", port = 0 }]\n",
                         "a.toml", am));
    EXPECT_NE(am.find("tunnels: [0].port: 1..65535, got 0 (from a.toml:3:11)"), std::string::npos)
        << am;
    EXPECT_FALSE(parse_agent_toml(
        "tunnels = [{ name = \"a\", host = \"h\", port = 1, extra = 2 }]\n", "a.toml", am));
    EXPECT_NE(am.find("[0]: unknown field \"extra\""), std::string::npos) << am;
}

TEST(ConfigToml, MissingOrOversizedFile) {
    temp_dir d;
    auto r = relay({"--config", d.file("nope.toml")});
    EXPECT_MSG(r, "config: cannot read " + d.file("nope.toml") + ": No such file or directory");
    auto big = d.write("big.toml", std::string((1 << 20) + 10, '#'));
    EXPECT_MSG(relay({"--config", big}), "larger than 1048576 bytes");
}

TEST(ConfigToml, AFullRelayFile) {
    std::string m;
    auto t = parse_relay_toml(R"(
listen = "0.0.0.0:443"
admin_listen = ""
tls_cert = "/etc/ferry/tls.crt"
tls_key = "/etc/ferry/tls.key"
jwks_file = "/etc/ferry/jwks.json"
jwt_issuer = "https://id.example"
jwt_audience = ["ferry", "ferry-dev"]
jwt_leeway_s = 30
jwt_algorithms = ["RS256", "EdDSA"]
shards = 4
base_domain = "t.example.com"
max_body_bytes = "10MiB"
public_tunnels = ["status"]
log_level = "debug"
)",
                              "full.toml", m);
    ASSERT_TRUE(t) << m;
    EXPECT_EQ(t->jwt_audience, (std::vector<std::string>{"ferry", "ferry-dev"}));
    EXPECT_EQ(t->max_body_bytes, 10u << 20);
    EXPECT_EQ(t->admin_listen, "");
    EXPECT_EQ(t->jwt_algorithms, (std::vector<std::string>{"RS256", "EdDSA"}));
}

// ---- help, JSON, diff ---------------------------------------------------------------------------

TEST(ConfigHelp, HelpIsNotAnErrorAndListsEveryFlag) {
    auto r = relay({"--shards", "999", "--help"});
    ASSERT_FALSE(r.r);
    EXPECT_TRUE(is_help(r.r.err()));
    for (auto& k : relay_keys()) {
        EXPECT_NE(r.msg.find(std::string(k.flag)), std::string::npos) << k.flag;
        EXPECT_NE(r.msg.find(std::string(k.env)), std::string::npos) << k.env;
    }
    auto a = agent({"-h"});
    ASSERT_FALSE(a.r);
    EXPECT_TRUE(is_help(a.r.err()));
    for (auto& k : agent_keys())
        EXPECT_NE(a.msg.find(std::string(k.flag)), std::string::npos) << k.flag;
    EXPECT_FALSE(is_help(relay({"--bogus"}).r.err()));
}

TEST(ConfigJson, RedactedJsonHasEveryKeyAndNoSecret) {
    auto a = agent(
        {"--relay", "wss://r", "--token", "eyJhbGciOiJIUzI1NiJ9.e30.sig", "--tunnel", "a=h:1"});
    ASSERT_TRUE(a.r) << a.msg;
    std::string j = redacted_json(*a.r);
    EXPECT_EQ(j.find("eyJhbGciOiJIUzI1NiJ9"), std::string::npos) << j;
    EXPECT_NE(j.find("\"token\":\"<redacted>\""), std::string::npos) << j;
    EXPECT_NE(j.find("\"token_file\":\"\""), std::string::npos) << j;
    for (auto& k : agent_keys())
        EXPECT_NE(j.find("\"" + std::string(k.key) + "\":"), std::string::npos) << k.key;

    auto r = relay({"--jwt-secret-file", "/etc/ferry/secret", "--jwt-issuer", "a\"b"});
    ASSERT_TRUE(r.r) << r.msg;
    std::string rj = redacted_json(*r.r);
    EXPECT_EQ(rj.front(), '{');
    EXPECT_EQ(rj.back(), '}');
    EXPECT_NE(rj.find("\"jwt_secret_file\":\"/etc/ferry/secret\""), std::string::npos)
        << rj;                                                                 // paths are fine
    EXPECT_NE(rj.find("\"jwt_issuer\":\"a\\\"b\""), std::string::npos) << rj;  // escaped
    EXPECT_NE(rj.find("\"shards\":0"), std::string::npos) << rj;
    EXPECT_NE(rj.find("\"no_tls\":false"), std::string::npos) << rj;
    for (auto& k : relay_keys())
        EXPECT_NE(rj.find("\"" + std::string(k.key) + "\":"), std::string::npos) << k.key;
}

TEST(ConfigJson, ChangedKeysForReload) {
    relay_settings a, b;
    EXPECT_TRUE(changed_keys(a, b).empty());
    b.log_level = "debug";
    b.public_tunnels = {"x"};
    b.shards = 2;
    auto c = changed_keys(a, b);
    EXPECT_EQ(c, (std::vector<std::string_view>{"shards", "log_level", "public_tunnels"}));
    for (auto& k : relay_keys()) {
        if (k.key == "log_level" || k.key == "public_tunnels") {
            EXPECT_TRUE(k.live) << k.key;
        }
        if (k.key == "shards" || k.key == "listen") {
            EXPECT_FALSE(k.live) << k.key;
        }
    }
}

TEST(ConfigTable, NamesFollowOneConvention) {
    // flag = "--" + key with '-' for '_'; env = "FERRY_" + KEY. The one exception is the agent's
    // repeatable --tunnel for the `tunnels` list.
    for (auto keys : {relay_keys(), agent_keys()}) {
        for (auto& k : keys) {
            std::string flag = "--", env = "FERRY_";
            for (char c : k.key) {
                flag += c == '_' ? '-' : c;
                env += char(std::toupper(static_cast<unsigned char>(c)));
            }
            if (k.key == "tunnels") flag = "--tunnel";
            EXPECT_EQ(k.flag, flag);
            EXPECT_EQ(k.env, env);
            EXPECT_FALSE(k.help.empty()) << k.key;
            EXPECT_FALSE(k.range.empty()) << k.key;
        }
    }
}
