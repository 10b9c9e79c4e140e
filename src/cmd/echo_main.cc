// ferry-echo: an echo server on the reactor, for integration tests, bench/e2e and the demo.
//
//   ferry-echo --tcp --listen 127.0.0.1:0 [--shards N] [--buf-size B] [--buf-count C]
//   ferry-echo --ws  --listen 127.0.0.1:0 [--shards N] [--max-frame B] [--deflate] [--head-timeout MS]
//   either mode: [--tls-cert PEM --tls-key PEM [--tls-min-version 1.2|1.3]]  (TLS on the listener)
//
// Prints one line "listening on ADDR:PORT" on stdout when ready, runs until SIGINT/SIGTERM.
// Modes are separate functions sharing the engine set-up, so a new mode (--ws) is one more
// factory plus one more case in main().
#include <signal.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>

#include "cmd/ws_echo.hh"
#include "link/tls_transform.hh"
#include "proto/base/log.hh"
#include "proto/tls/context.hh"
#include "reactor/engine.hh"

namespace {

using namespace ferry;
using namespace ferry::reactor;

// TCP echo: every received slice is linked into the output as is (zero-copy for ring-backed
// slices above buffer_chain::copy_threshold). If the peer does not read, output grows to the
// high watermark and reading pauses until it drains to half.
class tcp_echo final : public connection {
    void on_data(slice data) override { (void)send(std::move(data)); }
    void on_output_high() override { pause_reading(); }
    void on_output_low() override { resume_reading(); }
};

struct options {
    enum class mode { none, tcp, ws } mode = mode::none;
    std::string listen = "127.0.0.1:0";
    config cfg;
    link::ws_server_options ws;
    tls::server_options tls;  // used when cert and key are given
};

[[noreturn]] void usage(const char* msg) {
    std::fprintf(stderr,
                 "ferry-echo: %s\n"
                 "usage: ferry-echo --tcp|--ws [--listen ADDR:PORT] [--shards N] [--buf-size B] [--buf-count C]\n"
                 "                  [--max-frame BYTES] [--max-message BYTES] [--deflate] [--head-timeout MS]   (--ws only)\n"
                 "                  [--tls-cert PEM --tls-key PEM [--tls-min-version 1.2|1.3]]\n",
                 msg);
    std::exit(2);
}

unsigned parse_uint(const char* s, const char* flag) {
    char* end = nullptr;
    unsigned long v = std::strtoul(s, &end, 10);
    if (!*s || *end || v > 1u << 30) usage((std::string("bad value for ") + flag).c_str());
    return static_cast<unsigned>(v);
}

options parse(int argc, char** argv) {
    options o;
    for (int i = 1; i < argc; ++i) {
        std::string_view a = argv[i];
        auto value = [&]() -> const char* {
            if (i + 1 >= argc) usage((std::string("missing value for ") + argv[i]).c_str());
            return argv[++i];
        };
        if (a == "--tcp") o.mode = options::mode::tcp;
        else if (a == "--ws") o.mode = options::mode::ws;
        else if (a == "--max-frame") o.ws.limits.max_frame_payload = parse_uint(value(), "--max-frame");
        else if (a == "--max-message") o.ws.limits.max_message = parse_uint(value(), "--max-message");
        else if (a == "--head-timeout")  // the upgrade request (and, with TLS, the handshake before it)
            o.ws.head_timeout = std::chrono::milliseconds(parse_uint(value(), "--head-timeout"));
        else if (a == "--deflate") o.ws.handshake.deflate.enabled = true;
        else if (a == "--listen") o.listen = value();
        else if (a == "--tls-cert") o.tls.cert_file = value();
        else if (a == "--tls-key") o.tls.key_file = value();
        else if (a == "--tls-min-version") {
            std::string_view v = value();
            if (v == "1.2") o.tls.min_version = tls::version::tls1_2;
            else if (v == "1.3") o.tls.min_version = tls::version::tls1_3;
            else usage("--tls-min-version takes 1.2 or 1.3");
        }
        else if (a == "--shards") o.cfg.shards = parse_uint(value(), "--shards");
        else if (a == "--buf-size") o.cfg.buf_size = parse_uint(value(), "--buf-size");
        else if (a == "--buf-count") o.cfg.buf_count = parse_uint(value(), "--buf-count");
        else if (a == "-h" || a == "--help") usage("help");
        else usage((std::string("unknown flag ") + argv[i]).c_str());
    }
    if (o.mode == options::mode::none) usage("choose a mode (--tcp or --ws)");
    if (o.tls.cert_file.empty() != o.tls.key_file.empty()) usage("--tls-cert and --tls-key go together");
    return o;
}

// Starts the engine, listens with `make`, waits for SIGINT/SIGTERM, stops. Returns exit code.
int serve(const options& o, connection_factory make) {
    auto addr = address::parse(o.listen);
    if (!addr) usage("bad --listen address");
    // TLS material is loaded and checked before anything listens; the context is then shared
    // read-only by every shard.
    const bool use_tls = !o.tls.cert_file.empty();
    if (use_tls) {
        auto ctx = tls::server_context::create(o.tls);
        if (!ctx) {
            const error& e = ctx.err();
            std::fprintf(stderr, "ferry-echo: TLS: %s (cert %s, key %s%s%s)\n", e.detail, o.tls.cert_file.c_str(),
                         o.tls.key_file.c_str(), e.sys ? ": " : "", e.sys ? std::strerror(e.sys) : "");
            return 1;
        }
        make = link::with_tls(std::move(*ctx), std::move(make));
    }

    // Block the stop signals before any thread exists so only sigwait() below sees them.
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
    signal(SIGPIPE, SIG_IGN);

    auto eng = engine::start(o.cfg);
    if (!eng) {
        const error& e = eng.err();
        std::fprintf(stderr, "ferry-echo: cannot start the reactor: %s (%s, errno %d: %s)\n", e.detail,
                     to_string(e.code), e.sys, e.sys ? std::strerror(e.sys) : "-");
        return 1;
    }
    auto bound = (*eng)->listen(*addr, std::move(make));
    if (!bound) {
        std::fprintf(stderr, "ferry-echo: listen %s: %s (errno %d)\n", o.listen.c_str(), bound.err().detail,
                     bound.err().sys);
        return 1;
    }
    FERRY_LOG(info, "ferry-echo ready", {"shards", (*eng)->size()}, {"tls", use_tls ? 1 : 0},
              {"ring_flags", (*eng)->ring_flags()},
              {"buf_size", o.cfg.buf_size}, {"buf_count", o.cfg.buf_count});
    std::printf("listening on %s\n", bound->to_string().c_str());
    std::fflush(stdout);

    int sig = 0;
    sigwait(&stop_signals, &sig);
    (*eng)->stop();
    (*eng)->wait();
    shard_stats st = (*eng)->total_stats();
    FERRY_LOG(info, "ferry-echo stopped", {"accepts", st.accepts}, {"loops", st.loops}, {"cqes", st.cqes},
              {"recv_cqes", st.recv_cqes}, {"sends", st.sends}, {"recv_bytes", st.recv_bytes},
              {"enobufs", st.enobufs}, {"recv_copies", st.recv_copies}, {"short_sends", st.short_sends},
              {"stale_cqes", st.stale_cqes});
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    options o = parse(argc, argv);
    switch (o.mode) {
    case options::mode::tcp:
        return serve(o, [](shard&) { return std::make_unique<tcp_echo>(); });
    case options::mode::ws:
        return serve(o, cmd::ws_echo_factory(o.ws));
    case options::mode::none:
        break;
    }
    return 2;
}
