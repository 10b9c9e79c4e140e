// ferryd: the relay. Flag parsing and wiring only (SPEC §5): settings and the relay's
// configuration from src/control, the data plane from src/relay, the engine from src/reactor.
#include <signal.h>

#include <cstdio>
#include <memory>
#include <optional>
#include <string>

#include "control/config.hh"
#include "control/relay_setup.hh"
#include "link/tls_transform.hh"
#include "proto/base/log.hh"
#include "reactor/engine.hh"
#include "relay/relay.hh"

using namespace ferry;

namespace {

int fatal(const char* what, const std::string& why) {
    std::fprintf(stderr, "ferryd: %s: %s\n", what, why.c_str());
    return 1;
}

using control::describe;

}  // namespace

int main(int argc, char** argv) {
    std::string message;
    auto parsed = control::parse_relay_args(argc, argv, control::process_env(), message);
    if (!parsed) return control::report_parse_failure(parsed.err(), message, "ferryd");
    const control::relay_settings& s = *parsed;
    if (log::level l; log::parse_level(s.log_level, l)) log::set_level(l);

    // Everything is loaded and checked before anything listens.
    auto built = control::build_relay_config(s, message);
    if (!built) {
        std::fprintf(stderr, "ferryd: %s\n", message.c_str());
        return 1;
    }
    std::shared_ptr<const relay::relay_config> cfg = std::move(*built);

    // Stop signals are taken by sigwait() below only: blocked before any thread exists.
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

    relay::relay relay(cfg);
    if (auto st = relay.prepare((*eng)->size()); !st) return fatal("relay", describe(st.err()));
    reactor::connection_factory make = relay.factory();
    if (cfg->tls_context) make = link::with_tls(cfg->tls_context, std::move(make));
    auto bound = (*eng)->listen(*reactor::address::parse(cfg->listen), std::move(make));
    if (!bound) return fatal("listen", cfg->listen + ": " + describe(bound.err()));
    std::optional<reactor::address> ssh_bound;
    if (!cfg->ssh_listen.empty()) {
        // Raw SSH: no TLS (SSH encrypts), no WebSocket; the JWT is the SSH password.
        auto b = (*eng)->listen(*reactor::address::parse(cfg->ssh_listen), relay.ssh_factory());
        if (!b) return fatal("ssh_listen", cfg->ssh_listen + ": " + describe(b.err()));
        ssh_bound = *b;
        FERRY_LOG(info, "ssh listener ready", {"ssh_listen", b->to_string()});
    }

    FERRY_LOG(info, "ferryd ready", {"listen", bound->to_string()}, {"tls", cfg->tls_context ? 1 : 0},
              {"shards", (*eng)->size()}, {"ring_flags", (*eng)->ring_flags()},
              {"host_key", relay.host_key_fingerprint()});
    std::printf("listening on %s\n", bound->to_string().c_str());
    if (ssh_bound) std::printf("ssh listening on %s\n", ssh_bound->to_string().c_str());
    std::fflush(stdout);

    int sig = 0;
    sigwait(&stop_signals, &sig);
    FERRY_LOG(info, "ferryd stopping: open connections are cut (no graceful drain yet)", {"signal", sig});
    (*eng)->stop();
    (*eng)->wait();
    return 0;
}
