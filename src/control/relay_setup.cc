#include "control/relay_setup.hh"

#include <sys/resource.h>

#include <algorithm>
#include <cstring>

#include "control/keys.hh"
#include "proto/base/log.hh"

namespace ferry::control {

namespace {

using ms = std::chrono::milliseconds;

failure refuse(std::string& message, const char* what, const std::string& why) {
    message = std::string(what) + ": " + why;
    return fail(errc::invalid_argument, "configuration");
}

// Keys of parts that are not built yet: a setting that is accepted must work, so these refuse
// the start; their defaults say what they do not do.
status refuse_unbuilt(const relay_settings& s, std::string& message) {
    const relay_settings defaults;
    if (!s.jwks_url.empty())
        return refuse(message, "jwks_url",
                      "fetching a JWK set over HTTPS is not built yet (control plane): "
                      "download it and use jwks_file");
    if (!s.admin_listen.empty() && s.admin_listen != defaults.admin_listen)
        return refuse(message, "admin_listen",
                      "the admin listener (health, metrics, admin API) is not built yet: "
                      "leave admin_listen unset or empty");
    if (!s.admin_token_file.empty())
        return refuse(message, "admin_token_file",
                      "the admin API is not built yet, so there is nothing for an admin token to "
                      "guard: leave admin_token_file unset");
    if (s.drain_timeout_ms != defaults.drain_timeout_ms)
        return refuse(message, "drain_timeout_ms",
                      "graceful drain is not built yet: SIGTERM stops ferryd at once, "
                      "so a drain timeout would not be honoured; leave it unset");
    if (!s.admin_listen.empty()) {
        FERRY_LOG(warn,
                  "the admin listener (health, metrics, admin API) is not built yet: nothing listens "
                  "on admin_listen",
                  {"admin_listen", s.admin_listen});
    }
    return {};
}

// The open-file limit up to the hard one (each connection is one), and the connection cap
// below it, so that a flood of connections is refused by ferryd rather than by accept()'s
// EMFILE.
void apply_nofile(const relay_settings& s, relay::relay_config& c) {
    rlimit rl{};
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
        c.max_connections = s.max_connections;
        return;
    }
    const rlim_t was = rl.rlim_cur;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0) rl.rlim_cur = was;
    }
    const std::uint64_t nofile = rl.rlim_cur == RLIM_INFINITY ? (1u << 20) : std::uint64_t(rl.rlim_cur);
    const std::uint64_t room = connection_room(nofile);
    std::uint64_t cap = s.max_connections;
    if (cap == 0) {
        cap = room;
    } else if (cap > room) {
        FERRY_LOG(warn, "max_connections is above what the open-file limit leaves room for", {"max_connections", cap},
                  {"nofile", nofile}, {"room", room});
    }
    c.max_connections = cap;
    FERRY_LOG(info, "open-file limit", {"nofile", nofile}, {"was", std::uint64_t(was)},
              {"hard", rl.rlim_max == RLIM_INFINITY ? std::uint64_t(0) : std::uint64_t(rl.rlim_max)},
              {"max_connections", cap}, {"max_connections_per_ip", std::uint64_t(s.max_connections_per_ip)});
}

}  // namespace

std::string describe(const error& e) {
    std::string s = e.detail ? e.detail : to_string(e.code);
    if (e.sys) {
        s += ": ";
        s += std::strerror(e.sys);
    }
    return s;
}

std::uint64_t connection_room(std::uint64_t nofile) {
    // The reserve also absorbs accept bursts: the kernel hands out a descriptor for every
    // connection a multishot accept takes before ferryd can refuse or evict, and an evicted
    // connection's descriptor closes a loop iteration later.
    const std::uint64_t reserve = std::max<std::uint64_t>(256, 64 + nofile / 16);
    return nofile > reserve + 16 ? nofile - reserve : 16;
}

