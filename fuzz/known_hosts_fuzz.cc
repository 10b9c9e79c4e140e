// Fuzz target `known_hosts`: the agent's known_hosts reader (src/agent/known_hosts.hh) and its
// standard base64.
//
// Input: byte 0 picks the host name looked up ("[relay]:8443", "relay", or the first
// whitespace-separated word of the text), the rest is a whole known_hosts file.
// Invariants (a violation traps): every key returned carries a blob whose embedded type equals
// its type field; a line written for a returned key reads back as the same key; base64 that
// decodes re-encodes to the same text (one text per value); nothing reads out of bounds.
#include <cstdint>
#include <string>
#include <string_view>

#include "agent/known_hosts.hh"

using namespace ferry;
using namespace ferry::agent;

#define CHECK(c)                    \
    do {                            \
        if (!(c)) __builtin_trap(); \
    } while (0)

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 1) return 0;
    const std::uint8_t mode = data[0];
    std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);
    std::string name;
    switch (mode % 3) {
    case 0: name = "[relay]:8443"; break;
    case 1: name = "relay"; break;
    default: name = std::string(text.substr(0, text.find_first_of(" \t\n")));
    }
    known_hosts_match m = find_known_hosts(text, name);
    for (const known_host_key& k : m.keys) {
        CHECK(!k.type.empty());
        std::string line = known_hosts_line(name.empty() ? "x" : name, k.blob);
        CHECK(!line.empty() && line.back() == '\n');
        // A name with spaces or commas cannot be written back as one entry; skip those.
        if (name.empty() || name.find_first_of(" \t,\r\n*?!|@#") != std::string::npos) continue;
        known_hosts_match back = find_known_hosts(line, name);
        CHECK(back.keys.size() == 1);
        CHECK(back.keys[0].blob == k.blob);
        CHECK(back.keys[0].type == k.type);
    }
    // base64: decode, then encode must give the text back.
    std::string_view word = text.substr(0, std::min<std::size_t>(text.size(), 4096));
    word = word.substr(0, word.find_first_of(" \t\r\n"));
    if (auto d = base64_decode(word)) CHECK(base64_encode(*d) == word);
    return 0;
}
