#pragma once
// Where `ferry agent` gets its JWT, asked again before every connection attempt (a rotated file
// or a fresh token from an identity provider's command is picked up on reconnect).
#include <functional>
#include <string>

#include "proto/base/result.hh"

namespace ferry::agent {

using token_source = std::function<result<std::string>()>;

// Largest token a file or a command may give (64 KiB).
inline constexpr std::size_t max_token_bytes = 64 * 1024;

// The file's content, surrounding white space trimmed. Errors: io (with errno), limit_exceeded
// (over max_token_bytes), invalid_argument (empty).
result<std::string> read_token_file(const std::string& path);
// What `/bin/sh -c cmd` prints, trimmed. Errors: io, limit_exceeded, invalid_argument (non-zero
// exit, or nothing printed). Blocks while the command runs (between connections only).
result<std::string> run_token_command(const std::string& cmd);

token_source token_from_value(std::string jwt);
token_source token_from_file(std::string path);
token_source token_from_command(std::string cmd);

}  // namespace ferry::agent
