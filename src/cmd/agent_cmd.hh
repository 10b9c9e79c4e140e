#pragma once
// `ferry agent` and `ferry connect` (SPEC §4). The `ferry` binary's dispatcher
// (ferry_main.cc) calls these with argv[0] = the subcommand name; they return the exit code.
//
//   agent_main    the agent: settings (control::parse_agent_args) -> agent::agent_options, one
//                 reactor shard, SIGTERM/SIGINT = graceful stop (a second one: stop now).
//                 Exit 0 after a clean stop, 1 on a fatal error (host key mismatch,
//                 --max-attempts reached, bad TLS material), 2 on usage errors.
//   connect_main  stdin/stdout <-> the relay's WebSocket (binary messages both ways), for
//                 `ssh -o ProxyCommand='ferry connect wss://relay:8443 --token-file t'`.
//                 A small poll() loop over the sans-IO TLS and WebSocket codecs (stdin may be
//                 a pipe, which io_uring's multishot recv does not serve). Exit 0 when either
//                 side closed normally, 1 on errors (refused upgrade, TLS, timeouts).
// Global namespace: the dispatcher declares nothing else.
int agent_main(int argc, char** argv);
int connect_main(int argc, char** argv);
