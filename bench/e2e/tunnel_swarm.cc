// tunnel_swarm: many agent sessions from one process, for the relay's memory per idle tunnel and
// its tunnel set-up rate (issue 5). Each session is a real `agent::agent` (the code `ferry agent`
// runs: TCP, optional TLS, GET /tunnel upgrade, SSH client handshake with curve25519 and
// ed25519, `none` auth with the JWT, one `tcpip-forward` per session) on one reactor shard, with
// its own token (sub = PREFIX-i, so that the relay's agents-per-user limit does not apply) and
// its own tunnel name (PREFIX-i).
//
// Why ferry's own agent code and not an independent client: an independent WebSocket + SSH
// client with curve25519/ed25519/AES-GCM is thousands of lines, and Python (websockets plus a
// hand-written SSH client on `cryptography`) costs milliseconds of interpreter time per
// handshake, so it would measure itself long before a relay core runs out. The relay under test
// sees exactly what real agents send. The tool prints its own CPU time, so the reader can check
// that it was not the bottleneck.
//
//   tunnel_swarm --relay IP:PORT --secret-file FILE --target IP:PORT
//                [--tls [--sni NAME] [--ca-file FILE]] [--concurrency W] [--prefix P]
//
// Driven on stdin, one command per line, so that the caller can sample the relay between steps:
//   go N      start N more sessions, at most W handshakes in flight; when all N are up (or
//             failed) print one line:
//             done started=N up=U failed=F seconds=S setups_per_s=R setup_ms_p50=.. p99=..
//             max=.. cpu_s=C (this process's CPU time during the step)
//   EOF       abandon every session and exit.
// First line printed: "ready" (tokens minted, reactor up). Exit code 0; 1 on bad arguments.
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <iostream>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "agent/agent.hh"
#include "control/keys.hh"
#include "proto/base/log.hh"
#include "proto/jwt/mint.hh"
#include "proto/ssh/crypto.hh"
#include "proto/tls/context.hh"
#include "reactor/engine.hh"
#include "reactor/timer.hh"

using namespace ferry;
using steady = std::chrono::steady_clock;

