#!/usr/bin/python3
"""A stand-in for the relay's `/tunnel` endpoint: WebSocket in front of an SSH server.

Accepts `GET /tunnel` WebSocket upgrades that carry `Authorization: Bearer <expected token>`
(else 401 with the relay's JSON error body), opens a TCP connection to the backend (our
tests/ssh/ssh_test_server) per WebSocket and copies bytes both ways: every binary message from
the client goes to TCP as it is, every TCP read becomes one binary message. Text messages end
the session with close 1003. Optional TLS (--tls-cert/--tls-key).

    ws_shim.py --backend 127.0.0.1:PORT --token TOKEN [--listen 127.0.0.1:0]
               [--tls-cert F --tls-key F] [--refuse STATUS [--retry-after S]]

--refuse answers every upgrade with STATUS (429/503: with Retry-After when given) to test the
agent's retry policy. stdout, one flushed line per event (tests wait on these):
    listening PORT
    refused STATUS
    open PEER
    closed PEER code=CODE
Python websockets 10.4 (Debian 12's python3-websockets) is what this is written against.
"""
import argparse
import asyncio
import http
import json
import signal
import ssl
import sys

import websockets
import websockets.server


def say(*parts):
    print(*parts, flush=True)


def error_body(code, message):
    return json.dumps({"error": {"code": code, "message": message}}).encode()


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", default="127.0.0.1:0")
    ap.add_argument("--backend", required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--tls-cert")
    ap.add_argument("--tls-key")
    ap.add_argument("--refuse", type=int, default=0)
    ap.add_argument("--retry-after", type=int, default=0)
    args = ap.parse_args()
    lhost, lport = args.listen.rsplit(":", 1)
    bhost, bport = args.backend.rsplit(":", 1)

    async def process_request(path, headers):
        if path != "/tunnel":
            return (http.HTTPStatus.NOT_FOUND, [("Content-Type", "application/json")],
                    error_body("not_found", "no such endpoint"))
        if args.refuse:
            say("refused", args.refuse)
            hdrs = [("Content-Type", "application/json")]
            if args.retry_after:
                hdrs.append(("Retry-After", str(args.retry_after)))
            return (http.HTTPStatus(args.refuse), hdrs, error_body("unavailable", "refused by the shim"))
        if headers.get("Authorization", "") != "Bearer " + args.token:
            say("refused", 401)
            return (http.HTTPStatus.UNAUTHORIZED,
                    [("Content-Type", "application/json"),
                     ("WWW-Authenticate", 'Bearer error="invalid_token"')],
                    error_body("invalid_token", "token signature is invalid"))
        return None

    async def handler(ws, path=None):
        peer = "%s:%s" % ws.remote_address[:2]
        say("open", peer)
        reader, writer = await asyncio.open_connection(bhost, int(bport))

        async def ws_to_tcp():
            async for msg in ws:
                if isinstance(msg, str):
                    await ws.close(1003, "binary messages only")
                    return
                writer.write(msg)
                await writer.drain()

        async def tcp_to_ws():
            while True:
                data = await reader.read(65536)
                if not data:
                    return
                await ws.send(data)

        tasks = [asyncio.ensure_future(ws_to_tcp()), asyncio.ensure_future(tcp_to_ws())]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in tasks:
                t.cancel()
            writer.close()
            await ws.close()
            say("closed", peer, "code=%s" % ws.close_code)

    tls = None
    if args.tls_cert:
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(args.tls_cert, args.tls_key)
        tls.set_alpn_protocols(["http/1.1"])
    stop = asyncio.get_running_loop().create_future()
    for s in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(s, lambda: stop.done() or stop.set_result(None))
    async with websockets.serve(handler, lhost, int(lport), process_request=process_request, ssl=tls,
                                max_size=None, ping_interval=None, compression=None) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        say("listening", port)
        await stop


if __name__ == "__main__":
    asyncio.run(main())
    sys.exit(0)
