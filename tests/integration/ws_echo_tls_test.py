#!/usr/bin/python3
"""WebSocket echo over TLS (wss://) on the reactor, checked with independent clients.

Clients: Debian's python3-websockets on Python's ssl module (OpenSSL), raw ssl sockets, curl,
and plain TCP sockets that do not speak TLS at all. The certificate is generated at test time
by ferry-certgen (wolfCrypt) and trusted by the clients as their only CA.
Usage: ws_echo_tls_test.py PATH/TO/ferry-echo PATH/TO/ferry-certgen
"""
import asyncio
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import unittest

import websockets
import websockets.exceptions

ECHO = sys.argv.pop(1) if len(sys.argv) > 1 else "build/src/cmd/ferry-echo"
CERTGEN = sys.argv.pop(1) if len(sys.argv) > 1 else "build/src/cmd/ferry-certgen"
MiB = 1024 * 1024
TMP = tempfile.mkdtemp(prefix="ferry-tls-test-")
CERT = os.path.join(TMP, "tls.crt")
KEY = os.path.join(TMP, "tls.key")


def setUpModule():
    subprocess.run([CERTGEN, "--cert", CERT, "--key", KEY], check=True, capture_output=True)


def tearDownModule():
    shutil.rmtree(TMP, ignore_errors=True)


class EchoServer:
    def __init__(self, *extra):
        self.proc = subprocess.Popen(
            [ECHO, "--ws", "--listen", "127.0.0.1:0", "--shards", "2",
             "--tls-cert", CERT, "--tls-key", KEY, *extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if "listening on" not in line:
            self.proc.kill()
            raise RuntimeError("echo server did not start: " + line + self.proc.stderr.read())
        self.port = int(line.strip().rsplit(":", 1)[1])
        self.uri = f"wss://localhost:{self.port}/"

    def stop(self):
        """Stops the server; returns its exit code and keeps its stderr in self.err."""
        self.proc.terminate()
        try:
            _, self.err = self.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, self.err = self.proc.communicate()
        self.proc.stdout.close()
        self.proc.stderr.close()
        return self.proc.returncode


def client_ctx(alpn=True):
    ctx = ssl.create_default_context(cafile=CERT)  # verifies chain and host name
    if alpn:
        ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, timeout=120))


def read_all(sock, limit=1 << 20):
    data = b""
    while len(data) < limit:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, ssl.SSLError):
            break
        if not chunk:
            break
        data += chunk
    return data


