// ferry-certgen: writes a development TLS certificate (ECDSA P-256, self-signed) and its key.
//
//   ferry-certgen --cert DIR/tls.crt --key DIR/tls.key [--dns NAME]... [--ip ADDR]...
//                 [--days N] [--cn NAME]
//
// Defaults: DNS localhost, IP 127.0.0.1 and ::1, 365 days. Clients trust the certificate
// itself (curl --cacert tls.crt, ferry agent --ca-file tls.crt). The key is written mode 0600.
// Both files are written to a temporary name and renamed, so a reader never sees half a file.
// Used by scripts/demo when no certificate is configured.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>

#include "proto/tls/certgen.hh"

namespace {

[[noreturn]] void usage(const char* msg) {
    std::fprintf(stderr,
                 "ferry-certgen: %s\n"
                 "usage: ferry-certgen --cert FILE --key FILE [--dns NAME]... [--ip ADDR]... [--days N] [--cn NAME]\n",
                 msg);
    std::exit(2);
}

bool write_file(const std::string& path, const std::string& data, mode_t mode) {
    std::string tmp = path + ".tmp";
    int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0) return false;
    std::size_t off = 0;
    while (off < data.size()) {
        ssize_t n = ::write(fd, data.data() + off, data.size() - off);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            ::close(fd);
            return false;
        }
        off += static_cast<std::size_t>(n);
    }
    if (::fchmod(fd, mode) != 0 || ::fsync(fd) != 0 || ::close(fd) != 0) return false;
    return ::rename(tmp.c_str(), path.c_str()) == 0;
}

}  // namespace

int main(int argc, char** argv) {
    using namespace ferry;
    tls::cert_options o;
    std::string cert_path, key_path;
    bool names_given = false;
    for (int i = 1; i < argc; ++i) {
        std::string_view a = argv[i];
        auto value = [&]() -> const char* {
            if (i + 1 >= argc) usage((std::string("missing value for ") + argv[i]).c_str());
            return argv[++i];
        };
        auto first_name = [&] {
            if (!names_given) {
                o.dns_names.clear();
                o.ip_addresses.clear();
                names_given = true;
            }
        };
        if (a == "--cert") cert_path = value();
        else if (a == "--key") key_path = value();
        else if (a == "--dns") { first_name(); o.dns_names.emplace_back(value()); }
        else if (a == "--ip") { first_name(); o.ip_addresses.emplace_back(value()); }
        else if (a == "--cn") o.common_name = value();
        else if (a == "--days") {
            const char* v = value();
            char* end = nullptr;
            long d = std::strtol(v, &end, 10);
            if (!*v || *end || d < 1 || d > 3650) usage("--days takes 1..3650");
            o.validity = std::chrono::hours(24 * d);
        } else if (a == "-h" || a == "--help") usage("help");
        else usage((std::string("unknown flag ") + argv[i]).c_str());
    }
    if (cert_path.empty() || key_path.empty()) usage("--cert and --key are required");

    auto c = tls::generate_certificate(o, std::chrono::system_clock::now());
    if (!c) {
        std::fprintf(stderr, "ferry-certgen: %s\n", c.err().detail);
        return 1;
    }
    if (!write_file(key_path, c->key_pem, 0600) || !write_file(cert_path, c->cert_pem, 0644)) {
        std::fprintf(stderr, "ferry-certgen: cannot write %s / %s: %s\n", cert_path.c_str(), key_path.c_str(),
                     std::strerror(errno));
        return 1;
    }
    std::printf("wrote %s and %s (ECDSA P-256, self-signed)\n", cert_path.c_str(), key_path.c_str());
    return 0;
}
