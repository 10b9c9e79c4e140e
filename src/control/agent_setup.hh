#pragma once
// From `ferry agent`'s settings to agent::agent_options: the one place where settings become the
// agent's options (the command's main only wires what this returns).
#include <string>

#include "agent/agent_options.hh"
#include "control/config.hh"
#include "proto/base/result.hh"

namespace ferry::control {

// The relay's TLS client context for wss:// (CA file or system roots; no check at all with
// insecure_skip_verify); null for ws://.
result<std::shared_ptr<const tls::client_context>> relay_tls(const agent_settings& s);

// The token source the settings name (exactly one is set: the parser checks it).
agent::token_source token_source_for(const agent_settings& s);

// Everything: the relay, TLS, the token source, the tunnels with their targets resolved
// (blocking DNS, at start-up), timings and limits. On failure `message` says which part and
// why ("tunnel NAME: cannot resolve HOST: ...", "TLS: ...").
result<agent::agent_options> agent_options_from(const agent_settings& s, std::string& message);

}  // namespace ferry::control
