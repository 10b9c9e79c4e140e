// Writes the seed corpus of the `tls_session` fuzz target (fuzz/corpus/tls_session): real
// ClientHellos (several client configurations, TLS 1.2-only included) for the server role, and
// real server flights for the client role, each chunked at several steps; plus plain HTTP on
// the TLS port. Randomness differs between runs, so the client-role seeds fail at the first
// encrypted message on replay: they still take wolfSSL through ServerHello parsing.
//   tls_session_seeds DIR
#include <fstream>
#include <string>

#include "tls_session_fuzz.cc"

namespace {

std::string g_dir;
int g_n = 0;

void put_chunk(std::string& s, std::string_view b) {
    if (b.size() < 0xff) {
        s += char(b.size());
    } else {
        s += char(0xff);
        s += char(b.size() >> 8);
        s += char(b.size() & 0xff);
    }
    s.append(b);
}

void write_seed(const std::string& name, std::uint8_t cfg, const std::string& wire, std::size_t step) {
    std::string s(1, char(cfg));
    for (std::size_t i = 0; i < wire.size(); i += step) put_chunk(s, std::string_view(wire).substr(i, step));
    std::ofstream(g_dir + "/" + std::to_string(g_n++) + "-" + name, std::ios::binary) << s;
}

// The client's first flight, and the server's answer to it.
void flights(std::shared_ptr<const tls::client_context> cc, std::shared_ptr<const tls::server_context> sc,
             std::string& hello, std::string& answer) {
    auto c = tls::session::client(std::move(cc), "localhost");
    auto s = tls::session::server(std::move(sc));
    buffer_chain c2s, s2c;
    CHECK(c && s && c->start(c2s));
    hello = c2s.to_string();
    bytes in = as_bytes(hello);
    for (;;) {
        auto ev = s->next(in, s2c);
        if (!ev || ev->type == tls::event_type::need_more) break;
    }
    answer = s2c.to_string();
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 2) return 2;
    g_dir = argv[1];
    const contexts& c = ctxs();
    std::string hello, answer;
    // Server role (bit 0 clear): ClientHellos from each client configuration.
    for (int i = 0; i < 8; i += 1) {
        flights(c.client[i], c.server[0], hello, answer);
        std::uint8_t cfg = static_cast<std::uint8_t>((i & 1) << 1);  // server allows 1.2 when the client does
        write_seed("client-hello-" + std::to_string(i), cfg, hello, 4096);
        if (i == 0) {
            write_seed("client-hello-split-1", cfg, hello, 1);
            write_seed("client-hello-split-5", cfg, hello, 5);
            write_seed("client-hello-tolerant-alpn", cfg | 4, hello, 300);
        }
    }
    // A TLS 1.2-only ClientHello.
    tls::client_options old;
    old.ca_pem = "";
    old.verify = tls::verify_mode::insecure_skip_verify;
    old.min_version = old.max_version = tls::version::tls1_2;
    flights(*tls::client_context::create(old), c.server[1], hello, answer);
    write_seed("client-hello-tls12", 2, hello, 4096);
    write_seed("client-hello-tls12-to-13-server", 0, hello, 97);
    // Client role (bit 0 set): the server's flight, whole and split.
    flights(c.client[0], c.server[0], hello, answer);
    write_seed("server-flight", 1, answer, 4096);
    write_seed("server-flight-split-3", 1, answer, 3);
    write_seed("server-flight-insecure", 1 | 8, answer, 700);
    flights(c.client[1], c.server[1], hello, answer);
    write_seed("server-flight-tls12-allowed", 1 | 2, answer, 4096);
    // Not TLS at all.
    write_seed("plain-http", 0, "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n", 4096);
    write_seed("alert-first", 0, std::string("\x15\x03\x03\x00\x02\x02\x28", 7), 4096);
    write_seed("app-data-first", 0, std::string("\x17\x03\x03\x00\x05hello", 10), 2);
    return 0;
}
