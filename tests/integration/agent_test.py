#!/usr/bin/python3
"""`ferry agent` and `ferry connect` end to end, before the relay exists.

The relay is played by our SSH test server (tests/ssh/ssh_test_server.cc: an SSH server on the
reactor that binds a loopback listener per tcpip-forward and opens a forwarded-tcpip channel for
every TCP client of it) behind a WebSocket shim (tests/integration/ws_shim.py, Python
websockets: checks the bearer token, bridges binary messages to the SSH server). Consumers
connect to the listener the SSH server prints; upstream services run in this script.

Checked: an HTTP request through the tunnel; 64 MiB each way at once with SHA-256 on both ends;
a wrong token (401 logged, retried at the backoff cap); 503 and 429 refusals (growing delays,
Retry-After honoured); the shim killed and restarted (reconnect, forward again); a channel for
a name the agent did not configure (refused); a target that is down (connect_failed); SIGTERM
with a slow response in flight (it completes, exit 0 within the drain time); WebSocket pongs
stopping (reconnect); --max-attempts; wss:// with --ca-file; a changed relay host key (fatal,
both fingerprints logged); OpenSSH's `ssh -R` through `ferry connect` as its ProxyCommand.

Usage: agent_test.py PATH/TO/ferry PATH/TO/ssh_test_server PATH/TO/ferry-certgen [unittest args]
Processes wait on each other's log lines, never on fixed sleeps; every port is chosen by the OS.
"""
import base64
import hashlib
import http.client
import http.server
import json
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

from ferry_harness import serve_in_threads

FERRY = os.path.abspath(sys.argv.pop(1) if len(sys.argv) > 1 else "build/src/cmd/ferry")
SERVER = os.path.abspath(sys.argv.pop(1) if len(sys.argv) > 1 else "build/tests/ssh/ssh_test_server")
CERTGEN = os.path.abspath(sys.argv.pop(1) if len(sys.argv) > 1 else "build/src/cmd/ferry-certgen")
SHIM = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ws_shim.py")
PYTHON = "/usr/bin/python3"
SSH = "/usr/bin/ssh"
SSH_KEYGEN = "/usr/bin/ssh-keygen"
MiB = 1 << 20


def b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def fake_jwt(sub):
    """Looks like a JWT (the agent reads `sub` for its SSH user name); the shim only compares it."""
    head = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64url(json.dumps({"sub": sub, "exp": int(time.time()) + 3600}).encode())
    return "%s.%s.%s" % (head, body, b64url(os.urandom(32)))


# ---- processes whose output we wait on -----------------------------------------------------------

class Proc:
    """A child process; every line it prints (stdout and stderr) is collected for wait()."""

    def __init__(self, args, name, **kw):
        self.name = name
        self.args = args
        self.p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                  text=True, bufsize=1, **kw)
        self.lines = []  # (monotonic time, text)
        self.cv = threading.Condition()
        self.t = threading.Thread(target=self._read, daemon=True)
        self.t.start()

    def _read(self):
        for line in self.p.stdout:
            with self.cv:
                self.lines.append((time.monotonic(), line.rstrip("\n")))
                self.cv.notify_all()
        with self.cv:
            self.cv.notify_all()

    def wait_for(self, pred, timeout=15, start=0, what=None):
        """First line (from index `start`) for which pred(text) is truthy: (index, time, value)."""
        end = time.monotonic() + timeout
        i = start
        with self.cv:
            while True:
                while i < len(self.lines):
                    v = pred(self.lines[i][1])
                    if v:
                        return i, self.lines[i][0], v
                    i += 1
                left = end - time.monotonic()
                if left <= 0:
                    raise AssertionError("%s: timed out waiting for %s; output:\n%s" % (
                        self.name, what or pred, self.text()[-6000:]))
                self.cv.wait(min(left, 0.2))

    def wait_re(self, pattern, timeout=15, start=0):
        rx = re.compile(pattern)
        return self.wait_for(lambda s: rx.search(s), timeout, start, pattern)

    def text(self):
        with self.cv:
            return "\n".join(l for _, l in self.lines)

    def count(self):
        with self.cv:
            return len(self.lines)

    def signal(self, sig):
        if self.p.poll() is None:
            self.p.send_signal(sig)

    def stop(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGKILL)
        try:
            self.p.wait(10)
        except subprocess.TimeoutExpired:
            pass
        self.t.join(5)
        self.p.stdout.close()