namespace {

struct args {
    std::string relay, secret_file, target, sni = "localhost", ca_file, prefix = "swarm";
    bool tls = false;
    unsigned concurrency = 64;
};

int usage(const char* why) {
    std::fprintf(stderr,
                 "tunnel_swarm: %s\nusage: tunnel_swarm --relay IP:PORT --secret-file FILE --target IP:PORT "
                 "[--tls [--sni NAME] [--ca-file FILE]] [--concurrency W] [--prefix P]\n",
                 why);
    return 1;
}

double cpu_seconds() {
    rusage ru{};
    ::getrusage(RUSAGE_SELF, &ru);
    return double(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) + double(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

// All of this lives on the shard; the main thread only posts commands and waits for `done`.
struct swarm {
    reactor::shard& sh;
    const args& a;
    agent::agent_options base;
    std::vector<std::string>& tokens;
    ssh::rng& rng;
    std::vector<std::unique_ptr<agent::agent>> agents;
    // The current step.
    std::size_t next = 0, step_end = 0;
    std::vector<std::size_t> in_flight;           // indexes into agents
    std::vector<steady::time_point> started_at;   // per agent
    std::vector<double> setup_ms;                 // this step's successful set-ups
    unsigned failed = 0;
    steady::time_point step_start;
    double cpu_start = 0;
    reactor::timer tick;
    std::function<void(std::string)> report;

    swarm(reactor::shard& s, const args& ar, agent::agent_options b, std::vector<std::string>& t, ssh::rng& r)
        : sh(s), a(ar), base(std::move(b)), tokens(t), rng(r), tick(s, [this] { poll(); }) {}

    void go(std::size_t n, std::function<void(std::string)> done) {
        report = std::move(done);
        step_end = std::min(tokens.size(), next + n);
        setup_ms.clear();
        failed = 0;
        step_start = steady::now();
        cpu_start = cpu_seconds();
        fill();
        poll();
    }

    void fill() {
        while (in_flight.size() < a.concurrency && next < step_end) {
            const std::size_t i = next++;
            agent::agent_options o = base;
            std::string tok = tokens[i];
            o.token = [tok]() -> result<std::string> { return tok; };
            o.tunnels[0].name = a.prefix + "-" + std::to_string(i);
            agents.push_back(std::make_unique<agent::agent>(sh, std::move(o), rng, [](int) {}));
            started_at.push_back(steady::now());
            in_flight.push_back(i);
            agents[i]->start();
        }
    }

    // Every 200 us: which in-flight sessions got their forward (up) or failed.
    void poll() {
        const steady::time_point now = steady::now();
        for (std::size_t k = 0; k < in_flight.size();) {
            const std::size_t i = in_flight[k];
            const agent::agent& ag = *agents[i];
            const bool up = ag.stats().forwards_ok > 0;
            const bool bad = ag.stats().forwards_refused > 0 || ag.state() == agent::agent_state::stopped ||
                             ag.state() == agent::agent_state::waiting;
            if (up || bad) {
                if (up) setup_ms.push_back(std::chrono::duration<double, std::milli>(now - started_at[i]).count());
                else ++failed;
                in_flight[k] = in_flight.back();
                in_flight.pop_back();
            } else {
                ++k;
            }
        }
        fill();
        if (in_flight.empty() && next >= step_end) return finish(now);
        tick.arm_after(std::chrono::microseconds(200));
    }

    void finish(steady::time_point now) {
        const double secs = std::chrono::duration<double>(now - step_start).count();
        std::vector<double> v = setup_ms;
        std::sort(v.begin(), v.end());
        auto pct = [&](double p) { return v.empty() ? 0.0 : v[std::min(v.size() - 1, std::size_t(p * double(v.size())))]; };
        char line[512];
        std::snprintf(line, sizeof line,
                      "done started=%zu up=%zu failed=%u seconds=%.4f setups_per_s=%.1f setup_ms_p50=%.2f "
                      "setup_ms_p99=%.2f setup_ms_max=%.2f cpu_s=%.3f total_up=%zu",
                      v.size() + failed, v.size(), failed, secs, secs > 0 ? double(v.size()) / secs : 0.0, pct(0.5),
                      pct(0.99), v.empty() ? 0.0 : v.back(), cpu_seconds() - cpu_start, count_up());
        report(line);
    }

    std::size_t count_up() const {
        std::size_t n = 0;
        for (const auto& ag : agents) n += ag->state() == agent::agent_state::up;
        return n;
    }
};

}  // namespace

int main(int argc, char** argv) {
    args a;
    for (int i = 1; i < argc; ++i) {
        std::string f = argv[i];
        auto val = [&]() -> const char* { return i + 1 < argc ? argv[++i] : nullptr; };
        const char* v = nullptr;
        if (f == "--tls") {
            a.tls = true;
            continue;
        }
        if (!(v = val())) return usage((f + " needs a value").c_str());
        if (f == "--relay") a.relay = v;
        else if (f == "--secret-file") a.secret_file = v;
        else if (f == "--target") a.target = v;
        else if (f == "--sni") a.sni = v;
        else if (f == "--ca-file") a.ca_file = v;
        else if (f == "--prefix") a.prefix = v;
        else if (f == "--concurrency") a.concurrency = unsigned(std::max(1, std::atoi(v)));
        else return usage(("unknown flag " + f).c_str());
    }
    if (a.relay.empty() || a.secret_file.empty() || a.target.empty()) return usage("--relay, --secret-file and --target are required");
    log::set_level(log::level::error);

    auto relay = reactor::address::parse(a.relay);
    auto target = reactor::address::parse(a.target);
    if (!relay || !target) return usage("--relay and --target take a numeric IP:PORT");
    std::string message;
    auto secret = control::read_hs256_secret(a.secret_file, message);
    if (!secret) return usage(("--secret-file: " + message).c_str());

    agent::agent_options o;
    // With TLS the agent connects to relay_host (the certificate's name, SNI); `resolve` maps it
    // to the given address without DNS.
    o.relay_host = a.tls ? a.sni : a.relay.substr(0, a.relay.rfind(':'));
    o.relay_port = relay->port();
    const reactor::address fixed = *relay;
    o.resolve = [fixed](const std::string&, std::uint16_t) -> result<reactor::address> { return fixed; };
    if (a.tls) {
        tls::client_options co;
        co.ca_file = a.ca_file;
        if (a.ca_file.empty()) co.verify = tls::verify_mode::insecure_skip_verify;
        auto ctx = tls::client_context::create(co);
        if (!ctx) return usage(ctx.err().detail);
        o.tls = *ctx;
    }
    o.tunnels.push_back({"", a.target, *target});
    o.known_hosts = "";    // in memory: each session trusts the relay's key on first use
    o.max_attempts = 1;    // a failure is counted, not retried
    o.max_channels = 16;
    o.timings.connect_timeout = std::chrono::seconds(30);
    o.timings.ssh_timeout = std::chrono::seconds(30);
    // Idle tunnels: keep the relay's pings answered, send few of our own.
    o.timings.ws_ping_interval = std::chrono::seconds(600);
    o.timings.ws_pong_timeout = std::chrono::seconds(1200);
    o.timings.keepalive_interval = std::chrono::seconds(600);

    // Tokens are minted before the clock starts (a relay does not pay for them either).
    std::vector<std::string> tokens;
    constexpr std::size_t max_sessions = 100000;
    tokens.reserve(1024);
    const std::int64_t now = std::int64_t(std::time(nullptr));
    auto mint = [&](std::size_t i) -> bool {
        jwt::mint_request r;
        r.sub = a.prefix + "-" + std::to_string(i);
        r.ttl = 6 * 3600;
        r.scope = "ferry:agent";  // an agent token (the relay refuses others on /tunnel)
        auto t = jwt::mint_hs256(bytes(secret->data(), secret->size()), r, now);
        if (!t) return false;
        tokens.push_back(std::move(*t));
        return true;
    };

    reactor::config rc;
    rc.shards = 1;
    rc.pin_threads = false;  // the caller pins the process with taskset
    auto eng = reactor::engine::start(rc);
    if (!eng) return usage(eng.err().detail);
    reactor::engine& e = **eng;
    auto rng = ssh::system_rng::create();
    if (!rng) return usage("no random generator");
    std::unique_ptr<ssh::system_rng> random = std::move(*rng);

    std::mutex mu;
    std::condition_variable cv;
    std::string last;
    bool have = false;
    auto sw = std::make_shared<std::unique_ptr<swarm>>();
    e.post(0, [&, sw](reactor::shard& s) { *sw = std::make_unique<swarm>(s, a, o, tokens, *random); });
    std::printf("ready\n");
    std::fflush(stdout);

    std::string cmd;
    while (std::getline(std::cin, cmd)) {
        if (cmd.rfind("go ", 0) != 0) {
            std::fprintf(stderr, "tunnel_swarm: unknown command '%s'\n", cmd.c_str());
            continue;
        }
        const long n = std::atol(cmd.c_str() + 3);
        if (n <= 0 || tokens.size() + std::size_t(n) > max_sessions) {
            std::fprintf(stderr, "tunnel_swarm: go N: 1..%zu sessions in all\n", max_sessions);
            continue;
        }
        const std::size_t want = tokens.size() + std::size_t(n);
        // Minted on this thread while the shard is idle (the swarm reads `tokens` only in go()).
        while (tokens.size() < want) {
            if (!mint(tokens.size())) return usage("cannot mint a token (secret shorter than 32 bytes?)");
        }
        have = false;
        e.post(0, [&, sw, n](reactor::shard&) {
            (*sw)->go(std::size_t(n), [&](std::string line) {
                std::lock_guard<std::mutex> g(mu);
                last = std::move(line);
                have = true;
                cv.notify_all();
            });
        });
        std::unique_lock<std::mutex> g(mu);
        cv.wait(g, [&] { return have; });
        std::printf("%s\n", last.c_str());
        std::fflush(stdout);
    }
    // EOF: drop every session at once (the relay sees the connections close), then stop.
    std::atomic<bool> gone{false};
    e.post(0, [&, sw](reactor::shard&) {
        sw->reset();
        gone.store(true);
        gone.notify_all();
    });
    gone.wait(false);
    e.stop();
    e.wait();
    return 0;
}
