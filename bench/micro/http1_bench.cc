// HTTP/1.1 codec throughput (no I/O): head parsing in heads/s for a curl-like and a browser-like
// request, response heads, chunked decode and pass-through in bytes/s, and head rewriting.
#include <benchmark/benchmark.h>

#include <string>

#include "proto/http1/http1.hh"

using namespace ferry;
using namespace ferry::http1;

namespace {

// What a script or SDK sends to the relay: ~8 fields.
const std::string curl_request =
    "POST /t/llm/api/generate HTTP/1.1\r\n"
    "Host: relay.example.com:8443\r\n"
    "User-Agent: curl/8.5.0\r\n"
    "Accept: */*\r\n"
    "Authorization: Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhbGljZSIsImZlcnJ5X3R1bm5lbHMiOlsibGxtIl0sImV4cCI6MTc2NDAwMDAwMH0.c2lnbmF0dXJlLXBsYWNlaG9sZGVyLWZvci1iZW5jaG1hcms\r\n"
    "Content-Type: application/json\r\n"
    "Content-Length: 85\r\n"
    "X-Request-Id: 7f3c9a2e-41d8-4b7e-9c55-0d8e2f6a1b34\r\n"
    "Connection: keep-alive\r\n"
    "\r\n";

// What a browser sends: ~20 fields, cookies, client hints.
const std::string browser_request =
    "GET /t/dashboard/assets/app.3f9c2d.js?v=1764000000 HTTP/1.1\r\n"
    "Host: dashboard.tunnels.example.com\r\n"
    "Connection: keep-alive\r\n"
    "sec-ch-ua: \"Chromium\";v=\"131\", \"Not_A Brand\";v=\"24\", \"Google Chrome\";v=\"131\"\r\n"
    "sec-ch-ua-mobile: ?0\r\n"
    "sec-ch-ua-platform: \"Linux\"\r\n"
    "Upgrade-Insecure-Requests: 1\r\n"
    "User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36\r\n"
    "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7\r\n"
    "Sec-Fetch-Site: same-origin\r\n"
    "Sec-Fetch-Mode: no-cors\r\n"
    "Sec-Fetch-Dest: script\r\n"
    "Referer: https://dashboard.tunnels.example.com/t/dashboard/\r\n"
    "Accept-Encoding: gzip, deflate, br, zstd\r\n"
    "Accept-Language: en-GB,en-US;q=0.9,en;q=0.8,fr;q=0.7\r\n"
    "Cookie: _ga=GA1.1.1234567890.1700000000; session=eyJ1aWQiOjQyLCJyb2xlIjoiYWRtaW4ifQ.ZmVycnk.c2lnbmF0dXJl; theme=dark; _ga_ABCDEF=GS1.1.1764000000.12.1.1764000100.0.0.0; consent=necessary%2Canalytics\r\n"
    "If-None-Match: W/\"5e1b-18c3f9a2d10\"\r\n"
    "If-Modified-Since: Tue, 25 Nov 2025 10:00:00 GMT\r\n"
    "Priority: u=1\r\n"
    "Authorization: Bearer eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJib2IifQ.c2ln\r\n"
    "Cache-Control: max-age=0\r\n"
    "\r\n";

const std::string ollama_response =
    "HTTP/1.1 200 OK\r\n"
    "Content-Type: application/x-ndjson\r\n"
    "Date: Tue, 25 Nov 2025 10:00:00 GMT\r\n"
    "Transfer-Encoding: chunked\r\n"
    "\r\n";

void parse_request(benchmark::State& st, const std::string& msg) {
    request_parser ps;
    for (auto _ : st) {
        ps.reset();
        progress p = ps.parse(as_bytes(msg));
        benchmark::DoNotOptimize(p);
        benchmark::DoNotOptimize(ps.head().headers.data());
        if (!p.done()) st.SkipWithError("parse failed");
    }
    st.SetItemsProcessed(st.iterations());
    st.SetBytesProcessed(int64_t(st.iterations()) * int64_t(msg.size()));
    st.counters["head_bytes"] = double(msg.size());
}

void BM_http1_head_curl(benchmark::State& st) { parse_request(st, curl_request); }
void BM_http1_head_browser(benchmark::State& st) { parse_request(st, browser_request); }
BENCHMARK(BM_http1_head_curl);
BENCHMARK(BM_http1_head_browser);

// The browser head arriving in 4 TCP-sized pieces (incremental path).
void BM_http1_head_browser_4_pieces(benchmark::State& st) {
    const std::string& msg = browser_request;
    request_parser ps;
    const std::size_t q = msg.size() / 4;
    for (auto _ : st) {
        ps.reset();
        progress p;
        for (std::size_t end : {q, 2 * q, 3 * q, msg.size()}) p = ps.parse(as_bytes(std::string_view(msg).substr(0, end)));
        benchmark::DoNotOptimize(p);
        if (!p.done()) st.SkipWithError("parse failed");
    }
    st.SetItemsProcessed(st.iterations());
    st.SetBytesProcessed(int64_t(st.iterations()) * int64_t(msg.size()));
}
BENCHMARK(BM_http1_head_browser_4_pieces);

void BM_http1_head_response(benchmark::State& st) {
    response_parser ps;
    for (auto _ : st) {
        ps.reset();
        progress p = ps.parse(as_bytes(ollama_response));
        benchmark::DoNotOptimize(p);
        if (!p.done()) st.SkipWithError("parse failed");
    }
    st.SetItemsProcessed(st.iterations());
}
BENCHMARK(BM_http1_head_response);

// Strip hop-by-hop fields, drop credentials, add forwarding fields, write into a chain.
void BM_http1_rewrite_browser(benchmark::State& st) {
    request_parser ps;
    if (!ps.parse(as_bytes(browser_request)).done()) {
        st.SkipWithError("parse failed");
        return;
    }
    const std::string_view drop[] = {"authorization", "cookie"};
    const header add[] = {{"X-Forwarded-For", "203.0.113.7"}, {"X-Forwarded-Proto", "https"},
                          {"X-Request-Id", "7f3c9a2e-41d8-4b7e-9c55-0d8e2f6a1b34"},
                          {"traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}};
    rewrite rw;
    rw.drop = drop;
    rw.add = add;
    buffer_chain out;
    for (auto _ : st) {
        status s = write_head(out, ps.head(), rw, "/assets/app.3f9c2d.js?v=1764000000");
        benchmark::DoNotOptimize(s);
        out.clear();
    }
    st.SetItemsProcessed(st.iterations());
}
BENCHMARK(BM_http1_rewrite_browser);

// A chunked body of `total` bytes in chunks of `chunk` bytes.
std::string make_chunked(std::size_t total, std::size_t chunk) {
    std::string s;
    char line[32];
    for (std::size_t done = 0; done < total; done += chunk) {
        std::size_t n = std::min(chunk, total - done);
        std::snprintf(line, sizeof line, "%zx\r\n", n);
        s += line;
        s.append(n, 'x');
        s += "\r\n";
    }
    return s + "0\r\n\r\n";
}

void chunked(benchmark::State& st, bool decode) {
    const std::string body = make_chunked(256 * 1024, std::size_t(st.range(0)));
    chunked_decoder d;
    for (auto _ : st) {
        d.reset();
        bytes in = as_bytes(body);
        std::size_t payload = 0;
        progress p;
        if (decode) {
            for (;;) {
                p = d.decode(in);
                payload += p.data.size();
                in = in.subspan(p.consumed);
                if (p.kind != outcome::payload) break;
            }
        } else {
            p = d.pass_through(in);
        }
        benchmark::DoNotOptimize(payload);
        if (!p.done()) st.SkipWithError("decode failed");
    }
    st.SetBytesProcessed(int64_t(st.iterations()) * int64_t(body.size()));
}

void BM_http1_chunked_decode(benchmark::State& st) { chunked(st, true); }
void BM_http1_chunked_pass_through(benchmark::State& st) { chunked(st, false); }
// 100-byte chunks (token-by-token LLM streams) and 16 KiB chunks (bulk).
BENCHMARK(BM_http1_chunked_decode)->Arg(100)->Arg(16 * 1024);
BENCHMARK(BM_http1_chunked_pass_through)->Arg(100)->Arg(16 * 1024);

}  // namespace