def json_log(msg):
    """Predicate for the agent's JSON log lines with "msg" == msg (or starting with it)."""
    def pred(line):
        try:
            d = json.loads(line)
        except ValueError:
            return None
        if isinstance(d, dict) and str(d.get("msg", "")).startswith(msg):
            return d
        return None
    return pred


# ---- upstream services ---------------------------------------------------------------------------

class Upstream(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def do_GET(self):
        if self.path == "/hello":
            body = b"hello from upstream\n"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif self.path.startswith("/slow"):
            # A streamed response that takes ~3 s: the first chunk at once, then one every 0.3 s.
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Connection", "close")
            self.end_headers()
            for i in range(10):
                self.wfile.write(b"chunk %d\n" % i)
                self.wfile.flush()
                time.sleep(0.3)
            self.close_connection = True
        else:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()


def start_http():
    srv = Upstream(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def send_all(sock, data, chunk=256 * 1024):
    view = memoryview(data)
    for off in range(0, len(data), chunk):
        sock.sendall(view[off:off + chunk])
    sock.shutdown(socket.SHUT_WR)


def read_all(sock):
    h = hashlib.sha256()
    n = 0
    buf = bytearray(256 * 1024)
    while True:
        k = sock.recv_into(buf)
        if k == 0:
            return h.hexdigest(), n
        h.update(memoryview(buf)[:k])
        n += k


class SourceSink:
    """A TCP service: each connection sends `size` random bytes and reads everything, at once."""

    def __init__(self, size):
        self.data = os.urandom(size)
        self.digest = hashlib.sha256(self.data).hexdigest()
        self.results = []
        self.cv = threading.Condition()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        serve_in_threads(self.sock, self._run)

    def _run(self, c):
        try:
            t = threading.Thread(target=send_all, args=(c, self.data), daemon=True)
            t.start()
            r = read_all(c)
            t.join()
            with self.cv:
                self.results.append(r)
                self.cv.notify_all()
        finally:
            c.close()

    def close(self):
        self.sock.close()


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def http_get(port, path, timeout=15):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    c.request("GET", path)
    r = c.getresponse()
    body = r.read()
    c.close()
    return r.status, body


def consumer_refused(port, timeout=10):
    """Connects a consumer; True when the tunnel closes it without sending a byte."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            return s.recv(1024) == b""
        except ConnectionResetError:
            return True
    finally:
        s.close()


# ---- the fixture -------------------------------------------------------------------------------------

FAST = ["--ping-interval-ms", "1000", "--pong-timeout-ms", "2500", "--backoff-initial-ms", "200",
        "--backoff-max-ms", "1600", "--connect-timeout-ms", "1000", "--handshake-timeout-ms", "3000"]


class AgentTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="ferry-agent-test-")
        self.procs = []
        self.closers = []
        self.token = fake_jwt("alice")
        self.token_file = os.path.join(self.tmp, "token")
        with open(self.token_file, "w") as f:
            f.write(self.token + "\n")
        self.known_hosts = os.path.join(self.tmp, "kh", "known_hosts")

    def tearDown(self):
        for p in self.procs:
            p.stop()
        for c in self.closers:
            c()
        shutil.rmtree(self.tmp, ignore_errors=True)
        # Sanitizer builds: a report from any process fails the test.
        for p in self.procs:
            out = p.text()
            for marker in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"):
                self.assertNotIn(marker, out, "%s:\n%s" % (p.name, out[-4000:]))

    def proc(self, args, name):
        p = Proc(args, name)
        self.procs.append(p)
        return p

    def start_server(self, *extra):
        s = self.proc([SERVER, "--password", self.token] + list(extra), "ssh_test_server")
        _, _, m = s.wait_re(r"^listening 127\.0\.0\.1:(\d+)")
        self.server_port = int(m.group(1))
        _, _, k = s.wait_re(r"^hostkey (ssh-ed25519 \S+)")
        self.host_key = k.group(1)
        return s

    def start_shim(self, port=0, token=None, extra=()):
        args = [PYTHON, SHIM, "--backend", "127.0.0.1:%d" % self.server_port, "--token", token or self.token,
                "--listen", "127.0.0.1:%d" % port] + list(extra)
        sh = self.proc(args, "ws_shim")
        _, _, m = sh.wait_re(r"^listening (\d+)")
        self.shim_port = int(m.group(1))
        return sh

    def start_agent(self, tunnels, extra=(), scheme="ws"):
        args = [FERRY, "agent", "--relay", "%s://127.0.0.1:%d" % (scheme, self.shim_port),
                "--token-file", self.token_file, "--known-hosts", self.known_hosts] + FAST + list(extra)
        for name, port in tunnels:
            args += ["--tunnel", "%s=127.0.0.1:%d" % (name, port)]
        return self.proc(args, "ferry agent")

    def forward_port(self, server, name, start=0, timeout=15):
        _, _, m = server.wait_re(r"^forward %s 80 -> 127\.0\.0\.1:(\d+)" % re.escape(name), timeout, start)
        return int(m.group(1))

    def up(self, tunnels=None, server_extra=(), agent_extra=()):
        """ssh_test_server + shim + HTTP upstream + agent with tunnel `demo`; returns the consumer port."""
        self.http = start_http()
        self.closers.append(self.http.shutdown)
        self.closers.append(self.http.server_close)
        self.server = self.start_server(*server_extra)
        self.shim = self.start_shim()
        self.agent = self.start_agent(tunnels or [("demo", self.http.server_address[1])], agent_extra)
        self.agent.wait_for(json_log("forward ok"), what="forward ok")
        return self.forward_port(self.server, "demo")

    def delays(self, n, start=0, timeout=30):
        """The agent's next n 'disconnected' logs: list of (retry_in_ms, record)."""
        out = []
        i = start
        for _ in range(n):
            i, _, d = self.agent.wait_for(json_log("disconnected"), timeout, i, "disconnected")
            out.append((d["retry_in_ms"], d))
            i += 1
        return out

    # ---- tests ------------------------------------------------------------------------------------

    def test_http_through_tunnel(self):
        port = self.up()
        status, body = http_get(port, "/hello")
        self.assertEqual(status, 200)
        self.assertEqual(body, b"hello from upstream\n")
        # User name from the token's sub; `none` refused by this server, then the JWT as password.
        self.server.wait_re(r"^auth alice password strict=1")
        ssh_up = self.agent.wait_for(json_log("ssh up"))[2]
        self.assertEqual(ssh_up["user"], "alice")
        # Trust on first use wrote the relay's key under "[host]:port".
        with open(self.known_hosts) as f:
            kh = f.read()
        self.assertIn("[127.0.0.1]:%d %s" % (self.shim_port, self.host_key), kh)
        self.assertEqual(os.stat(self.known_hosts).st_mode & 0o777, 0o600)
        tofu = self.agent.wait_for(json_log("relay host key trusted on first use"))[2]
        self.assertEqual(tofu["fingerprint"], ssh_up["host_key"])
        # Several requests in a row, each its own channel.
        for _ in range(5):
            self.assertEqual(http_get(port, "/hello")[0], 200)
        self.assertNotIn('"level":"error"', self.agent.text())

    def test_64mib_both_ways(self):
        svc = SourceSink(64 * MiB)
        self.closers.append(svc.close)
        port = self.up(tunnels=[("demo", svc.port)])
        mine = os.urandom(64 * MiB)
        c = socket.create_connection(("127.0.0.1", port), timeout=120)
        t0 = time.monotonic()
        sender = threading.Thread(target=send_all, args=(c, mine), daemon=True)
        sender.start()
        got = read_all(c)
        sender.join(120)
        c.close()
        dt = time.monotonic() - t0
        with svc.cv:
            svc.cv.wait_for(lambda: svc.results, 60)
            upstream_got = svc.results[0]
        self.assertEqual(got, (svc.digest, 64 * MiB), "consumer received the upstream's bytes intact")
        self.assertEqual(upstream_got, (hashlib.sha256(mine).hexdigest(), 64 * MiB),
                         "upstream received the consumer's bytes intact")
        print("64 MiB each way through agent+shim+ssh_test_server: %.2f s (%.0f MB/s per direction)"
              % (dt, 64 * MiB / dt / 1e6), flush=True)

    def test_wrong_token_retries_at_cap(self):
        self.server = self.start_server()
        self.shim = self.start_shim(token="another-token")
        self.agent = self.start_agent([("demo", free_port())])
        rec = self.agent.wait_for(json_log("relay refused the agent's token"))[2]
        self.assertEqual(rec["status"], 401)
        self.assertEqual(rec["code"], "invalid_token")
        self.assertEqual(rec["message"], "token signature is invalid")
        ds = self.delays(3)
        for ms, d in ds:
            self.assertIn("HTTP 401", d["reason"])
            # 401 is a configuration error: the delay goes straight to the cap (1600 ms, -30% jitter).
            self.assertGreaterEqual(ms, 1120, ds)
            self.assertLessEqual(ms, 1600, ds)
        # The shim logs each refusal itself, possibly after the agent logged its retry: wait for
        # the third line rather than count what is there now (a fast host raced this).
        i = -1
        for _ in range(3):
            i = self.shim.wait_re(r"^refused 401", timeout=15, start=i + 1)[0]
        self.assertIsNone(self.agent.p.poll(), "the agent keeps retrying")
        self.assertNotIn(self.token, self.agent.text(), "the token never appears in logs")

    def test_503_backoff_grows(self):
        self.server = self.start_server()
        self.shim = self.start_shim(extra=["--refuse", "503"])
        self.agent = self.start_agent([("demo", free_port())])
        ds = [ms for ms, _ in self.delays(5)]
        # Immediately, then 200 ms x2 each time, +-30%, capped at 1600 ms.
        self.assertEqual(ds[0], 0, ds)
        for k, nominal in ((1, 200), (2, 400), (3, 800), (4, 1600)):
            self.assertGreaterEqual(ds[k], nominal * 0.7 - 1, ds)
            self.assertLessEqual(ds[k], min(nominal * 1.3 + 1, 1600), ds)
        # The shim saw the attempts spaced like that (roughly: scheduling adds a little). Its
        # lines may trail the agent's: wait for the fifth before reading them.
        i = -1
        for _ in range(5):
            i = self.shim.wait_re(r"^refused 503", timeout=15, start=i + 1)[0]
        with self.shim.cv:
            times = [t for t, l in self.shim.lines if l.startswith("refused 503")]
        self.assertGreaterEqual(len(times), 5)
        for k in (1, 2, 3):
            self.assertGreaterEqual(times[k + 1] - times[k], ds[k] / 1000 - 0.02, (times, ds))

    def test_retry_after_is_honoured(self):
        self.server = self.start_server()
        self.shim = self.start_shim(extra=["--refuse", "429", "--retry-after", "2"])
        self.agent = self.start_agent([("demo", free_port())])
        rec = self.agent.wait_for(json_log("relay refused the upgrade"))[2]
        self.assertEqual((rec["status"], rec["retry_after"], rec["code"]), (429, 2, "unavailable"))
        ds = [ms for ms, _ in self.delays(2)]
        self.assertTrue(all(d >= 2000 for d in ds), ds)
        i, t1, _ = self.shim.wait_re(r"^refused 429")
        _, t2, _ = self.shim.wait_re(r"^refused 429", start=i + 1)
        self.assertGreaterEqual(t2 - t1, 1.9)

    def test_reconnects_after_shim_restart(self):
        port = self.up()
        self.assertEqual(http_get(port, "/hello")[0], 200)
        mark = self.agent.count()
        self.shim.stop()  # SIGKILL: the relay vanishes without a close
        first = self.delays(1, mark)[0][0]
        self.assertEqual(first, 0, "the first retry is immediate")
        self.delays(2, mark)  # refused connections while it is down
        srv_mark = self.server.count()
        self.shim = self.start_shim(port=self.shim_port)
        self.agent.wait_for(json_log("forward ok"), 15, mark, "forward ok after restart")
        port2 = self.forward_port(self.server, "demo", srv_mark)
        self.assertEqual(http_get(port2, "/hello"), (200, b"hello from upstream\n"))
        # Same relay key on record: no second TOFU line, no mismatch.
        with open(self.known_hosts) as f:
            self.assertEqual(len(f.read().splitlines()), 1)
        self.assertEqual(self.agent.text().count("trusted on first use"), 1)

    def test_unconfigured_name_refused(self):
        port = self.up(server_extra=["--alias", "demo=intruder"])
        other = self.forward_port(self.server, "intruder")
        self.assertTrue(consumer_refused(other))
        rec = self.agent.wait_for(json_log("channel refused: tunnel not configured"))[2]
        self.assertEqual(rec["tunnel"], "intruder")
        # The configured tunnel is unaffected.
        self.assertEqual(http_get(port, "/hello")[0], 200)

    def test_target_down_refused(self):
        self.http = start_http()
        self.closers.append(self.http.shutdown)
        self.closers.append(self.http.server_close)
        self.server = self.start_server()
        self.shim = self.start_shim()
        dead = free_port()
        self.agent = self.start_agent([("down", dead), ("demo", self.http.server_address[1])])
        self.agent.wait_for(json_log("forward ok"))
        down = self.forward_port(self.server, "down")
        self.assertTrue(consumer_refused(down))
        rec = self.agent.wait_for(json_log("channel refused: target unreachable"))[2]
        self.assertEqual(rec["tunnel"], "down")
        self.assertIn("refused", rec["error"].lower())
        self.assertEqual(http_get(self.forward_port(self.server, "demo"), "/hello")[0], 200)

    def test_sigterm_lets_inflight_finish(self):
        port = self.up()
        c = socket.create_connection(("127.0.0.1", port), timeout=20)
        c.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        first = c.recv(4096)
        self.assertIn(b"200", first)
        t0 = time.monotonic()
        self.agent.signal(signal.SIGTERM)
        rest = bytearray(first)
        while True:
            k = c.recv(4096)
            if not k:
                break
            rest += k
        c.close()
        self.assertIn(b"chunk 9\n", bytes(rest), "the in-flight response completed")
        code = self.agent.p.wait(12)
        self.assertEqual(code, 0)
        self.assertLess(time.monotonic() - t0, 10.5)
        self.agent.wait_for(json_log("stopping: draining"))
        self.agent.wait_for(json_log("ssh disconnect sent"))
        self.server.wait_re(r"^cancel demo 80")  # no new requests routed here while draining
        self.shim.wait_re(r"^closed .* code=1000")

    def test_pong_timeout_reconnects(self):
        self.up()
        mark = self.agent.count()
        self.shim.signal(signal.SIGSTOP)  # alive but silent: no pongs, no keepalive replies
        try:
            d = self.delays(1, mark, timeout=10)[0][1]
            self.assertTrue("pong" in d["reason"] or "keepalive" in d["reason"], d)
        finally:
            self.shim.signal(signal.SIGCONT)
        self.agent.wait_for(json_log("forward ok"), 20, mark, "forward ok after the stall")

    def test_max_attempts(self):
        self.server = self.start_server()
        self.shim_port = free_port()  # nothing listens there
        self.agent = self.start_agent([("demo", free_port())], ["--max-attempts", "3"])
        self.assertEqual(self.agent.p.wait(20), 1)
        self.agent.wait_for(json_log("agent giving up: too many failed attempts"))

    def test_wss_with_ca_file(self):
        cert, key = os.path.join(self.tmp, "tls.crt"), os.path.join(self.tmp, "tls.key")
        subprocess.run([CERTGEN, "--cert", cert, "--key", key], check=True, stdout=subprocess.DEVNULL)
        self.http = start_http()
        self.closers.append(self.http.shutdown)
        self.closers.append(self.http.server_close)
        self.server = self.start_server()
        self.shim = self.start_shim(extra=["--tls-cert", cert, "--tls-key", key])
        # Without the CA the certificate is refused (and retried).
        self.agent = self.start_agent([("demo", self.http.server_address[1])], scheme="wss")
        d = self.delays(1)[0][1]
        self.assertIn("tls_verify", d["reason"])
        self.agent.stop()
        self.agent = self.start_agent([("demo", self.http.server_address[1])], ["--ca-file", cert], scheme="wss")
        rec = self.agent.wait_for(json_log("relay tls established"))[2]
        self.assertEqual((rec["version"], rec["alpn"]), ("TLSv1.3", "http/1.1"))
        self.agent.wait_for(json_log("forward ok"))
        self.assertEqual(http_get(self.forward_port(self.server, "demo"), "/hello")[0], 200)
        # `ferry connect` over TLS: the SSH server's banner arrives on stdout; stdin's EOF ends
        # the bridge with a normal close.
        mark = self.shim.count()
        c = subprocess.Popen([FERRY, "connect", "wss://127.0.0.1:%d" % self.shim_port, "--token-file",
                              self.token_file, "--ca-file", cert], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        try:
            banner = c.stdout.readline()
            c.stdin.close()
            self.assertEqual(c.wait(20), 0)
        finally:
            if c.poll() is None:
                c.kill()
            c.stdout.close()
        self.assertTrue(banner.startswith(b"SSH-2.0-"), banner)
        self.shim.wait_re(r"^closed .* code=1000", start=mark)

    def test_host_key_mismatch_is_fatal(self):
        self.server = self.start_server()
        self.shim = self.start_shim()
        # A different key on record for this relay.
        subprocess.run([SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-f", os.path.join(self.tmp, "other")],
                       check=True)
        with open(os.path.join(self.tmp, "other.pub")) as f:
            other = " ".join(f.read().split()[:2])
        os.makedirs(os.path.dirname(self.known_hosts))
        with open(self.known_hosts, "w") as f:
            f.write("# pinned\n[127.0.0.1]:%d %s\n" % (self.shim_port, other))
        self.agent = self.start_agent([("demo", free_port())])
        self.assertEqual(self.agent.p.wait(15), 1)
        rec = self.agent.wait_for(json_log("RELAY HOST KEY MISMATCH"))[2]
        fp_other = subprocess.run([SSH_KEYGEN, "-l", "-f", os.path.join(self.tmp, "other.pub")],
                                  capture_output=True, text=True, check=True).stdout.split()[1]
        self.assertEqual(rec["expected"], fp_other)
        self.assertTrue(rec["offered"].startswith("SHA256:") and rec["offered"] != fp_other)
        self.assertNotIn("forward ok", self.agent.text())

    def test_openssh_through_ferry_connect(self):
        keyf = os.path.join(self.tmp, "id")
        subprocess.run([SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-f", keyf], check=True)
        self.http = start_http()
        self.closers.append(self.http.shutdown)
        self.closers.append(self.http.server_close)
        self.server = self.proc([SERVER, "--authorized", keyf + ".pub"], "ssh_test_server")
        _, _, m = self.server.wait_re(r"^listening 127\.0\.0\.1:(\d+)")
        self.server_port = int(m.group(1))
        self.shim = self.start_shim()
        proxy = "%s connect ws://127.0.0.1:%d --token-file %s" % (FERRY, self.shim_port, self.token_file)
        ssh = self.proc([SSH, "-N", "-i", keyf, "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
                         "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                         "-o", "ProxyCommand=" + proxy, "-o", "ExitOnForwardFailure=yes",
                         "-R", "viassh:80:127.0.0.1:%d" % self.http.server_address[1], "tester@relay"], "ssh")
        port = self.forward_port(self.server, "viassh", timeout=20)
        self.assertEqual(http_get(port, "/hello"), (200, b"hello from upstream\n"))
        ssh.signal(signal.SIGTERM)  # ssh exits: `ferry connect` closes the WebSocket cleanly
        ssh.p.wait(10)
        # With 1000 when it sees EOF on stdin first, 1001 (going away) when writing to its
        # stdout failed first: which one depends on which event the loop handles first (a
        # loaded host saw 1001). Never an abrupt close (1006).
        self.shim.wait_re(r"^closed .* code=100[01]$")

    def test_connect_refused_token(self):
        self.server = self.start_server()
        self.shim = self.start_shim(token="another-token")
        r = subprocess.run([FERRY, "connect", "ws://127.0.0.1:%d" % self.shim_port, "--token-file", self.token_file],
                           stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=20)
        self.assertEqual(r.returncode, 1)
        self.assertIn("HTTP 401 invalid_token: token signature is invalid", r.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