relay::relay_config relay_config_from(const relay_settings& s) {
    relay::relay_config c;
    c.listen = s.listen;
    c.ssh_listen = s.ssh_listen;
    c.verify = make_verify_options(s);
    c.public_tunnels = s.public_tunnels;
    c.base_domain = s.base_domain;
    c.lease = std::chrono::seconds(s.lease_s);
    c.max_agents_per_user = s.max_agents_per_user;
    c.max_names_per_user = s.max_names_per_user;
    c.agent_scope = s.agent_scope;
    c.handshake_timeout = ms(s.handshake_timeout_ms);
    c.unauthenticated_idle_timeout = ms(s.unauthenticated_idle_timeout_ms);
    c.max_pipelined_requests = s.max_pipelined_requests;
    c.max_connections = s.max_connections;
    c.max_connections_per_ip = s.max_connections_per_ip;
    // Validated by the parser: every entry parses.
    for (const std::string& p : s.trusted_proxies)
        if (auto pre = reactor::ip_prefix::parse(p)) c.trusted_proxies.push_back(*pre);
    c.max_channels_per_tunnel = s.max_channels_per_tunnel;
    c.user_rate_limit = s.user_rate_limit;
    c.queue_max = s.queue_max;
    c.queue_wait = ms(s.queue_wait_ms);
    c.head_limits.max_head_bytes = s.max_head_bytes;
    c.head_limits.max_headers = s.max_headers;
    c.max_body_bytes = s.max_body_bytes;
    c.head_timeout = ms(s.head_timeout_ms);
    c.idle_timeout = ms(s.idle_timeout_ms);
    c.first_byte_timeout = ms(s.first_byte_timeout_ms);
    c.ws_limits.max_frame_payload = s.ws_max_frame;
    c.ping_interval = ms(s.ping_interval_ms);
    c.pong_timeout = ms(s.pong_timeout_ms);
    return c;
}

result<std::shared_ptr<const relay::relay_config>> build_relay_config(const relay_settings& s,
                                                                      std::string& message) {
    if (auto st = refuse_unbuilt(s, message); !st) return fail(st.err());
    auto c = std::make_shared<relay::relay_config>(relay_config_from(s));
    std::string why;
    auto jwt = load_jwt_keys(s, why);
    if (!jwt) return refuse(message, "JWT keys", why);
    for (const auto& n : jwt->notes) FERRY_LOG(warn, "JWT key set", {"note", n});
    c->keys = jwt->keys;
    auto host_key = host_key_for(s, why);
    if (!host_key) return refuse(message, "SSH host key", why);
    for (const auto& n : host_key->notes) FERRY_LOG(warn, "SSH host key", {"note", n});
    // Each shard signs with its own key object (signers are not thread-safe): the relay builds
    // them from the seed.
    c->host_key_seed.assign(host_key->seed.bytes.begin(), host_key->seed.bytes.end());
    if (!s.no_tls) {
        tls::server_options to;
        to.cert_file = s.tls_cert;
        to.key_file = s.tls_key;
        if (to.cert_file.empty()) {
            // No certificate configured: a self-signed one in the data dir (development).
            auto dev = load_or_create_tls(s.data_dir, {"localhost", "127.0.0.1"}, why);
            if (!dev) return refuse(message, "TLS", why);
            to.cert_file = dev->cert_file;
            to.key_file = dev->key_file;
            FERRY_LOG(warn, "no TLS certificate configured: using a self-signed one", {"cert", to.cert_file});
        }
        if (s.tls_min_version == "1.2") to.min_version = tls::version::tls1_2;
        auto ctx = tls::server_context::create(to);
        if (!ctx) return refuse(message, "TLS", describe(ctx.err()) + " (cert " + to.cert_file + ", key " + to.key_file + ")");
        c->tls_context = std::move(*ctx);
    }
    if (!reactor::address::parse(s.listen)) return refuse(message, "listen", "expected HOST:PORT, got " + s.listen);
    if (!s.ssh_listen.empty() && !reactor::address::parse(s.ssh_listen))
        return refuse(message, "ssh_listen", "expected HOST:PORT, got " + s.ssh_listen);
    apply_nofile(s, *c);
    return std::shared_ptr<const relay::relay_config>(std::move(c));
}

}  // namespace ferry::control
