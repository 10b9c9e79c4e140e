#!/usr/bin/python3
"""OpenSSH's ssh client against our SSH server (tests/ssh/ssh_test_server.cc) on loopback.

The server runs ferry::ssh::session on the reactor; OpenSSH is the independent implementation.
`ssh -N -R NAME:80:127.0.0.1:TARGET` makes the server bind a loopback listener for the forward;
the test connects "consumers" there, the server opens forwarded-tcpip channels, ssh connects
them to TARGET (a service this script runs), and bytes are checked end to end with SHA-256.

Checked: the four cipher/MAC combinations of issue 3 with key authentication; 64 MiB each way at
the same time (independent streams, not an echo) on one channel and over several concurrent
channels; rekeying every 1 MiB by the client (RekeyLimit) and by the server (--rekey-bytes)
during such transfers; keepalive@openssh.com replies (ServerAliveInterval with
ServerAliveCountMax=1 disconnects a server that does not answer); strict KEX in the -vvv log;
port-0 forwards; cancel-tcpip-forward (through an ssh control master); listeners closed when
the session ends.

Usage: openssh_client_test.py PATH/TO/ssh_test_server [unittest args]
Timing figures (MB/s from this script's own clock) are printed on stdout.
"""
import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

SERVER = sys.argv.pop(1) if len(sys.argv) > 1 else "build/tests/ssh/ssh_test_server"
SSH = "/usr/bin/ssh"
SSH_KEYGEN = "/usr/bin/ssh-keygen"
MiB = 1 << 20
CHUNK = 256 * 1024


def log(msg):
    print(msg, flush=True)


# ---- target services (what ssh connects forwarded channels to) -------------------------------

class Service:
    """A loopback TCP service; `handle(conn)` runs on its own thread per connection."""

    def __init__(self, handle, rcvbuf=None):
        self.sock = socket.socket()
        if rcvbuf:  # inherited by accepted sockets; a fixed size turns off autotuning
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.handle = handle
        self.stopping = False
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while not self.stopping:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._run, args=(c,), daemon=True).start()

    def _run(self, c):
        try:
            self.handle(c)
        except OSError:
            pass
        finally:
            c.close()

    def close(self):
        self.stopping = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


def echo(c):
    """Echoes until EOF, then half-closes (so EOF travels back through the tunnel)."""
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    while True:
        n = c.recv_into(buf)
        if n == 0:
            break
        c.sendall(view[:n])
    c.shutdown(socket.SHUT_WR)


class SourceSink:
    """Per connection: sends `size` bytes of its own random data and, at the same time, reads
    everything the peer sends. Results (digests and counts) are collected per connection."""

    def __init__(self, size):
        self.size = size
        self.data = os.urandom(size)
        self.sent_digest = hashlib.sha256(self.data).hexdigest()
        self.results = []
        self.lock = threading.Lock()
        self.done = threading.Condition(self.lock)

    def __call__(self, c):
        sender = threading.Thread(target=send_all, args=(c, self.data), daemon=True)
        sender.start()
        digest, count = read_all(c)
        sender.join()
        with self.lock:
            self.results.append((digest, count))
            self.done.notify_all()

    def wait(self, n, timeout):
        end = time.monotonic() + timeout
        with self.lock:
            while len(self.results) < n:
                left = end - time.monotonic()
                if left <= 0:
                    raise AssertionError("target service saw %d of %d connections finish" % (len(self.results), n))
                self.done.wait(left)
            return list(self.results)


class Gated:
    """Per connection: sends `size` bytes of its own random data at once (counting progress in
    `sent`), but reads only after `gate` is set. Models a slow upstream and lets the test see
    how far the other side got while nothing moved."""

    def __init__(self, size):
        self.data = os.urandom(size)
        self.sent_digest = hashlib.sha256(self.data).hexdigest()
        self.gate = threading.Event()
        self.sent = 0
        self.result = None
        self.finished = threading.Event()

    def __call__(self, c):
        def sender():
            view = memoryview(self.data)
            try:
                for off in range(0, len(self.data), CHUNK):
                    c.sendall(view[off:off + CHUNK])
                    self.sent = off + len(view[off:off + CHUNK])
                c.shutdown(socket.SHUT_WR)
            except OSError:
                pass  # the tunnel went away (test_disconnects)
        s = threading.Thread(target=sender, daemon=True)
        s.start()
        self.gate.wait(60)
        try:
            self.result = read_all(c)
        except OSError:
            pass
        s.join(60)
        self.finished.set()