class WssEcho(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.srv = EchoServer("--head-timeout", "1500")

    @classmethod
    def tearDownClass(cls):
        rc = cls.srv.stop()
        err = cls.srv.err
        assert rc == 0, f"echo server exited with {rc}: {err}"
        assert "ERROR: AddressSanitizer" not in err and "runtime error" not in err, err

    def assert_still_serving(self):
        async def go():
            async with websockets.connect(self.srv.uri, ssl=client_ctx(), compression=None) as ws:
                await ws.send("still here")
                self.assertEqual(await ws.recv(), "still here")
        run(go())

    def test_text_binary_and_1mib_over_tls13(self):
        async def go():
            async with websockets.connect(self.srv.uri, ssl=client_ctx(), max_size=None,
                                          compression=None) as ws:
                tls = ws.transport.get_extra_info("ssl_object")
                self.assertEqual(tls.version(), "TLSv1.3")
                self.assertEqual(tls.selected_alpn_protocol(), "http/1.1")
                for n in (0, 1, 125, 126, 16383, 16384, 16385, 65536, MiB):
                    data = os.urandom(n)
                    await ws.send(data)
                    self.assertEqual(await ws.recv(), data, f"binary {n}")
                    text = ("héllo wörld ✓ " * (n // 16 + 1))[: n // 2]
                    await ws.send(text)
                    self.assertEqual(await ws.recv(), text, f"text {n}")
                await ws.close(code=1000, reason="done")
            self.assertEqual(ws.close_code, 1000)
        run(go())

    def test_fragmented_16mib_message(self):
        async def go():
            async with websockets.connect(self.srv.uri, ssl=client_ctx(), max_size=None,
                                          compression=None) as ws:
                data = os.urandom(16 * MiB)
                await ws.send([data[i:i + MiB] for i in range(0, len(data), MiB)])
                self.assertEqual(await ws.recv(), data)
        run(go())

    def test_many_concurrent_clients(self):
        async def one(i):
            async with websockets.connect(self.srv.uri, ssl=client_ctx(), compression=None) as ws:
                for j in range(10):
                    msg = f"{i}:{j}:" + "x" * (i * 37 % 3000)
                    await ws.send(msg)
                    assert await ws.recv() == msg

        async def go():
            await asyncio.gather(*(one(i) for i in range(30)))
        run(go())

    def test_curl_gets_a_clean_http_error_over_tls(self):
        if not shutil.which("curl"):
            self.skipTest("curl not installed")
        out = subprocess.run(
            ["curl", "-sS", "--cacert", CERT, "--max-time", "10", "-o", "-", "-w", "\n%{http_code} %{ssl_verify_result}",
             f"https://localhost:{self.srv.port}/some/path"],
            capture_output=True, text=True)
        self.assertEqual(out.returncode, 0, out.stderr)
        body, _, status = out.stdout.rpartition("\n")
        self.assertEqual(status, "426 0")  # Upgrade Required, certificate verified
        self.assertIn('"ws_upgrade_required"', body)

    def test_curl_with_another_ca_refuses_the_certificate(self):
        if not shutil.which("curl"):
            self.skipTest("curl not installed")
        out = subprocess.run(["curl", "-sS", "--max-time", "10", f"https://localhost:{self.srv.port}/"],
                             capture_output=True, text=True)
        self.assertEqual(out.returncode, 60, out.stderr)  # peer certificate cannot be authenticated
        self.assert_still_serving()

    def test_client_not_trusting_the_certificate_fails_and_server_survives(self):
        async def go():
            ctx = ssl.create_default_context()  # system roots only
            with self.assertRaises(ssl.SSLCertVerificationError):
                await websockets.connect(self.srv.uri, ssl=ctx)
        run(go())
        self.assert_still_serving()

    def test_wrong_host_name_is_refused_by_the_client(self):
        async def go():
            with self.assertRaises(ssl.SSLCertVerificationError):
                await websockets.connect(self.srv.uri, ssl=client_ctx(), server_hostname="relay.example.com")
        run(go())

    def test_plain_websocket_client_on_the_tls_port(self):
        async def go():
            with self.assertRaises(websockets.exceptions.InvalidStatusCode) as cm:
                await websockets.connect(f"ws://127.0.0.1:{self.srv.port}/")
            self.assertEqual(cm.exception.status_code, 400)
        run(go())
        self.assert_still_serving()

    def test_plain_http_gets_a_readable_400(self):
        s = socket.create_connection(("127.0.0.1", self.srv.port), timeout=10)
        s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        resp = read_all(s)
        s.close()
        self.assertTrue(resp.startswith(b"HTTP/1.1 400 "), resp[:100])
        self.assertIn(b'"tls_required"', resp)
        self.assert_still_serving()

    def test_garbage_bytes_close_the_connection(self):
        # Random bytes begin with a capital letter about 1 time in 10: such garbage is not an
        # HTTP request either (a method token and a space are needed for the plaintext 400).
        for junk in (b"\x00" * 100, os.urandom(3000), b"\x16\x03\x01\x00\x05hello" + os.urandom(500),
                     b"QZ\x07" + os.urandom(200), b"GETTINGLONG /x"):
            s = socket.create_connection(("127.0.0.1", self.srv.port), timeout=10)
            s.sendall(junk)
            start = time.monotonic()
            data = read_all(s)
            s.close()
            self.assertLess(time.monotonic() - start, 5, "closed promptly")
            self.assertFalse(data.startswith(b"HTTP/"), data[:50])  # no plaintext for non-HTTP garbage
        self.assert_still_serving()

    def test_silent_client_is_dropped_at_the_head_timeout(self):
        # The head timer covers the TLS handshake: a client that connects and says nothing.
        s = socket.create_connection(("127.0.0.1", self.srv.port), timeout=10)
        start = time.monotonic()
        data = read_all(s)
        s.close()
        took = time.monotonic() - start
        self.assertEqual(data, b"")
        self.assertGreater(took, 1.0)
        self.assertLess(took, 8.0)

    def test_stalled_handshake_is_dropped_at_the_head_timeout(self):
        # A TLS client that stops half way through its ClientHello.
        raw = socket.create_connection(("127.0.0.1", self.srv.port), timeout=10)
        raw.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
        start = time.monotonic()
        read_all(raw)
        raw.close()
        self.assertLess(time.monotonic() - start, 8.0)

    def test_session_resumption_with_openssl(self):
        ctx = client_ctx()

        def request(session=None):
            raw = socket.create_connection(("127.0.0.1", self.srv.port), timeout=10)
            s = ctx.wrap_socket(raw, server_hostname="localhost", session=session)
            s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
            resp = read_all(s)  # the 426 (the ticket arrives before it), then close_notify
            reused = s.session_reused
            sess = s.session
            s.close()
            self.assertIn(b" 426 ", resp.split(b"\r\n", 1)[0])
            return sess, reused

        first, reused = request()
        self.assertFalse(reused)
        self.assertTrue(first.has_ticket, "the server issued a session ticket")
        _, reused = request(first)
        self.assertTrue(reused, "resumed with the ticket")


class WssVersions(unittest.TestCase):
    """TLS 1.3 only by default; 1.2 on request."""

    def connect_tls12(self, port):
        ctx = client_ctx()
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2

        async def go():
            async with websockets.connect(f"wss://localhost:{port}/", ssl=ctx, compression=None) as ws:
                await ws.send("1.2")
                self.assertEqual(await ws.recv(), "1.2")
                return ws.transport.get_extra_info("ssl_object").version()
        return run(go())

    def test_tls12_client_refused_by_default(self):
        srv = EchoServer()
        try:
            with self.assertRaises(ssl.SSLError):
                self.connect_tls12(srv.port)
        finally:
            self.assertEqual(srv.stop(), 0)

    def test_tls12_allowed_with_min_version(self):
        srv = EchoServer("--tls-min-version", "1.2")
        try:
            self.assertEqual(self.connect_tls12(srv.port), "TLSv1.2")
        finally:
            self.assertEqual(srv.stop(), 0)


class BadTlsConfig(unittest.TestCase):
    def test_missing_key_file_is_a_clear_startup_error(self):
        out = subprocess.run([ECHO, "--ws", "--listen", "127.0.0.1:0", "--tls-cert", CERT,
                              "--tls-key", os.path.join(TMP, "missing.key")],
                             capture_output=True, text=True, timeout=30)
        self.assertEqual(out.returncode, 1)
        self.assertIn("cannot read the private key file", out.stderr)
        self.assertIn("No such file", out.stderr)

    def test_key_not_matching_the_certificate(self):
        other = os.path.join(TMP, "other")
        subprocess.run([CERTGEN, "--cert", other + ".crt", "--key", other + ".key"], check=True,
                       capture_output=True)
        out = subprocess.run([ECHO, "--ws", "--listen", "127.0.0.1:0", "--tls-cert", CERT,
                              "--tls-key", other + ".key"], capture_output=True, text=True, timeout=30)
        self.assertEqual(out.returncode, 1)
        self.assertIn("does not match", out.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
