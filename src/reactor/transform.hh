#pragma once
// A byte transform between a connection's socket and its handler: TLS is the one user (see
// src/link/tls_transform.hh). The reactor knows only this interface, never a protocol.
//
// With a transform installed (connection::set_transform), on_data receives what `decode`
// produced, and send()/output() take bytes that `encode` turns into wire bytes just before the
// loop submits the send (so everything a handler queued in one loop iteration is encoded
// together: one TLS record for many small sends). Without one, nothing changes: received
// slices reach on_data as they are (zero copy) and output goes to the socket as queued.
//
// Thread: the connection's shard; the transform moves with the socket on a hand-over.
#include "proto/base/buffer.hh"
#include "proto/base/result.hh"

namespace ferry::reactor {

class stream_transform {
public:
    virtual ~stream_transform() = default;

    // The socket is open (accepted, connected or adopted); called before on_open. A client
    // handshake writes its first flight to `wire`. Called again after a hand-over: a transform
    // that is already running does nothing.
    virtual status start(buffer_chain& wire) noexcept = 0;
    // Bytes received from the socket (`in` may be a ring buffer slice: consume or copy it, do
    // not keep it). Decoded bytes are appended to `plain`, bytes for the peer (handshake,
    // alerts, key updates) to `wire`. A failure closes the connection after `wire` is flushed;
    // the error reaches on_close. Plain bytes decoded before the failure are still delivered.
    virtual status decode(slice in, buffer_chain& plain, buffer_chain& wire) noexcept = 0;
    // True once queued output can be encoded (a handshake has finished).
    virtual bool ready() const noexcept = 0;
    // Encodes all of `plain` (consumed) into `wire`. Only called when ready().
    virtual status encode(buffer_chain& plain, buffer_chain& wire) noexcept = 0;
    // The peer ended its stream inside the transform (TLS close_notify): treated as EOF.
    virtual bool peer_finished() const noexcept = 0;
    // Our side ends (shutdown_write(), or close() with flush): append the end marker
    // (close_notify). Called at most once, after the last encode.
    virtual void finish(buffer_chain& wire) noexcept = 0;
};

}  // namespace ferry::reactor
