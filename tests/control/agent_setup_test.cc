// src/control/agent_setup: `ferry agent`'s settings -> agent::agent_options.
#include "control/agent_setup.hh"

#include <gtest/gtest.h>

#include "helpers.hh"

using namespace ferry;
using namespace ferry::control;
using namespace ferry::control::test;

namespace {

agent_settings parse(std::initializer_list<std::string> args) {
    argv_builder a(args);
    std::string msg;
    fake_env env;
    auto r = parse_agent_args(a.argc(), a.argv(), env.fn(), msg);
    EXPECT_TRUE(r) << msg;
    return r ? *r : agent_settings{};
}

}  // namespace

TEST(AgentSetup, SettingsBecomeOptions) {
    using ms = std::chrono::milliseconds;
    auto s = parse({"--relay", "ws://127.0.0.1:8080/custom", "--token", "a.b.c", "--tunnel", "llm=127.0.0.1:11434",
                    "--tunnel", "web=localhost:3000", "--known-hosts", "/kh", "--max-attempts", "7",
                    "--ping-interval-ms", "2000", "--pong-timeout-ms", "5000", "--connect-timeout-ms", "1500",
                    "--handshake-timeout-ms", "2500", "--backoff-initial-ms", "300", "--backoff-max-ms", "9000",
                    "--drain-ms", "4000", "--upstream-keepalive", "3", "--upstream-idle-ms", "1200"});
    std::string m;
    auto o = agent_options_from(s, m);
    ASSERT_TRUE(o) << m;
    EXPECT_EQ(o->relay_host, "127.0.0.1");
    EXPECT_EQ(o->relay_port, 8080);
    EXPECT_EQ(o->relay_path, "/custom");
    EXPECT_EQ(o->tls, nullptr);  // ws://
    ASSERT_TRUE(o->token);
    EXPECT_EQ(*o->token(), "a.b.c");
    ASSERT_EQ(o->tunnels.size(), 2u);
    EXPECT_EQ(o->tunnels[0].name, "llm");
    EXPECT_EQ(o->tunnels[0].target.to_string(), "127.0.0.1:11434");
    EXPECT_EQ(o->tunnels[1].target_text, "localhost:3000");
    EXPECT_EQ(o->tunnels[1].target.port(), 3000);
    EXPECT_EQ(o->known_hosts, "/kh");
    EXPECT_EQ(o->max_attempts, 7u);
    EXPECT_EQ(o->timings.ws_ping_interval, ms(2000));
    EXPECT_EQ(o->timings.keepalive_interval, ms(2000));
    EXPECT_EQ(o->timings.ws_pong_timeout, ms(5000));
    EXPECT_EQ(o->timings.connect_timeout, ms(1500 + 2500));  // TCP + TLS + upgrade
    EXPECT_EQ(o->timings.ssh_timeout, ms(2500));
    EXPECT_EQ(o->timings.target_connect_timeout, ms(1500));
    EXPECT_EQ(o->timings.backoff.base, ms(300));
    EXPECT_EQ(o->timings.backoff.cap, ms(9000));
    EXPECT_EQ(o->timings.drain_timeout, ms(4000));
    EXPECT_EQ(o->upstream_keepalive, 3u);
    EXPECT_EQ(o->timings.upstream_idle, ms(1200));
    ASSERT_TRUE(o->resolve);
}

TEST(AgentSetup, WssGetsATlsContextAndAnUnresolvableTargetNamesTheTunnel) {
    std::string m;
    auto o = agent_options_from(parse({"--relay", "wss://relay.example", "--token", "t", "--tunnel", "a=127.0.0.1:1",
                                       "--insecure-skip-verify"}),
                                m);
    ASSERT_TRUE(o) << m;
    EXPECT_NE(o->tls, nullptr);
    EXPECT_EQ(o->relay_port, 443);
    auto bad = agent_options_from(
        parse({"--relay", "ws://127.0.0.1:1", "--token", "t", "--tunnel", "x=no-such-host.invalid:80"}), m);
    EXPECT_FALSE(bad);
    EXPECT_EQ(m.rfind("tunnel x: cannot resolve no-such-host.invalid: ", 0), 0u) << m;
}
