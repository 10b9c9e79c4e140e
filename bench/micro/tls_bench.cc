// TLS through src/proto/tls (wolfSSL on memory IO), no sockets: record throughput for 16 KiB
// records (TLS 1.3, TLS13-AES256-GCM-SHA384) and handshakes per second (both ends in one
// thread: a figure is one client plus one server handshake).
#include <benchmark/benchmark.h>

#include <chrono>
#include <string>

#include "proto/tls/certgen.hh"
#include "proto/tls/context.hh"
#include "proto/tls/session.hh"

namespace {

using namespace ferry;

struct fixture {
    std::shared_ptr<const tls::server_context> server;
    std::shared_ptr<const tls::client_context> client;
};

const fixture& contexts() {
    static const fixture f = [] {
        auto cert = tls::generate_certificate({}, std::chrono::system_clock::now());
        tls::server_options so;
        so.cert_pem = cert->cert_pem;
        so.key_pem = cert->key_pem;
        tls::client_options co;
        co.ca_pem = cert->cert_pem;
        return fixture{*tls::server_context::create(so), *tls::client_context::create(co)};
    }();
    return f;
}

// Feeds all of `wire` to `s`, discarding plaintext; false on error.
bool drain(tls::session& s, buffer_chain& wire, buffer_chain& reply, std::size_t* plain = nullptr) {
    while (!wire.empty()) {
        slice f = wire.pop_front();
        bytes in = f.view();
        for (;;) {
            auto ev = s.next(in, reply);
            if (!ev) return false;
            if (ev->type == tls::event_type::need_more) break;
            if (plain && ev->type == tls::event_type::data) *plain += ev->data.size();
        }
    }
    return true;
}

struct pair {
    tls::session c, s;
    buffer_chain c2s, s2c;
};

bool handshake(pair& p) {
    if (!p.c.start(p.c2s)) return false;
    for (int i = 0; i < 8 && !(p.c.handshake_done() && p.s.handshake_done() && p.c2s.empty() && p.s2c.empty()); ++i) {
        if (!drain(p.s, p.c2s, p.s2c) || !drain(p.c, p.s2c, p.c2s)) return false;
    }
    return p.c.handshake_done() && p.s.handshake_done();
}

pair connected(std::shared_ptr<const tls::resumption> resume = {}) {
    const fixture& f = contexts();
    pair p{tls::session::client(f.client, "localhost", std::move(resume)).value(), tls::session::server(f.server).value()};
    if (!handshake(p)) std::abort();
    return p;
}

void BM_tls13_record_encrypt_16k(benchmark::State& st) {
    pair p = connected();
    std::string plain(16384, 'x');
    buffer_chain out;
    for (auto _ : st) {
        if (!p.c.write(as_bytes(plain), out)) st.SkipWithError("write failed");
        out.clear();
    }
    st.SetBytesProcessed(int64_t(st.iterations()) * int64_t(plain.size()));
    st.SetLabel(std::string(p.c.cipher_name()));
}
BENCHMARK(BM_tls13_record_encrypt_16k);

void BM_tls13_record_decrypt_16k(benchmark::State& st) {
    // Records must be decrypted in sequence: each batch of 64 is sealed untimed, then opened.
    pair p = connected();
    std::string plain(16384, 'x');
    buffer_chain wire, reply;
    std::size_t got = 0;
    constexpr int batch = 64;
    while (st.KeepRunningBatch(batch)) {
        st.PauseTiming();
        for (int i = 0; i < batch; ++i) (void)p.c.write(as_bytes(plain), wire);
        st.ResumeTiming();
        if (!drain(p.s, wire, reply, &got)) st.SkipWithError("decrypt failed");
    }
    if (got != std::size_t(st.iterations()) * plain.size()) st.SkipWithError("lost bytes");
    st.SetBytesProcessed(int64_t(st.iterations()) * int64_t(plain.size()));
    st.SetLabel(std::string(p.s.cipher_name()));
}
BENCHMARK(BM_tls13_record_decrypt_16k);

void BM_tls13_handshake_full(benchmark::State& st) {
    for (auto _ : st) {
        pair p = connected();
        benchmark::DoNotOptimize(p.c.handshake_done());
    }
    st.SetItemsProcessed(int64_t(st.iterations()));
    st.SetLabel("ECDSA P-256 cert, X25519; client + server");
}
BENCHMARK(BM_tls13_handshake_full);

void BM_tls13_handshake_resumed(benchmark::State& st) {
    pair first = connected();
    buffer_chain none;
    // The ticket came with the server's last flight; the client has read it in handshake().
    auto ticket = first.c.resumption_ticket();
    if (!ticket) {
        st.SkipWithError("no ticket");
        return;
    }
    for (auto _ : st) {
        pair p = connected(ticket);
        if (!p.s.resumed()) st.SkipWithError("not resumed");
    }
    st.SetItemsProcessed(int64_t(st.iterations()));
    st.SetLabel("PSK + X25519; client + server");
}
BENCHMARK(BM_tls13_handshake_resumed);

}  // namespace
