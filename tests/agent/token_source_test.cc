// agent/token_source: a token file (trimmed, bounded, re-read on every call) and a token
// command (its output, its failures).
#include "agent/token_source.hh"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <fstream>
#include <string>

namespace ferry::agent {
namespace {

struct temp_file {
    std::string path;
    explicit temp_file(const std::string& content) {
        char tmpl[] = "/tmp/ferry-token-XXXXXX";
        int fd = ::mkstemp(tmpl);
        EXPECT_GE(fd, 0);
        ::close(fd);
        path = tmpl;
        write(content);
    }
    void write(const std::string& content) const { std::ofstream(path, std::ios::trunc) << content; }
    ~temp_file() { ::unlink(path.c_str()); }
};

TEST(TokenSource, FileIsTrimmedAndReadAgainEachTime) {
    temp_file f("  eyJhbGciOi.first.sig \r\n");
    token_source src = token_from_file(f.path);
    auto t = src();
    ASSERT_TRUE(t) << t.err().detail;
    EXPECT_EQ(*t, "eyJhbGciOi.first.sig");
    f.write("eyJhbGciOi.rotated.sig\n");
    EXPECT_EQ(*src(), "eyJhbGciOi.rotated.sig");  // a rotated token is picked up
}

TEST(TokenSource, FileFailures) {
    temp_file empty(" \n");
    EXPECT_EQ(read_token_file(empty.path).code(), errc::invalid_argument);
    temp_file big(std::string(max_token_bytes + 1, 'a'));
    EXPECT_EQ(read_token_file(big.path).code(), errc::limit_exceeded);
    auto missing = read_token_file("/nonexistent/ferry/token");
    EXPECT_EQ(missing.code(), errc::io);
    EXPECT_NE(missing.err().sys, 0);
}

TEST(TokenSource, CommandOutputAndFailures) {
    EXPECT_EQ(*token_from_command("printf ' tok.from.cmd\\n'")(), "tok.from.cmd");
    EXPECT_EQ(run_token_command("exit 3").code(), errc::invalid_argument);
    EXPECT_EQ(run_token_command("true").code(), errc::invalid_argument);  // printed nothing
    EXPECT_EQ(run_token_command("head -c 70000 /dev/zero | tr '\\\\0' a").code(), errc::limit_exceeded);
    EXPECT_EQ(*token_from_value("jwt.value.sig")(), "jwt.value.sig");
}

}  // namespace
}  // namespace ferry::agent
