// Agent building blocks: the reconnect schedule (deterministic, injected randomness) and the
// known_hosts store (parsing, trust on first use, pinning, mismatch). The agent itself runs end to
// end in tests/integration/agent_test.py.
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <vector>

#include "../reactor/helpers.hh"
#include "agent/agent.hh"
#include "agent/known_hosts.hh"
#include "proto/ssh/hostkey.hh"

namespace ferry::agent {
namespace {

using namespace ferry::reactor;
using namespace ferry::reactor::testing;
using std::chrono::milliseconds;

// ---- backoff ------------------------------------------------------------------------------------

std::function<double()> constant(double u) {
    return [u] { return u; };
}

std::vector<long> schedule(backoff& b, int n) {
    std::vector<long> v;
    for (int i = 0; i < n; ++i) v.push_back(long(b.next().count()));
    return v;
}

TEST(Backoff, DefaultScheduleWithoutJitter) {
    backoff b(backoff_policy{}, constant(0.5));  // 0.5: the jitter term is zero
    EXPECT_EQ(schedule(b, 9), (std::vector<long>{0, 2000, 4000, 8000, 16000, 32000, 60000, 60000, 60000}));
}

TEST(Backoff, JitterBoundsAndCap) {
    backoff lo(backoff_policy{}, constant(0.0));
    EXPECT_EQ(schedule(lo, 8), (std::vector<long>{0, 1400, 2800, 5600, 11200, 22400, 42000, 42000}));
    backoff hi(backoff_policy{}, constant(1.0));
    // +30%, but never above the 60 s cap.
    EXPECT_EQ(schedule(hi, 8), (std::vector<long>{0, 2600, 5200, 10400, 20800, 41600, 60000, 60000}));
}

TEST(Backoff, JitterIsSpreadAroundTheNominalDelay) {
    // A real generator: the delays spread over [0.7, 1.3] of nominal and average near it.
    std::uint64_t s = 88172645463325252ull;
    backoff b(backoff_policy{}, [&s] {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        return double(s >> 11) / double(1ull << 53);
    });
    double sum = 0;
    long mn = 1 << 30, mx = 0;
    for (int i = 0; i < 2000; ++i) {
        b.reset();
        (void)b.next();  // immediate
        long d = long(b.next().count());
        sum += double(d);
        mn = std::min(mn, d);
        mx = std::max(mx, d);
    }
    EXPECT_GE(mn, 1400);
    EXPECT_LE(mx, 2600);
    EXPECT_LT(mn, 1500);  // the range is actually used
    EXPECT_GT(mx, 2500);
    EXPECT_NEAR(sum / 2000, 2000, 60);
}

TEST(Backoff, ResetAfterSuccessRetriesAtOnce) {
    backoff b(backoff_policy{}, constant(0.5));
    (void)schedule(b, 5);
    b.reset();
    EXPECT_EQ(schedule(b, 3), (std::vector<long>{0, 2000, 4000}));
}

TEST(Backoff, AtCapStaysAtCap) {
    backoff b(backoff_policy{}, constant(0.5));
    EXPECT_EQ(b.next().count(), 0);
    EXPECT_EQ(b.at_cap().count(), 60000);  // 401/403: straight to the cap
    EXPECT_EQ(b.next().count(), 60000);
    backoff j(backoff_policy{}, constant(0.0));
    EXPECT_EQ(j.at_cap().count(), 42000);  // jitter only lowers it
}

TEST(Backoff, CustomPolicyAndSanitising) {
    backoff_policy p;
    p.base = milliseconds(100);
    p.factor = 3;
    p.cap = milliseconds(1000);
    p.jitter = 0;
    backoff b(p, constant(0.9));
    EXPECT_EQ(schedule(b, 6), (std::vector<long>{0, 100, 300, 900, 1000, 1000}));
    // Nonsense values are clamped: factor < 1 behaves as 1, cap below base becomes base.
    p.factor = 0.1;
    p.cap = milliseconds(10);
    backoff c(p, constant(0.5));
    EXPECT_EQ(schedule(c, 4), (std::vector<long>{0, 100, 100, 100}));
}

TEST(Backoff, NoOverflowAfterManySteps) {
    backoff b(backoff_policy{}, constant(0.5));
    for (int i = 0; i < 10000; ++i) ASSERT_LE(b.next().count(), 60000);
    EXPECT_EQ(b.next().count(), 60000);
}

// ---- known_hosts ----------------------------------------------------------------------------------

std::vector<std::byte> ed_blob(std::uint8_t fill) {
    auto key = ssh::ed25519_private::from_seed(std::vector<std::byte>(32, std::byte(fill)));
    EXPECT_TRUE(key);
    return ssh::ed25519_key_blob(key->public_key());
}

std::string tmpdir() {
    char t[] = "/tmp/ferry-kh-XXXXXX";
    EXPECT_NE(::mkdtemp(t), nullptr);
    return t;
}

std::string slurp(const std::string& path) {
    std::ifstream f(path);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

TEST(KnownHosts, Base64MatchesRfc4648) {
    const char* plain[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    const char* enc[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
    for (int i = 0; i < 7; ++i) {
        EXPECT_EQ(base64_encode(as_bytes(std::string_view(plain[i]))), enc[i]);
        auto d = base64_decode(enc[i]);
        ASSERT_TRUE(d) << enc[i];
        EXPECT_EQ(std::string(reinterpret_cast<const char*>(d->data()), d->size()), plain[i]);
    }
    EXPECT_EQ(base64_encode(as_bytes(std::string_view("\xfb\xff"))), "+/8=");
    for (const char* bad : {"Zg=", "Z===", "Zh==", "-_8=", "Zm9v!A==", "Zm=v"}) {
        EXPECT_FALSE(base64_decode(bad)) << bad;
    }
}

TEST(KnownHosts, NameFollowsOpenSsh) {
    EXPECT_EQ(known_hosts_name("Relay.Example.COM", 22), "relay.example.com");
    EXPECT_EQ(known_hosts_name("relay.example.com", 8443), "[relay.example.com]:8443");
    EXPECT_EQ(known_hosts_name("::1", 443), "[::1]:443");
}

TEST(KnownHosts, FindsKeysForTheName) {
    auto a = ed_blob(1), b = ed_blob(2), c = ed_blob(3);
    std::string text = "# comment\n\n";
    text += "other.example " + known_hosts_line("x", a).substr(2);                     // another host
    text += "relay.example,[relay.example]:8443 " + known_hosts_line("x", b).substr(2);  // a list
    text += "|1|abc=|def= " + known_hosts_line("x", c).substr(2);                      // hashed: skipped
    text += "*.example " + known_hosts_line("x", c).substr(2);                         // pattern: skipped
    text += "[relay.example]:8443 ssh-ed25519 not-base64\n";                            // malformed
    text += "[relay.example]:8443 ssh-rsa " + base64_encode(a) + "\r\n";              // type mismatch
    text += "@revoked [RELAY.example]:8443 " + known_hosts_line("x", c).substr(2);
    text += "@cert-authority *.example " + known_hosts_line("x", c).substr(2);
    text += "[relay.example]:8443";  // truncated last line without newline
    auto m = find_known_hosts(text, "[relay.example]:8443");
    ASSERT_EQ(m.keys.size(), 2u);
    EXPECT_EQ(m.keys[0].blob, b);
    EXPECT_FALSE(m.keys[0].revoked);
    EXPECT_EQ(m.keys[1].blob, c);
    EXPECT_TRUE(m.keys[1].revoked);
    EXPECT_EQ(m.keys[0].type, "ssh-ed25519");
    EXPECT_EQ(m.skipped, 6u);
    EXPECT_TRUE(find_known_hosts(text, "relay.example").keys.size() == 1);
    EXPECT_TRUE(find_known_hosts(text, "nobody").keys.empty());
}

TEST(KnownHosts, TrustOnFirstUseThenPinned) {
    const std::string dir = tmpdir();
    const std::string path = dir + "/sub/dir/known_hosts";
    auto k1 = ed_blob(7), k2 = ed_blob(8);
    {
        known_hosts_verifier v(path, "[relay]:8443");
        EXPECT_TRUE(v.accept("ssh-ed25519", k1));
        EXPECT_EQ(v.last(), known_hosts_verifier::outcome::learned);
        EXPECT_TRUE(v.detail().empty()) << v.detail();
        EXPECT_TRUE(v.accept("ssh-ed25519", k1));
        EXPECT_EQ(v.last(), known_hosts_verifier::outcome::matched);
    }
    EXPECT_EQ(slurp(path), known_hosts_line("[relay]:8443", k1));
    struct stat st {};
    ASSERT_EQ(::stat(path.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u);
    ASSERT_EQ(::stat((dir + "/sub/dir").c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0700u);

    // A later run finds the pinned key; another key is a mismatch naming both fingerprints.
    known_hosts_verifier v2(path, "[relay]:8443");
    EXPECT_TRUE(v2.accept("ssh-ed25519", k1));
    EXPECT_EQ(v2.last(), known_hosts_verifier::outcome::matched);
    EXPECT_FALSE(v2.accept("ssh-ed25519", k2));
    EXPECT_EQ(v2.last(), known_hosts_verifier::outcome::mismatch);
    EXPECT_EQ(v2.expected_fingerprints(), ssh::fingerprint_sha256(k1));
    EXPECT_EQ(v2.offered_fingerprint(), ssh::fingerprint_sha256(k2));
    EXPECT_EQ(slurp(path), known_hosts_line("[relay]:8443", k1));  // nothing appended

    // Another relay name in the same file learns its own key.
    known_hosts_verifier v3(path, "[other]:8443");
    EXPECT_TRUE(v3.accept("ssh-ed25519", k2));
    EXPECT_EQ(v3.last(), known_hosts_verifier::outcome::learned);
    EXPECT_EQ(find_known_hosts(slurp(path), "[other]:8443").keys.size(), 1u);
    std::system(("rm -rf " + dir).c_str());
}

TEST(KnownHosts, AppendsAfterALastLineWithoutNewline) {
    const std::string dir = tmpdir();
    const std::string path = dir + "/kh";
    std::ofstream(path) << "# no newline at the end";
    known_hosts_verifier v(path, "r");
    EXPECT_TRUE(v.accept("ssh-ed25519", ed_blob(1)));
    EXPECT_EQ(find_known_hosts(slurp(path), "r").keys.size(), 1u);
    EXPECT_EQ(slurp(path).rfind("# no newline at the end\n", 0), 0u);
    std::system(("rm -rf " + dir).c_str());
}

TEST(KnownHosts, MemoryOnlyRevokedAndUnreadable) {
    auto k1 = ed_blob(1), k2 = ed_blob(2);
    known_hosts_verifier mem("", "r");
    EXPECT_TRUE(mem.accept("ssh-ed25519", k1));
    EXPECT_EQ(mem.last(), known_hosts_verifier::outcome::learned);
    EXPECT_FALSE(mem.accept("ssh-ed25519", k2));  // pinned for the process's life
    EXPECT_EQ(mem.last(), known_hosts_verifier::outcome::mismatch);
    EXPECT_FALSE(mem.accept("ssh-rsa", k1));
    EXPECT_EQ(mem.last(), known_hosts_verifier::outcome::refused);

    const std::string dir = tmpdir();
    std::ofstream(dir + "/kh") << "@revoked r " << base64_encode(k1).insert(0, "ssh-ed25519 ") << "\n";
    known_hosts_verifier rv(dir + "/kh", "r");
    EXPECT_FALSE(rv.accept("ssh-ed25519", k1));
    EXPECT_EQ(rv.last(), known_hosts_verifier::outcome::refused);
    EXPECT_NE(rv.detail().find("revoked"), std::string::npos);

    known_hosts_verifier dirpath(dir, "r");  // a directory: cannot be read
    EXPECT_FALSE(dirpath.accept("ssh-ed25519", k1));
    EXPECT_EQ(dirpath.last(), known_hosts_verifier::outcome::refused);
    std::system(("rm -rf " + dir).c_str());
}

}  // namespace
}  // namespace ferry::agent
