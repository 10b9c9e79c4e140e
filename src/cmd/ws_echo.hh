#pragma once
// The WebSocket echo handler of `ferry-echo --ws`: every message comes back as it arrived
// (same opcode, same fragment boundaries as the pieces the decoder delivered), payload slices
// linked into the output without copying.
#include "link/ws_server.hh"
#include "reactor/shard.hh"

namespace ferry::cmd {

reactor::connection_factory ws_echo_factory(const link::ws_server_options& opt);

}  // namespace ferry::cmd
