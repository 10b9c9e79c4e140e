// SSH data path and handshake costs, no I/O.
//   ssh_seal_open/<suite>: seal a 32 KiB payload packet in place and open it again (as the
//     receiving side does); bytes/s counts the payload once, i.e. the rate at which one core can
//     both encrypt and decrypt a stream. ssh_seal/<suite> is the sending half alone.
//   ssh_packet_roundtrip: the same through packet_layer (framing, random padding, payload copy
//     into a fresh buffer_chain block, in-place open).
//   ssh_handshake: a full curve25519/ed25519 key exchange, client and server both in this thread.
#include <benchmark/benchmark.h>

#include <cstring>
#include <vector>

#include "proto/ssh/cipher.hh"
#include "proto/ssh/packet.hh"
#include "proto/ssh/transport.hh"

using namespace ferry;
using namespace ferry::ssh;

namespace {

struct suite {
    cipher_id c;
    mac_id m;
};
const suite kSuites[] = {
    {cipher_id::aes256_gcm, mac_id::none},        {cipher_id::aes128_gcm, mac_id::none},
    {cipher_id::chacha20_poly1305, mac_id::none}, {cipher_id::aes256_ctr, mac_id::hmac_sha2_256_etm},
    {cipher_id::aes256_ctr, mac_id::hmac_sha2_256}, {cipher_id::aes128_ctr, mac_id::hmac_sha2_512},
};
constexpr std::size_t kPayload = 32 * 1024;

std::unique_ptr<packet_cipher> make(const suite& s) {
    std::vector<std::byte> key(info(s.c).key_len, std::byte{3}), iv(16, std::byte{5}),
        mk(info(s.m).key_len, std::byte{7});
    return make_cipher(s.c, s.m, key, iv, mk).value();
}

// A plaintext packet (length, padding length, payload, padding) laid out for `c`.
std::vector<std::byte> packet_for(const packet_cipher& c, std::size_t& body) {
    std::size_t blk = std::max<std::size_t>(8, c.block_size());
    std::size_t aligned = 4 + 1 + kPayload - (c.length_in_clear() ? 4 : 0);
    std::size_t pad = blk - aligned % blk;
    if (pad < 4) pad += blk;
    body = 4 + 1 + kPayload + pad;
    std::vector<std::byte> p(body + c.tag_size(), std::byte{0x42});
    store_be32(p.data(), std::uint32_t(body - 4));
    p[4] = std::byte(pad);
    return p;
}

void set_label(benchmark::State& st, const suite& s) {
    std::string l(info(s.c).name);
    if (!info(s.c).aead) l += std::string(" ") + std::string(info(s.m).name);
    st.SetLabel(l);
}

void BM_ssh_seal_open(benchmark::State& st) {
    const suite& s = kSuites[st.range(0)];
    auto tx = make(s), rx = make(s);
    std::size_t body = 0;
    auto p = packet_for(*tx, body);
    mut_bytes pkt(p.data(), body), tag(p.data() + body, tx->tag_size());
    std::uint32_t seq = 0;
    for (auto _ : st) {
        if (!tx->seal(seq, pkt, tag)) st.SkipWithError("seal");
        if (!rx->open_length(seq, pkt.first(rx->length_bytes()))) st.SkipWithError("length");
        if (!rx->open(seq, pkt, tag)) st.SkipWithError("open");
        ++seq;
    }
    st.SetBytesProcessed(std::int64_t(st.iterations()) * std::int64_t(kPayload));
    set_label(st, s);
}
BENCHMARK(BM_ssh_seal_open)->DenseRange(0, 5)->Name("ssh_seal_open");

void BM_ssh_seal(benchmark::State& st) {
    const suite& s = kSuites[st.range(0)];
    auto tx = make(s);
    std::size_t body = 0;
    auto p = packet_for(*tx, body);
    mut_bytes pkt(p.data(), body), tag(p.data() + body, tx->tag_size());
    std::uint32_t seq = 0;
    for (auto _ : st) {
        if (!tx->seal(seq++, pkt, tag)) st.SkipWithError("seal");
    }
    st.SetBytesProcessed(std::int64_t(st.iterations()) * std::int64_t(kPayload));
    set_label(st, s);
}
BENCHMARK(BM_ssh_seal)->DenseRange(0, 5)->Name("ssh_seal");

class bench_rng final : public rng {
public:
    status fill(mut_bytes out) noexcept override {
        for (auto& b : out) {
            s_ ^= s_ << 13;
            s_ ^= s_ >> 7;
            s_ ^= s_ << 17;
            b = std::byte(s_ >> 24);
        }
        return {};
    }

private:
    std::uint64_t s_ = 88172645463325252ull;
};

// range(1): 0 = the payload as one piece (copied into the packet), 1 = a 9-byte message head and
// the data from its own buffer, as CHANNEL_DATA is written (packet_cipher::seal_from).
void BM_ssh_packet_roundtrip(benchmark::State& st) {
    const suite& s = kSuites[st.range(0)];
    const bool split = st.range(1) != 0;
    bench_rng r;
    packet_layer tx(packet_limits{}, r), rx(packet_limits{}, r);
    tx.set_send_cipher(make(s));
    rx.set_recv_cipher(make(s));
    std::vector<std::byte> payload(kPayload, std::byte{0x61});
    for (auto _ : st) {
        buffer_chain out;
        const bool ok = split ? bool(tx.write(bytes(payload).first(9), bytes(payload).subspan(9), out))
                              : bool(tx.write(payload, out));
        if (!ok) st.SkipWithError("write");
        // The sealed packet is one contiguous fragment; the receiver opens it in place, as it
        // would in its receive buffer.
        mut_bytes in = out.front().mut_view();
        auto p = rx.read(in);
        if (!p || !*p) st.SkipWithError("read");
    }
    st.SetBytesProcessed(std::int64_t(st.iterations()) * std::int64_t(kPayload));
    set_label(st, s);
}
BENCHMARK(BM_ssh_packet_roundtrip)->ArgsProduct({{0, 1, 2}, {0, 1}})->Name("ssh_packet_roundtrip");

void pump_once(transport& from, buffer_chain& out, transport& to, buffer_chain& to_out,
               std::vector<std::byte>& scratch, int& done) {
    if (out.empty()) return;
    scratch.resize(out.size());
    out.peek(scratch);
    out.clear();
    mut_bytes in(scratch);
    for (;;) {
        auto ev = to.feed(in, to_out, 0);
        if (!ev || ev->type == event_type::need_more) break;
        if (ev->type == event_type::handshake_done) ++done;
    }
}

void BM_ssh_handshake(benchmark::State& st) {
    auto r = system_rng::create();
    std::array<std::byte, 32> seed{};
    seed[0] = std::byte{1};
    auto host = ed25519_private::from_seed(seed);
    pinned_host_keys verifier;
    verifier.pin(ed25519_key_blob(host->public_key()));
    std::vector<std::byte> scratch;
    for (auto _ : st) {
        transport_config cc, sc;
        cc.self = role::client;
        cc.random = r->get();
        cc.verifier = &verifier;
        sc.self = role::server;
        sc.random = r->get();
        sc.host_key = &*host;
        transport c(cc), s(sc);
        buffer_chain co, so;
        (void)c.start(co, 0);
        (void)s.start(so, 0);
        int done = 0;
        for (int i = 0; i < 6 && done < 2; ++i) {
            pump_once(c, co, s, so, scratch, done);
            pump_once(s, so, c, co, scratch, done);
        }
        if (done != 2) st.SkipWithError("handshake failed");
    }
    st.SetItemsProcessed(std::int64_t(st.iterations()));
    st.SetLabel("handshakes (client+server)");
}
BENCHMARK(BM_ssh_handshake)->Name("ssh_handshake");

}  // namespace
