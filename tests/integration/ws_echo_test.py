#!/usr/bin/python3
"""WebSocket echo server on the reactor, checked with an independent client.

The client is Debian's python3-websockets (not our codec), plus raw sockets for the frames a
well-behaved client library refuses to send (unmasked, invalid UTF-8, oversized).
Usage: ws_echo_test.py PATH/TO/ferry-echo
"""
import asyncio
import base64
import os
import socket
import struct
import subprocess
import sys
import unittest

import websockets
import websockets.exceptions

ECHO = sys.argv.pop(1) if len(sys.argv) > 1 else "build/src/cmd/ferry-echo"
MiB = 1024 * 1024


class EchoServer:
    def __init__(self, *extra):
        self.proc = subprocess.Popen(
            [ECHO, "--ws", "--listen", "127.0.0.1:0", "--shards", "2", *extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if "listening on" not in line:
            self.proc.kill()
            raise RuntimeError("echo server did not start: " + line + self.proc.stderr.read())
        self.port = int(line.strip().rsplit(":", 1)[1])
        self.uri = f"ws://127.0.0.1:{self.port}/"

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        return self.proc.returncode


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, timeout=120))


def raw_connect(port):
    """Handshake by hand; returns the socket positioned after the 101 response."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall((f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
               f"Sec-WebSocket-Version: 13\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(1)
        if not chunk:
            raise RuntimeError("closed during handshake")
        head += chunk
    assert head.startswith(b"HTTP/1.1 101"), head
    return s


def frame(opcode, payload, fin=True, mask=True, length_override=None):
    b0 = (0x80 if fin else 0) | opcode
    n = len(payload) if length_override is None else length_override
    m = 0x80 if mask else 0
    if n < 126:
        hdr = struct.pack("!BB", b0, m | n)
    elif n < 65536:
        hdr = struct.pack("!BBH", b0, m | 126, n)
    else:
        hdr = struct.pack("!BBQ", b0, m | 127, n)
    if not mask:
        return hdr + payload
    key = os.urandom(4)
    masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return hdr + key + masked


def read_frame(s):
    def need(n):
        buf = b""
        while len(buf) < n:
            c = s.recv(n - len(buf))
            if not c:
                raise EOFError
            buf += c
        return buf
    b0, b1 = need(2)
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack("!H", need(2))[0]
    elif n == 127:
        n = struct.unpack("!Q", need(8))[0]
    assert not (b1 & 0x80), "server frames must not be masked"
    return b0 & 0x0F, need(n)


def expect_close_code(s, code):
    """Reads frames until a close frame; returns its code."""
    while True:
        op, payload = read_frame(s)
        if op == 8:
            got = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
            if got != code:
                raise AssertionError(f"close code {got}, expected {code}")
            return got


class WsEcho(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.srv = EchoServer()

    @classmethod
    def tearDownClass(cls):
        rc = cls.srv.stop()
        err = cls.srv.proc.stderr.read()
        assert rc == 0, f"echo server exited with {rc}: {err}"

    def test_text_and_binary_sizes(self):
        sizes = [0, 1, 125, 126, 127, 65535, 65536, 65537, 1000 * 1000]

        async def go():
            async with websockets.connect(self.srv.uri, max_size=None, compression=None) as ws:
                for n in sizes:
                    data = os.urandom(n)
                    await ws.send(data)
                    self.assertEqual(await ws.recv(), data, f"binary {n}")
                    text = ("héllo wörld ✓ " * (n // 16 + 1))[: max(n // 2, 0)]
                    await ws.send(text)
                    self.assertEqual(await ws.recv(), text, f"text {n}")
        run(go())

    def test_16mib_fragmented_message(self):
        async def go():
            async with websockets.connect(self.srv.uri, max_size=None, compression=None) as ws:
                data = os.urandom(16 * MiB)
                # Frames of 1 MiB (the server's default frame limit): a 16 MiB message.
                await ws.send([data[i:i + MiB] for i in range(0, len(data), MiB)])
                self.assertEqual(await ws.recv(), data)
        run(go())

    def test_fragmented_text_with_ping_between(self):
        # websockets sends fragments of an iterable message; a ping from another task may be
        # interleaved, and the server must answer it while the message is incomplete.
        async def go():
            async with websockets.connect(self.srv.uri, max_size=None, compression=None) as ws:
                parts = ["ab", "cdé", "", "f✓g" * 1000]
                await ws.send(parts)
                self.assertEqual(await ws.recv(), "".join(parts))
                waiter = await ws.ping(b"are you there")
                await asyncio.wait_for(waiter, 10)
        run(go())

    def test_raw_ping_inside_fragmented_message(self):
        s = raw_connect(self.srv.port)
        s.sendall(frame(0x2, b"part1", fin=False) + frame(0x9, b"PING!") +
                  frame(0x0, b"part2", fin=True))
        got, pong = b"", None
        while True:
            op, payload = read_frame(s)
            if op == 0xA:
                pong = payload
            elif op in (0x2, 0x0):
                got += payload
                if len(got) == 10:
                    break
        self.assertEqual(pong, b"PING!")
        self.assertEqual(got, b"part1part2")
        s.sendall(frame(0x8, struct.pack("!H", 1000)))
        expect_close_code(s, 1000)
        s.close()

    def test_close_codes_echoed(self):
        for code in (1000, 1001, 3000, 4999):
            async def go():
                ws = await websockets.connect(self.srv.uri, compression=None)
                await ws.close(code=code, reason="bye")
                self.assertEqual(ws.close_code, code)
            run(go())

    def test_unmasked_client_frame_gets_1002(self):
        s = raw_connect(self.srv.port)
        s.sendall(frame(0x2, b"not masked", mask=False))
        expect_close_code(s, 1002)
        s.close()

    def test_invalid_utf8_gets_1007(self):
        s = raw_connect(self.srv.port)
        s.sendall(frame(0x1, b"ok \xff\xfe bad"))
        expect_close_code(s, 1007)
        s.close()

    def test_utf8_split_across_fragments_is_valid(self):
        s = raw_connect(self.srv.port)
        euro = "€".encode()  # 3 bytes, split 1 + 2 across frames
        s.sendall(frame(0x1, euro[:1], fin=False) + frame(0x0, euro[1:], fin=True))
        got = b""
        while len(got) < 3:
            op, payload = read_frame(s)
            self.assertIn(op, (0x1, 0x0))
            got += payload
        self.assertEqual(got, euro)
        s.close()

    def test_oversized_frame_gets_1009(self):
        s = raw_connect(self.srv.port)
        # Header announcing 2 MiB; the server must refuse before reading (or buffering) it.
        s.sendall(frame(0x2, b"", length_override=2 * MiB)[:10] + os.urandom(4))
        expect_close_code(s, 1009)
        s.close()

    def test_bad_close_code_gets_1002(self):
        s = raw_connect(self.srv.port)
        s.sendall(frame(0x8, struct.pack("!H", 1005)))
        expect_close_code(s, 1002)
        s.close()

    def test_one_bad_client_does_not_affect_others(self):
        async def go():
            async with websockets.connect(self.srv.uri, compression=None) as ws:
                bad = raw_connect(self.srv.port)
                bad.sendall(b"\xff" * 64)  # reserved opcode 0xF with RSV bits
                expect_close_code(bad, 1002)
                bad.close()
                await ws.send("still here")
                self.assertEqual(await ws.recv(), "still here")
        run(go())

    def test_many_concurrent_clients(self):
        async def one(i):
            async with websockets.connect(self.srv.uri, compression=None) as ws:
                for j in range(20):
                    msg = f"{i}:{j}:" + "x" * (i * 37 % 3000)
                    await ws.send(msg)
                    assert await ws.recv() == msg

        async def go():
            await asyncio.gather(*(one(i) for i in range(50)))
        run(go())


class WsEchoDeflate(unittest.TestCase):
    """permessage-deflate (RFC 7692) negotiated with an independent implementation."""

    @classmethod
    def setUpClass(cls):
        cls.srv = EchoServer("--deflate")

    @classmethod
    def tearDownClass(cls):
        assert cls.srv.stop() == 0

    def test_negotiated_and_round_trips(self):
        async def go():
            async with websockets.connect(self.srv.uri, max_size=None) as ws:  # offers deflate
                ext = ws.response_headers.get("Sec-WebSocket-Extensions", "")
                self.assertIn("permessage-deflate", ext)
                for n in (0, 10, 1000, 100_000, 900_000):
                    text = ("token %d, " * (n // 9 + 1) % tuple(range(n // 9 + 1)))[:n]
                    await ws.send(text)
                    self.assertEqual(await ws.recv(), text)
                    data = os.urandom(n)
                    await ws.send(data)
                    self.assertEqual(await ws.recv(), data)
        run(go())

    def test_plain_client_still_served(self):
        async def go():
            async with websockets.connect(self.srv.uri, compression=None) as ws:
                self.assertNotIn("Sec-WebSocket-Extensions", ws.response_headers)
                await ws.send("plain")
                self.assertEqual(await ws.recv(), "plain")
        run(go())

    def test_decompression_bomb_gets_1009(self):
        # 32 MiB of zeros deflates to ~32 KiB: under the frame limit on the wire, over the
        # 16 MiB message limit once inflated. The server must stop at the limit.
        async def go():
            async with websockets.connect(self.srv.uri, max_size=None) as ws:
                await ws.send(bytes(32 * MiB))
                with self.assertRaises(websockets.exceptions.ConnectionClosed) as cm:
                    await ws.recv()
                self.assertEqual(cm.exception.rcvd.code, 1009)
        run(go())


if __name__ == "__main__":
    unittest.main(verbosity=2)
