// ferryd: the relay. Flag parsing and wiring only (SPEC §5): settings from src/control, the data
// plane from src/relay, the engine from src/reactor.
#include <signal.h>
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <optional>
#include <cstring>
#include <memory>
#include <string>

#include "control/config.hh"
#include "control/keys.hh"
#include "link/tls_transform.hh"
#include "proto/base/log.hh"
#include "proto/tls/context.hh"
#include "reactor/engine.hh"
#include "reactor/ip_prefix.hh"
#include "relay/relay.hh"

namespace {

using namespace ferry;

int fatal(const char* what, const std::string& why) {
    std::fprintf(stderr, "ferryd: %s: %s\n", what, why.c_str());
    return 1;
}

std::string describe(const error& e) {
    std::string s = e.detail ? e.detail : to_string(e.code);
    if (e.sys) {
        s += ": ";
        s += std::strerror(e.sys);
    }
    return s;
}

}  // namespace

int main(int argc, char** argv) {
    std::string message;
    auto parsed = control::parse_relay_args(argc, argv, control::process_env(), message);
    if (!parsed) return control::report_parse_failure(parsed.err(), message, "ferryd");
    const control::relay_settings& s = *parsed;
    if (log::level l; log::parse_level(s.log_level, l)) log::set_level(l);

    // Not built yet: a key that asks for one of these refuses the start (a setting that is
    // accepted must work); the defaults say what they do not do.
    const control::relay_settings defaults;
    if (!s.jwks_url.empty())
        return fatal("jwks_url",
                     "fetching a JWK set over HTTPS is not built yet (control plane): "
                     "download it and use jwks_file");
    if (!s.admin_listen.empty() && s.admin_listen != defaults.admin_listen)
        return fatal("admin_listen",
                     "the admin listener (health, metrics, admin API) is not built yet: "
                     "leave admin_listen unset or empty");
    if (!s.admin_token_file.empty())
        return fatal("admin_token_file",
                     "the admin API is not built yet, so there is nothing for an admin token to "
                     "guard: leave admin_token_file unset");
    if (s.drain_timeout_ms != defaults.drain_timeout_ms)
        return fatal("drain_timeout_ms",
                     "graceful drain is not built yet: SIGTERM stops ferryd at once, "
                     "so a drain timeout would not be honoured; leave it unset");
    if (!s.admin_listen.empty()) {
        FERRY_LOG(
            warn,
            "the admin listener (health, metrics, admin API) is not built yet: nothing listens "
            "on admin_listen",
            {"admin_listen", s.admin_listen});
    }

    // Everything is loaded and checked before anything listens.
    relay::relay_options ro;
    auto jwt = control::load_jwt_keys(s, message);
    if (!jwt) return fatal("JWT keys", message);
    for (const auto& n : jwt->notes) FERRY_LOG(warn, "JWT key set", {"note", n});
    ro.keys = jwt->keys;
    ro.verify = control::make_verify_options(s);
    auto host_key = control::host_key_for(s, message);
    if (!host_key) return fatal("SSH host key", message);
    for (const auto& n : host_key->notes) FERRY_LOG(warn, "SSH host key", {"note", n});
    // Each shard signs with its own key object (signers are not thread-safe): the relay builds
    // them from the seed.
    ro.host_key_seed.assign(host_key->seed.bytes.begin(), host_key->seed.bytes.end());
    ro.public_tunnels = s.public_tunnels;
    ro.base_domain = s.base_domain;
    ro.tls = !s.no_tls;
    ro.lease = std::chrono::seconds(s.lease_s);
    ro.max_agents_per_user = s.max_agents_per_user;
    ro.max_names_per_user = s.max_names_per_user;
    ro.agent_scope = s.agent_scope;
    ro.handshake_timeout = std::chrono::milliseconds(s.handshake_timeout_ms);
    ro.unauthenticated_idle_timeout = std::chrono::milliseconds(s.unauthenticated_idle_timeout_ms);
    ro.max_pipelined_requests = s.max_pipelined_requests;
    ro.max_connections_per_ip = s.max_connections_per_ip;
    for (const std::string& c : s.trusted_proxies) ro.trusted_proxies.push_back(*reactor::ip_prefix::parse(c));
    ro.max_channels_per_tunnel = s.max_channels_per_tunnel;
    ro.user_rate_limit = s.user_rate_limit;
    ro.queue_max = s.queue_max;
    ro.queue_wait = std::chrono::milliseconds(s.queue_wait_ms);
    ro.head_limits.max_head_bytes = s.max_head_bytes;
    ro.head_limits.max_headers = s.max_headers;
    ro.max_body_bytes = s.max_body_bytes;
    ro.head_timeout = std::chrono::milliseconds(s.head_timeout_ms);
    ro.idle_timeout = std::chrono::milliseconds(s.idle_timeout_ms);
    ro.first_byte_timeout = std::chrono::milliseconds(s.first_byte_timeout_ms);
    ro.ws_limits.max_frame_payload = s.ws_max_frame;
    ro.ping_interval = std::chrono::milliseconds(s.ping_interval_ms);
    ro.pong_timeout = std::chrono::milliseconds(s.pong_timeout_ms);

    std::shared_ptr<const tls::server_context> tls_ctx;
    if (!s.no_tls) {
        tls::server_options to;
        to.cert_file = s.tls_cert;
        to.key_file = s.tls_key;
        if (to.cert_file.empty()) {
            // No certificate configured: a self-signed one in the data dir (development).
            auto dev = control::load_or_create_tls(s.data_dir, {"localhost", "127.0.0.1"}, message);
            if (!dev) return fatal("TLS", message);
            to.cert_file = dev->cert_file;
            to.key_file = dev->key_file;
            FERRY_LOG(warn, "no TLS certificate configured: using a self-signed one",
                      {"cert", to.cert_file});
        }
        if (s.tls_min_version == "1.2") to.min_version = tls::version::tls1_2;
        auto ctx = tls::server_context::create(to);
        if (!ctx) return fatal("TLS", describe(ctx.err()) + " (cert " + to.cert_file + ", key " + to.key_file + ")");
        tls_ctx = std::move(*ctx);
    }

    auto addr = reactor::address::parse(s.listen);
    if (!addr) return fatal("listen", "expected HOST:PORT, got " + s.listen);
    std::optional<reactor::address> ssh_addr;
    if (!s.ssh_listen.empty()) {
        auto a = reactor::address::parse(s.ssh_listen);
        if (!a) return fatal("ssh_listen", "expected HOST:PORT, got " + s.ssh_listen);
        ssh_addr = *a;
    }

    // File descriptors: the soft limit up to the hard one (each connection is one), and the
    // connection cap below it with room for the listeners, rings, logs and the admin side, so
    // that a flood of connections is refused by ferryd rather than by accept()'s EMFILE.
    {
        rlimit rl{};
        if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
            const rlim_t was = rl.rlim_cur;
            if (rl.rlim_cur < rl.rlim_max) {
                rl.rlim_cur = rl.rlim_max;
                if (setrlimit(RLIMIT_NOFILE, &rl) != 0) rl.rlim_cur = was;
            }
            const std::uint64_t nofile = rl.rlim_cur == RLIM_INFINITY ? (1u << 20) : std::uint64_t(rl.rlim_cur);
            // The reserve also absorbs accept bursts: the kernel hands out a descriptor for every
            // connection a multishot accept takes before ferryd can refuse or evict, and an
            // evicted connection's descriptor closes a loop iteration later.
            const std::uint64_t reserve = std::max<std::uint64_t>(256, 64 + nofile / 16);
            const std::uint64_t room = nofile > reserve + 16 ? nofile - reserve : 16;
            std::uint64_t cap = s.max_connections;
            if (cap == 0) {
                cap = room;
            } else if (cap > room) {
                FERRY_LOG(warn, "max_connections is above what the open-file limit leaves room for",
                          {"max_connections", cap}, {"nofile", nofile}, {"room", room});
            }
            ro.max_connections = cap;
            FERRY_LOG(info, "open-file limit", {"nofile", nofile}, {"was", std::uint64_t(was)},
                      {"hard", rl.rlim_max == RLIM_INFINITY ? std::uint64_t(0) : std::uint64_t(rl.rlim_max)},
                      {"max_connections", cap}, {"max_connections_per_ip", std::uint64_t(s.max_connections_per_ip)});
        } else {
            ro.max_connections = s.max_connections;
        }
    }

    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
    signal(SIGPIPE, SIG_IGN);
    // SIGHUP's default would end ferryd at once, cutting every tunnel; it gets a meaning
    // (reload) with the control plane. Until then it does nothing.
    signal(SIGHUP, SIG_IGN);

    reactor::config rc;
    rc.shards = s.shards;
    auto eng = reactor::engine::start(rc);
    if (!eng) return fatal("cannot start the reactor", describe(eng.err()));

    relay::relay relay(std::move(ro));
    if (auto st = relay.prepare((*eng)->size()); !st) return fatal("relay", describe(st.err()));
    reactor::connection_factory make = relay.factory();
    if (tls_ctx) make = link::with_tls(tls_ctx, std::move(make));
    auto bound = (*eng)->listen(*addr, std::move(make));
    if (!bound) return fatal("listen", s.listen + ": " + describe(bound.err()));
    std::optional<reactor::address> ssh_bound;
    if (ssh_addr) {
        // Raw SSH: no TLS (SSH encrypts), no WebSocket; the JWT is the SSH password.
        auto b = (*eng)->listen(*ssh_addr, relay.ssh_factory());
        if (!b) return fatal("ssh_listen", s.ssh_listen + ": " + describe(b.err()));
        ssh_bound = *b;
        FERRY_LOG(info, "ssh listener ready", {"ssh_listen", b->to_string()});
    }

    FERRY_LOG(info, "ferryd ready", {"listen", bound->to_string()}, {"tls", tls_ctx ? 1 : 0},
              {"shards", (*eng)->size()}, {"ring_flags", (*eng)->ring_flags()},
              {"host_key", relay.host_key_fingerprint()});
    std::printf("listening on %s\n", bound->to_string().c_str());
    if (ssh_bound) std::printf("ssh listening on %s\n", ssh_bound->to_string().c_str());
    std::fflush(stdout);

    int sig = 0;
    sigwait(&stop_signals, &sig);
    FERRY_LOG(info, "ferryd stopping: open connections are cut (no graceful drain yet)",
              {"signal", sig});
    (*eng)->stop();
    (*eng)->wait();
    return 0;
}
