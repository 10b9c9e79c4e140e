// WebSocket codec micro benchmarks (src/proto/ws), no I/O.
//   BM_ws_parse_unmask/16384   server decoder over masked 16 KiB binary frames: parse + in-place
//                              unmask, bytes/s (issue 2 target: >= 8 GB/s)
//   BM_ws_parse_unmask/64      the same with 64-byte frames, frames/s (target: >= 20 M/s/core)
//   BM_ws_parse_unmask_cold    16 KiB frames from a 64 MiB buffer: DRAM-bound lower bound
//   BM_ws_parse_text/16384     16 KiB ASCII text frames: parse + unmask + UTF-8 check
//   BM_ws_utf8/ascii|mixed     the UTF-8 validator alone, bytes/s
//   BM_ws_send_server/...      encoder, server role: header written, payload linked
//   BM_ws_send_client_copy/... encoder, client role: one masked copy
// The receive buffer is unmasked in place on every pass (XOR toggles it between masked and
// plain), which is exactly the work the relay does per received byte.
#include <benchmark/benchmark.h>

#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "proto/ws/decoder.hh"
#include "proto/ws/encoder.hh"
#include "proto/ws/mask.hh"
#include "proto/ws/utf8.hh"

using namespace ferry;
using namespace ferry::ws;

namespace {

// `count` masked frames of `size` payload bytes each, as a client sends them.
std::vector<std::byte> masked_frames(std::size_t size, std::size_t count, opcode op, bool text) {
    std::mt19937 rng(1);
    std::vector<std::byte> out;
    for (std::size_t i = 0; i < count; ++i) {
        frame_header h;
        h.op = op;
        h.masked = true;
        h.mask_key = static_cast<std::uint32_t>(rng());
        // Text: ASCII keys, so masked and unmasked ASCII are both valid UTF-8 and the buffer can
        // be decoded pass after pass (each pass toggles it).
        if (text) h.mask_key &= 0x7F7F7F7Fu;
        h.payload_len = size;
        std::byte hb[max_header_size];
        const std::size_t hn = encode_header(hb, h);
        out.insert(out.end(), hb, hb + hn);
        const std::size_t at = out.size();
        out.resize(at + size);
        for (std::size_t k = 0; k < size; ++k) {
            out[at + k] = std::byte(text ? 'a' + (k * 7 + i) % 26 : static_cast<unsigned char>(rng()));
        }
        apply_mask(out.data() + at, size, h.mask_key, 0);
    }
    return out;
}

void run_decoder(benchmark::State& state, opcode op, bool text, std::size_t pass_bytes = 256u << 10) {
    const std::size_t size = static_cast<std::size_t>(state.range(0));
    // About 256 KiB of frames per pass, a few receive buffers' worth: the relay unmasks buffers
    // the kernel has just written (cache-warm), so this does not measure DRAM bandwidth.
    const std::size_t count = std::max<std::size_t>(1, pass_bytes / (size + 14));
    std::vector<std::byte> wire = masked_frames(size, count, op, text);
    limits lim;
    decoder dec(role::server, lim);
    std::uint64_t frames = 0, sum = 0;
    for (auto _ : state) {
        mut_bytes in(wire);
        for (;;) {
            auto ev = dec.next(in);
            if (!ev || ev->type == event_type::need_more) break;
            sum += ev->payload.size();
            ++frames;
        }
    }
    benchmark::DoNotOptimize(sum);
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * wire.size()));
    state.SetItemsProcessed(static_cast<std::int64_t>(frames));
}

void BM_ws_parse_unmask(benchmark::State& state) { run_decoder(state, opcode::binary, false); }
BENCHMARK(BM_ws_parse_unmask)->Arg(16384)->Arg(64)->Arg(1024)->Arg(125);

// 64 MiB per pass: every byte comes from DRAM (a lower bound, not the relay's case).
void BM_ws_parse_unmask_cold(benchmark::State& state) {
    run_decoder(state, opcode::binary, false, 64u << 20);
}
BENCHMARK(BM_ws_parse_unmask_cold)->Arg(16384);

void BM_ws_parse_text(benchmark::State& state) { run_decoder(state, opcode::text, true); }
BENCHMARK(BM_ws_parse_text)->Arg(16384);

std::string make_text(bool mixed, std::size_t n) {
    std::mt19937 rng(2);
    std::string s;
    while (s.size() < n) {
        if (!mixed || rng() % 4) {
            s += static_cast<char>('a' + rng() % 26);
        } else {
            static const char* cps[] = {"\xc3\xa9", "\xd0\x96", "\xe2\x82\xac", "\xe4\xb8\xad", "\xf0\x9f\x98\x80"};
            s += cps[rng() % 5];
        }
    }
    return s;
}

void BM_ws_utf8(benchmark::State& state, bool mixed) {
    const std::string s = make_text(mixed, 64 * 1024);
    for (auto _ : state) {
        utf8_validator v;
        bool ok = v.feed(as_bytes(s)) && v.complete();
        benchmark::DoNotOptimize(ok);
    }
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * s.size()));
}
BENCHMARK_CAPTURE(BM_ws_utf8, ascii, false);
BENCHMARK_CAPTURE(BM_ws_utf8, mixed, true);

void BM_ws_mask(benchmark::State& state) {
    std::vector<std::byte> buf(static_cast<std::size_t>(state.range(0)) + 3);
    for (auto _ : state) {
        apply_mask(buf.data() + 3, buf.size() - 3, 0x12345678, 1);
        benchmark::ClobberMemory();
    }
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * (buf.size() - 3)));
}
BENCHMARK(BM_ws_mask)->Arg(16384);

void BM_ws_send_server(benchmark::State& state) {
    const std::size_t size = static_cast<std::size_t>(state.range(0));
    encoder enc(role::server);
    slice payload = slice::allocate(size);
    std::memset(payload.data(), 'x', size);
    buffer_chain out;
    for (auto _ : state) {
        (void)enc.send(out, opcode::binary, payload);
        if (out.size() > (1u << 20)) out.clear();
    }
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * size));
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}
BENCHMARK(BM_ws_send_server)->Arg(64)->Arg(16384);

std::uint32_t bench_key(void*) noexcept {
    static std::uint32_t x = 0x9e3779b9;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return x;
}

void BM_ws_send_client_copy(benchmark::State& state) {
    const std::size_t size = static_cast<std::size_t>(state.range(0));
    encoder enc(role::client, std::nullopt, {}, mask_source{&bench_key, nullptr});
    std::string payload(size, 'x');
    buffer_chain out;
    for (auto _ : state) {
        (void)enc.send_copy(out, opcode::binary, as_bytes(payload));
        if (out.size() > (1u << 20)) out.clear();
    }
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * size));
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}
BENCHMARK(BM_ws_send_client_copy)->Arg(64)->Arg(16384);

}  // namespace
