// src/control/relay_setup: settings -> relay::relay_config (every key that reaches the relay),
// the automatic connection cap, and what build_relay_config loads or refuses.
#include "control/relay_setup.hh"

#include <gtest/gtest.h>

#include <string>

#include "helpers.hh"

using namespace ferry;
using namespace ferry::control;
using namespace ferry::control::test;

namespace {

relay_settings parse(std::initializer_list<std::string> args) {
    argv_builder a(args);
    std::string msg;
    fake_env env;
    auto r = parse_relay_args(a.argc(), a.argv(), env.fn(), msg);
    EXPECT_TRUE(r) << msg;
    return r ? *r : relay_settings{};
}

}  // namespace

TEST(RelaySetup, EverySettingReachesTheRelayConfig) {
    using ms = std::chrono::milliseconds;
    relay_settings s = parse({"--listen", "127.0.0.1:7001", "--ssh-listen", "127.0.0.1:7002",
                              "--public-tunnels", "docs,blog", "--base-domain", "t.example",
                              "--lease-s", "7", "--max-agents-per-user", "4", "--max-names-per-user", "9",
                              "--agent-scope", "x:agent", "--handshake-timeout-ms", "1234",
                              "--unauthenticated-idle-timeout-ms", "2345", "--max-pipelined-requests", "5",
                              "--max-connections", "777", "--max-connections-per-ip", "66",
                              "--trusted-proxies", "10.0.0.0/8,::1/128", "--max-channels-per-tunnel", "3",
                              "--user-rate-limit", "11", "--queue-max", "12", "--queue-wait-ms", "3456",
                              "--max-head-bytes", "9000", "--max-headers", "50", "--max-body-bytes", "100000",
                              "--head-timeout-ms", "4567", "--idle-timeout-ms", "5678",
                              "--first-byte-timeout-ms", "6789", "--ws-max-frame", "65536",
                              "--ping-interval-ms", "2000", "--pong-timeout-ms", "3000", "--jwt-issuer", "iss",
                              "--jwt-audience", "aud", "--jwt-leeway-s", "4"});
    relay::relay_config c = relay_config_from(s);
    EXPECT_EQ(c.listen, "127.0.0.1:7001");
    EXPECT_EQ(c.ssh_listen, "127.0.0.1:7002");
    EXPECT_EQ(c.public_tunnels, (std::vector<std::string>{"docs", "blog"}));
    EXPECT_EQ(c.base_domain, "t.example");
    EXPECT_EQ(c.lease, ms(7000));
    EXPECT_EQ(c.max_agents_per_user, 4u);
    EXPECT_EQ(c.max_names_per_user, 9u);
    EXPECT_EQ(c.agent_scope, "x:agent");
    EXPECT_EQ(c.handshake_timeout, ms(1234));
    EXPECT_EQ(c.unauthenticated_idle_timeout, ms(2345));
    EXPECT_EQ(c.max_pipelined_requests, 5u);
    EXPECT_EQ(c.max_connections, 777u);
    EXPECT_EQ(c.max_connections_per_ip, 66u);
    ASSERT_EQ(c.trusted_proxies.size(), 2u);
    EXPECT_TRUE(c.trusted_proxies[0].contains(*reactor::address::parse("10.1.2.3:1")));
    EXPECT_FALSE(c.trusted_proxies[0].contains(*reactor::address::parse("11.1.2.3:1")));
    EXPECT_EQ(c.max_channels_per_tunnel, 3u);
    EXPECT_EQ(c.user_rate_limit, 11u);
    EXPECT_EQ(c.queue_max, 12u);
    EXPECT_EQ(c.queue_wait, ms(3456));
    EXPECT_EQ(c.head_limits.max_head_bytes, 9000u);
    EXPECT_EQ(c.head_limits.max_headers, 50u);
    EXPECT_EQ(c.max_body_bytes, 100000u);
    EXPECT_EQ(c.head_timeout, ms(4567));
    EXPECT_EQ(c.idle_timeout, ms(5678));
    EXPECT_EQ(c.first_byte_timeout, ms(6789));
    EXPECT_EQ(c.ws_limits.max_frame_payload, 65536u);
    EXPECT_EQ(c.ping_interval, ms(2000));
    EXPECT_EQ(c.pong_timeout, ms(3000));
    EXPECT_EQ(c.verify.issuer, "iss");
    EXPECT_EQ(c.verify.audiences, (std::vector<std::string>{"aud"}));
    EXPECT_EQ(c.verify.leeway, 4);
    // Loaded by build_relay_config, not mapped.
    EXPECT_EQ(c.keys, nullptr);
    EXPECT_TRUE(c.host_key_seed.empty());
    EXPECT_EQ(c.tls_context, nullptr);
}

TEST(RelaySetup, ConnectionRoomLeavesAReserve) {
    EXPECT_EQ(connection_room(1024), 1024u - 256u);            // the reserve is at least 256
    EXPECT_EQ(connection_room(20000), 20000u - (64 + 1250));  // 64 + 1/16 above 4096
    EXPECT_EQ(connection_room(100), 16u);                     // never below 16
}

TEST(RelaySetup, BuildLoadsKeysHostKeyAndTls) {
    temp_dir d;
    const std::string secret = d.write("secret", std::string(40, 's'));
    relay_settings s = parse({"--jwt-secret-file", secret, "--data-dir", d.path, "--no-tls",
                              "--max-connections", "50"});
    std::string m;
    auto c = build_relay_config(s, m);
    ASSERT_TRUE(c) << m;
    ASSERT_NE((*c)->keys, nullptr);
    EXPECT_EQ((*c)->keys->size(), 1u);
    EXPECT_EQ((*c)->host_key_seed.size(), 32u);
    EXPECT_EQ((*c)->tls_context, nullptr);
    EXPECT_EQ((*c)->max_connections, 50u);  // set: kept (below the room the fd limit leaves)

    // The same data dir gives the same host key; TLS on makes a self-signed certificate.
    s = parse({"--jwt-secret-file", secret, "--data-dir", d.path});
    auto t = build_relay_config(s, m);
    ASSERT_TRUE(t) << m;
    EXPECT_EQ((*t)->host_key_seed, (*c)->host_key_seed);
    EXPECT_NE((*t)->tls_context, nullptr);
    EXPECT_GT((*t)->max_connections, 0u);  // 0: derived from the open-file limit
}

TEST(RelaySetup, BuildRefusesWithTheKeyAndTheReason) {
    temp_dir d;
    const std::string secret = d.write("secret", std::string(40, 's'));
    std::string m;
    EXPECT_FALSE(build_relay_config(parse({"--data-dir", d.path, "--no-tls"}), m));
    EXPECT_EQ(m, "JWT keys: no key source: set jwt_secret_file or jwks_file");
    EXPECT_FALSE(build_relay_config(
        parse({"--jwt-secret-file", secret, "--data-dir", d.path, "--no-tls", "--drain-timeout-ms", "5000"}), m));
    EXPECT_EQ(m.rfind("drain_timeout_ms: graceful drain is not built yet", 0), 0u) << m;
    EXPECT_FALSE(build_relay_config(
        parse({"--jwt-secret-file", secret, "--data-dir", d.path, "--tls-cert", d.file("none.pem"), "--tls-key",
               d.file("none.key")}),
        m));
    EXPECT_EQ(m.rfind("TLS: ", 0), 0u) << m;
}
