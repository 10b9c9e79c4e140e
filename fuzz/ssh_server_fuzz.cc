// Fuzz target `ssh_server`: an ssh::session in the server role (transport, user
// authentication and the connection protocol) driven by arbitrary client bytes. The harness,
// input layout and oracles are in fuzz/ssh_conn_fuzz.hh; seeds come from fuzz/ssh_conn_seeds.cc.
#include "ssh_conn_fuzz.hh"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    ssh_conn_fuzz::run(ferry::ssh::role::server, data, size);
    return 0;
}
