// bench/micro entry point: prints which wolfSSL build and allocator are linked, then runs
// Google Benchmark. Figures are bytes/s or items/s; quote medians of --benchmark_repetitions.
#include <benchmark/benchmark.h>

#include <cstdio>

int main(int argc, char** argv) {
#if FERRY_WOLFSSL_OPTIMISED
    std::printf("wolfSSL: optimised build (AES-NI, intel asm, SP maths) from .deps/wolfssl\n");
#else
    std::printf("*** wolfSSL: GENERIC Debian build (no AES-NI): crypto figures are ~30x low ***\n");
#endif
#if FERRY_MIMALLOC
    std::printf("allocator: mimalloc\n");
#else
    std::printf("allocator: glibc malloc\n");
#endif
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
