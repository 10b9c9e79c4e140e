#include "control/agent_setup.hh"

#include <algorithm>

#include "agent/resolver.hh"
#include "agent/token_source.hh"

namespace ferry::control {

result<std::shared_ptr<const tls::client_context>> relay_tls(const agent_settings& s) {
    if (!s.relay_target.tls) return std::shared_ptr<const tls::client_context>();
    tls::client_options o;
    o.ca_file = s.ca_file;
    if (s.insecure_skip_verify) o.verify = tls::verify_mode::insecure_skip_verify;
    auto ctx = tls::client_context::create(o);
    if (!ctx) return fail(ctx.err());
    return *ctx;
}

agent::token_source token_source_for(const agent_settings& s) {
    if (!s.token.empty()) return agent::token_from_value(s.token);
    if (!s.token_file.empty()) return agent::token_from_file(s.token_file);
    return agent::token_from_command(s.token_command);
}

result<agent::agent_options> agent_options_from(const agent_settings& s, std::string& message) {
    using ms = std::chrono::milliseconds;
    agent::agent_options o;
    o.relay_host = s.relay_target.host;
    o.relay_port = s.relay_target.port;
    o.relay_path = s.relay_target.path;
    auto tls = relay_tls(s);
    if (!tls) {
        message = std::string("TLS: ") + tls.err().detail;
        return fail(tls.err());
    }
    o.tls = *tls;
    o.token = token_source_for(s);
    o.resolve = [](const std::string& h, std::uint16_t p) { return agent::resolve(h, p); };
    for (const tunnel_target& t : s.tunnels) {
        auto a = agent::resolve(t.host, t.port);
        if (!a) {
            message = "tunnel " + t.name + ": cannot resolve " + t.host + ": " + a.err().detail;
            return fail(a.err());
        }
        o.tunnels.push_back({t.name, t.host + ":" + std::to_string(t.port), *a});
    }
    o.known_hosts = s.known_hosts;
    o.max_attempts = s.max_attempts;
    agent::agent_timings& tm = o.timings;
    tm.connect_timeout = ms(s.connect_timeout_ms) + ms(s.handshake_timeout_ms);
    tm.ssh_timeout = ms(s.handshake_timeout_ms);
    tm.target_connect_timeout = ms(s.connect_timeout_ms);
    tm.ws_ping_interval = ms(s.ping_interval_ms);
    tm.ws_pong_timeout = ms(s.pong_timeout_ms);
    tm.keepalive_interval = ms(s.ping_interval_ms);
    tm.drain_timeout = ms(s.drain_ms);
    tm.upstream_idle = ms(s.upstream_idle_ms);
    o.upstream_keepalive = s.upstream_keepalive;
    tm.backoff.base = ms(s.backoff_initial_ms);
    tm.backoff.cap = ms(std::max(s.backoff_max_ms, s.backoff_initial_ms));
    return o;
}

}  // namespace ferry::control
