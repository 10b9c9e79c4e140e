#pragma once
// From ferryd's settings to the relay's configuration: the one place where settings become a
// relay::relay_config (ferryd's main only wires what this returns).
//
//   auto cfg = control::build_relay_config(settings, message);   // keys, host key, TLS, caps
//   if (!cfg) { fprintf(stderr, "ferryd: %s\n", message.c_str()); exit(1); }
#include <memory>
#include <string>

#include "control/config.hh"
#include "proto/base/result.hh"
#include "relay/relay_config.hh"

namespace ferry::control {

// The plain mapping (numbers, names, lists; no files, no process limits): everything but the
// JWT keys, the host key seed, the TLS context and max_connections when it is 0 (automatic).
relay::relay_config relay_config_from(const relay_settings& s);

// An error for the operator: its detail (or code name), and the system's text for errno.
std::string describe(const error& e);

// max_connections when the setting is 0: what an open-file limit of `nofile` leaves after a
// reserve for listeners, rings, logs and accept bursts (max(256, 64 + nofile/16)).
std::uint64_t connection_room(std::uint64_t nofile);

// Everything, checked before anything listens: refuses settings of parts not built yet, loads
// the JWT keys (at least one) and the SSH host key, builds the TLS context (a self-signed
// certificate in the data dir when none is configured), raises RLIMIT_NOFILE to its hard
// limit and derives max_connections. Warnings (key files others can read, ...) are logged.
// On failure `message` is "WHAT: WHY" for the operator.
result<std::shared_ptr<const relay::relay_config>> build_relay_config(const relay_settings& s,
                                                                      std::string& message);

}  // namespace ferry::control
