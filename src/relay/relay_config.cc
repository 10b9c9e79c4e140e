#include "relay/relay_config.hh"

#include "proto/ssh/crypto.hh"

namespace ferry::relay {

relay_config::~relay_config() { ssh::wipe(mut_bytes(host_key_seed)); }

}  // namespace ferry::relay