def send_all(c, data):
    view = memoryview(data)
    for off in range(0, len(data), 4 * CHUNK):
        c.sendall(view[off:off + 4 * CHUNK])
    c.shutdown(socket.SHUT_WR)


def read_all(c):
    h = hashlib.sha256()
    buf = bytearray(4 * CHUNK)
    view = memoryview(buf)
    count = 0
    while True:
        n = c.recv_into(buf)
        if n == 0:
            break
        h.update(view[:n])
        count += n
    return h.hexdigest(), count


def exchange(port, data, timeout=60):
    """Connects to `port`, sends `data` (then half-closes) while reading until EOF.
    Returns (digest of what came back, byte count, seconds)."""
    t0 = time.monotonic()
    c = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        sender = threading.Thread(target=send_all, args=(c, data), daemon=True)
        sender.start()
        digest, count = read_all(c)
        sender.join(timeout)
        return digest, count, time.monotonic() - t0
    finally:
        c.close()


# ---- the server and the client ---------------------------------------------------------------

class Server:
    def __init__(self, tmp, *extra):
        self.err_path = os.path.join(tmp, "server.err")
        self.err = open(self.err_path, "w")
        self.proc = subprocess.Popen(
            [SERVER, "--listen", "127.0.0.1:0", "--authorized", os.path.join(tmp, "id_ed25519.pub"),
             *extra],
            stdout=subprocess.PIPE, stderr=self.err, text=True)
        self.lines = []
        self.cond = threading.Condition()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        hostkey = self.wait_line(r"hostkey (ssh-ed25519 \S+)$").group(1)
        self.port = int(self.wait_line(r"listening 127\.0\.0\.1:(\d+)$").group(1))
        self.known_hosts = os.path.join(tmp, "known_hosts")
        with open(self.known_hosts, "w") as f:
            f.write("[127.0.0.1]:%d %s\n" % (self.port, hostkey))

    def _read(self):
        for line in self.proc.stdout:
            with self.cond:
                self.lines.append(line.rstrip("\n"))
                self.cond.notify_all()
        with self.cond:
            self.lines.append(None)  # EOF marker
            self.cond.notify_all()

    def mark(self):
        with self.cond:
            return len(self.lines)

    def wait_line(self, pattern, start=0, timeout=15, alive=None):
        """The first line from index `start` matching `pattern` (re.search)."""
        rx = re.compile(pattern)
        end = time.monotonic() + timeout
        i = start
        with self.cond:
            while True:
                while i < len(self.lines):
                    line = self.lines[i]
                    if line is None:
                        raise AssertionError("server exited waiting for %r; stderr:\n%s" % (pattern, self.stderr()))
                    m = rx.search(line)
                    if m:
                        return m
                    i += 1
                if alive is not None and alive.poll() is not None:
                    raise AssertionError("ssh exited (%d) while waiting for %r" % (alive.returncode, pattern))
                left = end - time.monotonic()
                if left <= 0:
                    raise AssertionError("timed out waiting for %r; lines: %r" % (pattern, self.lines[start:]))
                self.cond.wait(min(left, 0.2))

    def lines_since(self, start):
        with self.cond:
            return [l for l in self.lines[start:] if l is not None]

    def stderr(self, tail=4000):
        if not self.err.closed:
            self.err.flush()
        with open(self.err_path, errors="replace") as f:
            return f.read()[-tail:]

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.reader.join(5)
        self.proc.stdout.close()
        self.err.close()
        return self.proc.returncode


class Client:
    """One `ssh -N` process with a -vvv log file."""
    count = 0

    def __init__(self, tmp, server, extra, user="tester"):
        Client.count += 1
        self.log_path = os.path.join(tmp, "ssh-%d.log" % Client.count)
        self.cmd = [SSH, "-F", "none", "-vvv", "-E", self.log_path, "-N", "-p", str(server.port),
                    "-i", os.path.join(tmp, "id_ed25519"),
                    "-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none",
                    "-o", "StrictHostKeyChecking=yes", "-o", "UserKnownHostsFile=" + server.known_hosts,
                    "-o", "GlobalKnownHostsFile=/dev/null", "-o", "BatchMode=yes",
                    "-o", "ExitOnForwardFailure=yes", "-o", "UpdateHostKeys=no",
                    *extra, user + "@127.0.0.1"]
        self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def tcp_refused(port, within=3.0):
    """True once connecting to `port` is refused (the server closes a listener asynchronously:
    its cancelled accept completes in a later loop iteration)."""
    end = time.monotonic() + within
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
        except ConnectionRefusedError:
            return True
        except OSError:
            pass
        if time.monotonic() > end:
            return False
        time.sleep(0.05)


