// docs/configuration.md must document every key: its generated reference section must equal
// control::reference_markdown() (regenerate with `ferry help config-reference`), and every key,
// flag and environment variable must appear in it.
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <iterator>
#include <string>

#include "control/config.hh"

namespace {

std::string doc_text() {
    const char* root = std::getenv("FERRY_SOURCE_ROOT");
    std::string path = std::string(root ? root : ".") + "/docs/configuration.md";
    std::ifstream f(path);
    return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

constexpr std::string_view begin_marker = "<!-- BEGIN GENERATED: ferry help config-reference -->\n";
constexpr std::string_view end_marker = "<!-- END GENERATED -->";

}  // namespace

TEST(ConfigDoc, GeneratedSectionIsCurrent) {
    std::string doc = doc_text();
    ASSERT_FALSE(doc.empty()) << "docs/configuration.md not found (FERRY_SOURCE_ROOT)";
    auto b = doc.find(begin_marker);
    auto e = doc.find(end_marker);
    ASSERT_NE(b, std::string::npos) << "missing BEGIN GENERATED marker";
    ASSERT_NE(e, std::string::npos) << "missing END GENERATED marker";
    std::string section = doc.substr(b + begin_marker.size(), e - b - begin_marker.size());
    EXPECT_EQ(section, ferry::control::reference_markdown())
        << "docs/configuration.md is out of date: replace the generated section with the output of "
           "`ferry help config-reference`";
}

TEST(ConfigDoc, EveryKeyFlagAndVariableIsDocumented) {
    std::string doc = doc_text();
    for (auto keys : {ferry::control::relay_keys(), ferry::control::agent_keys()}) {
        for (auto& k : keys) {
            EXPECT_NE(doc.find("`" + std::string(k.key) + "`"), std::string::npos) << k.key;
            EXPECT_NE(doc.find("`" + std::string(k.flag) + "`"), std::string::npos) << k.flag;
            EXPECT_NE(doc.find("`" + std::string(k.env) + "`"), std::string::npos) << k.env;
        }
    }
}
