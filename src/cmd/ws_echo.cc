#include "cmd/ws_echo.hh"

namespace ferry::cmd {

namespace {

class ws_echo final : public link::ws_server_connection {
public:
    using ws_server_connection::ws_server_connection;

protected:
    void on_ws_data(const ws::event& ev, slice payload) override {
        // Each decoded piece goes out as one frame of the echoed message: the first carries
        // the opcode, later ones are continuations, the last has FIN.
        buffer_chain* out = output();
        if (!out) return;  // closing: nothing more is sent
        status s = codec().send_part(*out, ev.op, std::move(payload), ev.last ? ws::fin::yes : ws::fin::no,
                                     ws::compress::yes);
        (void)s;  // fails only once our close was sent
        commit_output();
    }
};

}  // namespace

reactor::connection_factory ws_echo_factory(const link::ws_server_options& opt) {
    return [opt](reactor::shard& s) -> std::unique_ptr<reactor::connection> {
        return std::make_unique<ws_echo>(s, opt);
    };
}

}  // namespace ferry::cmd