class OpenSSHClient(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        for p in (SSH, SSH_KEYGEN):
            if not os.access(p, os.X_OK):
                raise unittest.SkipTest(p + " not installed")
        cls.tmp = tempfile.mkdtemp(prefix="ferry-ssh-openssh-")
        subprocess.run([SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-C", "ferry-test",
                        "-f", os.path.join(cls.tmp, "id_ed25519")], check=True)
        cls.echo = Service(echo)

    @classmethod
    def tearDownClass(cls):
        cls.echo.close()
        if not os.environ.get("FERRY_KEEP_TMP"):
            shutil.rmtree(cls.tmp, ignore_errors=True)

    def setUp(self):
        self.server = None
        self.clients = []

    def tearDown(self):
        for c in self.clients:
            c.stop()
        if self.server:
            rc = self.server.stop()
            err = self.server.stderr(tail=1 << 20)
            # A clean exit after SIGTERM; sanitizer reports (ASan, LSan, UBSan) fail the test.
            self.assertEqual(rc, 0, "server exit status %s; stderr:\n%s" % (rc, err[-4000:]))
            for marker in ("runtime error", "Sanitizer", "ERROR"):
                self.assertNotIn(marker, err)

    def start_server(self, *extra):
        self.server = Server(self.tmp, *extra)
        return self.server

    def connect(self, *extra):
        c = Client(self.tmp, self.server, list(extra))
        self.clients.append(c)
        return c

    def forward(self, client, name, port, start):
        """Waits for the server's `forward` line; returns (bound port, local listener port)."""
        try:
            m = self.server.wait_line(r"^forward %s (\d+) -> 127\.0\.0\.1:(\d+)$" % re.escape(name),
                                      start=start, alive=client.proc)
        except AssertionError as e:
            raise AssertionError("%s\nssh log tail:\n%s" % (e, client.log()[-3000:]))
        return int(m.group(1)), int(m.group(2))

    def end_session(self, client, start):
        """Stops ssh and returns the server's `end ...` line of that session as a dict."""
        client.stop()
        m = self.server.wait_line(r"^end (.*)$", start=start)
        fields = dict(kv.split("=", 1) for kv in m.group(1).split(" ") if "=" in kv)
        return fields

    def assert_strict_kex(self, client_log):
        # Debian's OpenSSH 9.2 (Terrapin fix backported) logs "kex_choose_conf: will use strict
        # KEX ordering" at debug3 when both sides offered it; check the offers too.
        self.assertIn("will use strict KEX ordering", client_log)
        ours = re.search(r"debug2: local client KEXINIT proposal\s*\ndebug2: KEX algorithms: (\S+)", client_log)
        peer = re.search(r"debug2: peer server KEXINIT proposal\s*\ndebug2: KEX algorithms: (\S+)", client_log)
        self.assertIsNotNone(ours, "no client KEXINIT proposal in the -vvv log")
        self.assertIsNotNone(peer, "no server KEXINIT proposal in the -vvv log")
        self.assertIn("kex-strict-c-v00@openssh.com", ours.group(1).split(","))
        self.assertIn("kex-strict-s-v00@openssh.com", peer.group(1).split(","))

    # ---- tests ------------------------------------------------------------------------------

    def test_ciphers_key_auth_and_forward(self):
        combos = [
            ("aes256-gcm@openssh.com", None),
            ("chacha20-poly1305@openssh.com", None),
            ("aes256-ctr", "hmac-sha2-256-etm@openssh.com"),
            ("aes128-ctr", "hmac-sha2-512"),
        ]
        srv = self.start_server()
        data = os.urandom(2 * MiB + 12345)
        want = hashlib.sha256(data).hexdigest()
        for cipher, mac in combos:
            with self.subTest(cipher=cipher, mac=mac):
                start = srv.mark()
                extra = ["-c", cipher] + (["-m", mac] if mac else [])
                cl = self.connect(*extra, "-R", "name:80:127.0.0.1:%d" % self.echo.port)
                auth = srv.wait_line(r"^auth tester publickey strict=(\d) cipher=(\S+) mac=(\S+)$",
                                     start=start, alive=cl.proc)
                self.assertEqual(auth.group(1), "1")
                self.assertEqual(auth.group(2), cipher)
                if mac:
                    self.assertEqual(auth.group(3), mac)
                bound, lport = self.forward(cl, "name", 80, start)
                self.assertEqual(bound, 80)
                digest, count, _ = exchange(lport, data)
                self.assertEqual(count, len(data))
                self.assertEqual(digest, want)
                end = self.end_session(cl, start)
                self.assertEqual(end["channels"], "1")
                text = cl.log()
                self.assertIn("kex: server->client cipher: %s" % cipher, text)
                self.assert_strict_kex(text)
                # The session's listener went with it.
                self.assertTrue(tcp_refused(lport), "forward listener still open after the session ended")

    def bulk(self, label, server_args=(), ssh_args=(), consumers=1, size=64 * MiB):
        """`consumers` channels at once through one -R forward, each moving `size` bytes each
        way (consumer data to a source/sink target that sends its own `size` bytes back)."""
        srv = self.start_server(*server_args)
        start = srv.mark()
        target = Service(SourceSink(size))
        try:
            sink = target.handle
            cl = self.connect(*ssh_args, "-R", "bulk:80:127.0.0.1:%d" % target.port)
            _, lport = self.forward(cl, "bulk", 80, start)
            payloads = [os.urandom(size) for _ in range(consumers)]
            results = [None] * consumers

            def run(i):
                results[i] = exchange(lport, payloads[i], timeout=120)

            t0 = time.monotonic()
            threads = [threading.Thread(target=run, args=(i,)) for i in range(consumers)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(150)
            elapsed = time.monotonic() - t0
            seen = sink.wait(consumers, timeout=30)
            for i in range(consumers):
                self.assertIsNotNone(results[i], "consumer %d did not finish" % i)
                digest, count, _ = results[i]
                self.assertEqual(count, size, "consumer %d: bytes from the target" % i)
                self.assertEqual(digest, sink.sent_digest, "consumer %d: data from the target" % i)
            # Every consumer's upload arrived intact at the target (order of connections aside).
            self.assertEqual(sorted(seen), sorted((hashlib.sha256(p).hexdigest(), size) for p in payloads))
            total = consumers * size
            log("%s: %d consumer(s) x %d MiB each way in %.2f s: %.0f MB/s each way, %.0f MB/s total"
                % (label, consumers, size // MiB, elapsed, total / elapsed / 1e6, 2 * total / elapsed / 1e6))
            end = self.end_session(cl, start)
            self.assertEqual(int(end["channels"]), consumers)
            self.assertEqual(int(end["up"]), total)
            self.assertEqual(int(end["down"]), total)
            return end, srv.lines_since(start), cl.log()
        finally:
            target.close()

    def test_bulk_64mib_each_way(self):
        self.bulk("bulk 64 MiB (default cipher)")

    def test_bulk_64mib_each_way_aes256_gcm(self):
        self.bulk("bulk 64 MiB aes256-gcm", ssh_args=["-c", "aes256-gcm@openssh.com"])

    def test_concurrent_consumers(self):
        self.bulk("concurrent", consumers=4, size=16 * MiB)

    def test_rekey_client_limit(self):
        end, lines, _ = self.bulk("rekey every 1 MiB (client RekeyLimit)", ssh_args=["-o", "RekeyLimit=1M"])
        rekeys = int(end["rekeys"])
        log("client-initiated rekeys during the transfer: %d" % rekeys)
        self.assertGreaterEqual(rekeys, 32)
        self.assertEqual(len([l for l in lines if l.startswith("rekey ")]), rekeys)

    def test_rekey_server_limit(self):
        # Our own rekeys every 1 MiB with a small rekey queue (64 KiB instead of 16 MiB): four
        # channels keep filling it while our key exchanges run, wait, and resume after each
        # (writable_after_kex); channel opens and window adjusts must still get through.
        end, _, _ = self.bulk("4 channels, server rekey every 1 MiB, 64 KiB kex queue",
                              server_args=["--rekey-bytes", str(MiB), "--kex-queue-bytes", "65536"],
                              consumers=4, size=16 * MiB)
        rekeys, waits = int(end["rekeys"]), int(end["kexwaits"])
        log("server-initiated rekeys during the transfer: %d; channel resumptions after a rekey: %d"
            % (rekeys, waits))
        self.assertGreaterEqual(rekeys, 32)
        self.assertGreater(waits, 0)

    def test_backpressure_slow_ends(self):
        """Neither end reads for a while: what the other end manages to push meanwhile is
        bounded by windows, watermarks and socket buffers, not by the transfer size (the server
        neither acknowledges SSH data its consumer has not taken nor reads a consumer whose
        channel window is shut). Then both read and everything arrives intact."""
        size = 64 * MiB
        srv = self.start_server()
        start = srv.mark()
        gated = Gated(size)
        # Small fixed receive buffers at both ends keep the kernel's share of the numbers
        # below small (loopback autotuning may otherwise grow them to tcp_rmem's maximum).
        target = Service(gated, rcvbuf=256 * 1024)
        try:
            cl = self.connect("-R", "slow:80:127.0.0.1:%d" % target.port)
            _, lport = self.forward(cl, "slow", 80, start)
            up = os.urandom(size)
            progress = [0]
            c = socket.socket()
            c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 256 * 1024)
            c.settimeout(60)
            c.connect(("127.0.0.1", lport))

            def upload():
                view = memoryview(up)
                for off in range(0, size, CHUNK):
                    c.sendall(view[off:off + CHUNK])
                    progress[0] = off + CHUNK
                c.shutdown(socket.SHUT_WR)

            sender = threading.Thread(target=upload, daemon=True)
            sender.start()
            time.sleep(2.0)  # the consumer does not read, the target does not read
            down_stuck, up_stuck = gated.sent, progress[0]
            log("back-pressure: while neither end read for 2 s, the target pushed %.1f MiB and the "
                "consumer %.1f MiB of %d MiB" % (down_stuck / MiB, up_stuck / MiB, size // MiB))
            self.assertTrue(cl.alive())
            # Socket buffers on loopback autotune to a few MiB each; several sit on each path
            # (plus the 2 MiB channel windows), but nowhere near the whole transfer.
            self.assertLess(down_stuck, 32 * MiB)
            self.assertLess(up_stuck, 32 * MiB)
            gated.gate.set()
            digest, count = read_all(c)
            sender.join(60)
            c.close()
            self.assertTrue(gated.finished.wait(30))
            self.assertEqual((digest, count), (gated.sent_digest, size))
            self.assertEqual(gated.result, (hashlib.sha256(up).hexdigest(), size))
            self.end_session(cl, start)
        finally:
            target.close()

    def test_disconnects(self):
        """Consumers that vanish, targets that refuse, and an SSH client that dies: each ends
        only what it concerns."""
        srv = self.start_server()
        start = srv.mark()
        dead = socket.socket()
        dead.bind(("127.0.0.1", 0))
        dead_port = dead.getsockname()[1]
        dead.close()  # nothing listens there: ssh answers our channel opens with a failure
        gated = Gated(64 * MiB)
        target = Service(gated)
        try:
            cl = self.connect("-R", "echo:80:127.0.0.1:%d" % self.echo.port,
                              "-R", "refused:80:127.0.0.1:%d" % dead_port,
                              "-R", "stuck:80:127.0.0.1:%d" % target.port)
            _, echo_port = self.forward(cl, "echo", 80, start)
            _, refused_port = self.forward(cl, "refused", 80, start)
            _, stuck_port = self.forward(cl, "stuck", 80, start)

            # 1. The target refuses: our consumer is closed, nothing else is.
            c = socket.create_connection(("127.0.0.1", refused_port), timeout=10)
            try:
                self.assertEqual(c.recv(1), b"")
            except ConnectionResetError:
                pass
            c.close()

            # 2. A consumer resets mid-transfer (RST, unread echo data queued everywhere).
            c = socket.create_connection(("127.0.0.1", echo_port), timeout=10)
            c.sendall(os.urandom(4 * MiB))
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            c.close()

            # The session is unharmed: the echo forward still works.
            data = os.urandom(1 * MiB)
            self.assertEqual(exchange(echo_port, data)[:2], (hashlib.sha256(data).hexdigest(), len(data)))

            # 3. The SSH client dies while a consumer is receiving: the consumer's connection
            # breaks (no clean EOF after partial data) and the session's listeners close.
            c = socket.create_connection(("127.0.0.1", stuck_port), timeout=10)
            got = c.recv(65536)
            self.assertTrue(got)
            cl.proc.kill()
            cl.proc.wait()
            t0 = time.monotonic()
            total = len(got)
            try:
                while True:
                    b = c.recv(CHUNK)
                    if not b:
                        break
                    total += len(b)
            except ConnectionResetError:
                pass
            c.close()
            self.assertLess(time.monotonic() - t0, 10)
            self.assertLess(total, 64 * MiB)
            end = srv.wait_line(r"^end (.*)$", start=start).group(1)
            self.assertIn("channels=4", end)
            for p in (echo_port, refused_port, stuck_port):
                self.assertTrue(tcp_refused(p), "listener %d still open after the session died" % p)
        finally:
            gated.gate.set()
            target.close()

    def test_keepalive(self):
        srv = self.start_server()
        start = srv.mark()
        # ServerAliveCountMax=1: a second unanswered keepalive@openssh.com ends ssh with
        # "Timeout, server not responding", so staying up for 3.5 s needs our replies.
        cl = self.connect("-o", "ServerAliveInterval=1", "-o", "ServerAliveCountMax=1",
                          "-R", "alive:80:127.0.0.1:%d" % self.echo.port)
        _, lport = self.forward(cl, "alive", 80, start)
        time.sleep(3.5)
        self.assertTrue(cl.alive(), "ssh exited:\n" + cl.log()[-2000:])
        data = os.urandom(100000)
        digest, count, _ = exchange(lport, data)
        self.assertEqual((digest, count), (hashlib.sha256(data).hexdigest(), len(data)))
        self.end_session(cl, start)
        text = cl.log()
        self.assertNotIn("not responding", text)
        # Global requests (80) sent after authentication and their replies (81/82): one for the
        # forward, the rest keepalives.
        after = text.split("Authenticated to", 1)[1]
        sent = len(re.findall(r"send packet: type 80\b", after))
        replies = len(re.findall(r"receive packet: type 8[12]\b", after))
        log("keepalive: %d global requests sent, %d replies received in ~3.5 s" % (sent, replies))
        self.assertGreaterEqual(replies - 1, 2)

    def test_two_shards_several_sessions(self):
        """Sessions land on either shard (SO_REUSEPORT); each shard signs with its own copy of
        the host key and hosts its sessions' listeners and consumers."""
        srv = self.start_server("--shards", "2")
        clients = []
        for i in range(4):
            start = srv.mark()
            cl = self.connect("-R", "s%d:80:127.0.0.1:%d" % (i, self.echo.port))
            clients.append((cl, self.forward(cl, "s%d" % i, 80, start)[1]))
        data = [os.urandom(4 * MiB) for _ in clients]
        results = [None] * len(clients)

        def run(i):
            results[i] = exchange(clients[i][1], data[i])

        threads = [threading.Thread(target=run, args=(i,)) for i in range(len(clients))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        for i, r in enumerate(results):
            self.assertIsNotNone(r)
            self.assertEqual(r[:2], (hashlib.sha256(data[i]).hexdigest(), len(data[i])))

    def test_port_zero_forward(self):
        srv = self.start_server()
        start = srv.mark()
        cl = self.connect("-R", "0:127.0.0.1:%d" % self.echo.port)
        m = srv.wait_line(r"^forward (\S+) (\d+) -> 127\.0\.0\.1:(\d+)$", start=start, alive=cl.proc)
        bound, lport = int(m.group(2)), int(m.group(3))
        self.assertNotEqual(bound, 0)
        self.assertEqual(bound, lport)
        data = os.urandom(300000)
        digest, count, _ = exchange(lport, data)
        self.assertEqual((digest, count), (hashlib.sha256(data).hexdigest(), len(data)))
        self.end_session(cl, start)
        self.assertIn("Allocated port %d for remote forward" % bound, cl.log())

    def test_cancel_forward(self):
        srv = self.start_server()
        start = srv.mark()
        ctl = os.path.join(self.tmp, "ctl")
        fwd = "gone:80:127.0.0.1:%d" % self.echo.port
        cl = self.connect("-o", "ControlMaster=yes", "-o", "ControlPath=" + ctl, "-R", fwd)
        _, lport = self.forward(cl, "gone", 80, start)
        data = os.urandom(50000)
        self.assertEqual(exchange(lport, data)[0], hashlib.sha256(data).hexdigest())
        r = subprocess.run([SSH, "-F", "none", "-o", "ControlPath=" + ctl, "-O", "cancel", "-R", fwd,
                            "tester@127.0.0.1"], capture_output=True, text=True, timeout=20)
        self.assertEqual(r.returncode, 0, r.stderr)
        srv.wait_line(r"^cancel gone 80$", start=start)
        self.assertTrue(tcp_refused(lport), "listener still open after cancel-tcpip-forward")
        self.assertTrue(cl.alive())
        self.end_session(cl, start)


if __name__ == "__main__":
    unittest.main(verbosity=2)
