#!/usr/bin/python3
"""ferryd end to end: consumers (curl, python) -> relay -> SSH channel -> agent -> upstream.

Agents: OpenSSH (`ssh -N -R NAME:80:...`) whose SSH session runs inside the relay's /tunnel
WebSocket through ws_stdio_bridge.py (an independent bridge) or `ferry connect`, and `ferry agent`.
Usage: relay_test.py PATH/TO/ferryd PATH/TO/ferry
"""
import concurrent.futures
import contextlib
import hashlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

from ferry_harness import (FerryAgent, RawSshAgent, Relay, SshAgent, Upstream, agent_token, free_port, mint, pattern,
                           write_token)

FERRYD = sys.argv.pop(1) if len(sys.argv) > 1 else "build/src/cmd/ferryd"
FERRY = sys.argv.pop(1) if len(sys.argv) > 1 else "build/src/cmd/ferry"
MiB = 1 << 20


def curl(*args, timeout=120):
    r = subprocess.run(["curl", "-sS", "--max-time", str(timeout), *args], capture_output=True,
                       timeout=timeout + 10)
    return r


class RelayWithAgent(unittest.TestCase):
    """One relay (2 shards), one upstream, one OpenSSH agent serving tunnel `demo` for alice."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="ferry-relay-test-")
        cls.relay = Relay(FERRYD, "--lease-s", "20", "--queue-wait-ms", "15000", "--user-rate-limit", "0",
                          "--base-domain", "tunnels.test", "--max-body-bytes", str(64 * MiB))
        cls.up = Upstream()
        cls.alice = agent_token("alice")
        cls.agent = SshAgent(cls.relay.port, write_token(cls.tmp, cls.alice), [("demo", cls.up.port)])
        cls.relay.log.wait_for(['"tunnel up"', '"demo"'], timeout=20)

    @classmethod
    def tearDownClass(cls):
        cls.agent.stop()
        rc = cls.relay.stop()
        cls.up.stop()
        cls.relay.cleanup()
        shutil.rmtree(cls.tmp, ignore_errors=True)
        # A clean exit: no crash, and in the sanitize build no leak or sanitizer report.
        if rc != 0:
            raise AssertionError(f"ferryd exited with {rc}:\n" + cls.relay.log.text()[-4000:])

    def auth(self, token=None):
        return ["-H", "Authorization: Bearer " + (token or self.alice)]

    def test_get(self):
        r = curl(*self.auth(), "-i", f"{self.relay.url}/t/demo/hello")
        self.assertEqual(r.returncode, 0, r.stderr)
        head, body = r.stdout.split(b"\r\n\r\n", 1)
        self.assertTrue(head.startswith(b"HTTP/1.1 200"), head)
        self.assertIn(b"x-request-id:", head.lower())
        self.assertEqual(body, b"hello from upstream\n")

    def test_host_routing(self):
        r = curl(*self.auth(), "-H", "Host: DEMO.tunnels.test:8443", f"{self.relay.url}/hello")
        self.assertEqual(r.stdout, b"hello from upstream\n", r.stderr)
        r = curl(*self.auth(), "-i", "-H", "Host: nosuch.tunnels.test", f"{self.relay.url}/hello")
        self.assertIn(b" 404 ", r.stdout.split(b"\r\n")[0])

    def test_expect_100_continue(self):
        """The relay forwards Expect; the upstream's 100 Continue comes back before the body."""
        s = socket.create_connection(("127.0.0.1", self.relay.port), timeout=10)
        body = pattern(100000, seed=6)
        s.sendall((f"POST /t/demo/echo HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {self.alice}\r\n"
                   f"Content-Length: {len(body)}\r\nExpect: 100-continue\r\n\r\n").encode())
        first = s.recv(4096)
        self.assertTrue(first.startswith(b"HTTP/1.1 100 Continue\r\n"), first)
        s.sendall(body)
        data = first.split(b"\r\n\r\n", 1)[1]
        while b"sha256" not in data or not data.rstrip().endswith(b"}"):
            chunk = s.recv(65536)
            self.assertTrue(chunk, data)
            data += chunk
        self.assertIn(b"HTTP/1.1 200", data)
        self.assertIn(hashlib.sha256(body).hexdigest().encode(), data)
        s.close()

    def test_body_limit(self):
        r = curl(*self.auth(), "-i", "-H", f"Content-Length: {65 * MiB}", "--data-binary", "x",
                 f"{self.relay.url}/t/demo/echo")
        self.assertIn(b" 413 ", r.stdout.split(b"\r\n")[0], r.stdout[:300])
        self.assertIn(b"body_too_large", r.stdout)

    def test_rewritten_head(self):
        r = curl(*self.auth(), "-H", "Cookie: secret=1", "-H", "X-Forwarded-For: 10.0.0.1",
                 f"{self.relay.url}/t/demo/headers?x=1")
        self.assertEqual(r.returncode, 0, r.stderr)
        h = {k.lower(): v for k, v in json.loads(r.stdout).items()}
        self.assertNotIn("authorization", h)
        self.assertNotIn("cookie", h)
        # Not from a trusted proxy: the consumer's X-Forwarded-For is replaced (issue 11).
        self.assertEqual(h["x-forwarded-for"], "127.0.0.1")
        self.assertEqual(h["x-real-ip"], "127.0.0.1")
        self.assertEqual(h["x-forwarded-proto"], "http")
        self.assertEqual(len(h["x-request-id"]), 32)
        self.assertRegex(h["traceparent"], r"^00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]$")

    def test_post_10mib(self):
        body = pattern(10 * MiB, seed=3)
        path = os.path.join(self.tmp, "body10")
        with open(path, "wb") as f:
            f.write(body)
        r = curl(*self.auth(), "--data-binary", "@" + path, f"{self.relay.url}/t/demo/echo")
        self.assertEqual(r.returncode, 0, r.stderr)
        got = json.loads(r.stdout)
        self.assertEqual(got["length"], len(body))
        self.assertEqual(got["sha256"], hashlib.sha256(body).hexdigest())

    def test_chunked_upload(self):
        body = pattern(3 * MiB + 123, seed=4)
        path = os.path.join(self.tmp, "bodyc")
        with open(path, "wb") as f:
            f.write(body)
        r = curl(*self.auth(), "-H", "Transfer-Encoding: chunked", "--data-binary", "@" + path,
                 f"{self.relay.url}/t/demo/echo")
        self.assertEqual(r.returncode, 0, r.stderr)
        got = json.loads(r.stdout)
        self.assertEqual(got["length"], len(body))
        self.assertEqual(got["sha256"], hashlib.sha256(body).hexdigest())

    def test_download_1gib(self):
        n = 1 << 30
        p = subprocess.Popen(["curl", "-sS", "--max-time", "300", *self.auth(),
                              f"{self.relay.url}/t/demo/bytes?n={n}"], stdout=subprocess.PIPE)
        h = hashlib.sha256()
        got = 0
        t0 = time.time()
        while True:
            chunk = p.stdout.read(1 << 20)
            if not chunk:
                break
            h.update(chunk)
            got += len(chunk)
        p.wait()
        p.stdout.close()
        dt = time.time() - t0
        self.assertEqual(p.returncode, 0)
        self.assertEqual(got, n)
        self.assertEqual(h.hexdigest(), hashlib.sha256(pattern(n)).hexdigest())
        print(f"\n1 GiB through the tunnel in {dt:.1f} s ({n / dt / 1e6:.0f} MB/s)", file=sys.stderr)

    def test_keep_alive_and_pipelining(self):
        s = socket.create_connection(("127.0.0.1", self.relay.port))
        req = (f"GET /t/demo/hello HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {self.alice}\r\n\r\n")
        s.sendall((req * 3).encode())
        data = b""
        s.settimeout(10)
        while data.count(b"hello from upstream\n") < 3:
            chunk = s.recv(65536)
            self.assertTrue(chunk, data)
            data += chunk
        self.assertEqual(data.count(b"HTTP/1.1 200"), 3)
        s.close()

    def test_concurrent_200(self):
        def one(i):
            c = http.client.HTTPConnection("127.0.0.1", self.relay.port, timeout=60)
            c.request("GET", f"/t/demo/bytes?n={1000 + i}", headers={"Authorization": "Bearer " + self.alice})
            r = c.getresponse()
            body = r.read()
            c.close()
            return r.status, body == pattern(1000 + i)

        with concurrent.futures.ThreadPoolExecutor(max_workers=200) as ex:
            results = list(ex.map(one, range(200)))
        self.assertEqual(results, [(200, True)] * 200)

    def test_ndjson_streams(self):
        """The first line reaches the consumer while the upstream is still producing."""
        c = http.client.HTTPConnection("127.0.0.1", self.relay.port, timeout=30)
        t0 = time.time()
        c.request("GET", "/t/demo/ndjson?lines=5&delay=0.4", headers={"Authorization": "Bearer " + self.alice})
        r = c.getresponse()
        self.assertEqual(r.status, 200)
        arrivals = []
        while True:
            line = r.fp.readline()  # chunk-size line
            if not line:
                break
            size = int(line.strip(), 16)
            if size == 0:
                break
            data = r.fp.read(size)
            r.fp.readline()
            arrivals.append((time.time() - t0, json.loads(data)))
        self.assertEqual([a[1]["i"] for a in arrivals], list(range(5)))
        # Produced 0.4 s apart: the first arrives long before the last is produced (1.6 s later).
        self.assertLess(arrivals[0][0], arrivals[-1][0] - 1.0, arrivals)
        c.close()

    def test_no_token_and_unknown_tunnel(self):
        r = curl("-i", f"{self.relay.url}/t/demo/hello")
        self.assertIn(b" 401 ", r.stdout.split(b"\r\n")[0])
        self.assertIn(b"token_missing", r.stdout)
        r = curl(*self.auth(), "-i", f"{self.relay.url}/t/nosuch/hello")
        self.assertIn(b" 404 ", r.stdout.split(b"\r\n")[0])
        self.assertIn(b"tunnel_not_found", r.stdout)

    def test_other_users_tunnel(self):
        bob = mint("bob")
        r = curl(*self.auth(bob), "-i", f"{self.relay.url}/t/demo/hello")
        self.assertIn(b" 403 ", r.stdout.split(b"\r\n")[0])
        granted = mint("bob", tunnels=["demo"])
        r = curl(*self.auth(granted), f"{self.relay.url}/t/demo/hello")
        self.assertEqual(r.stdout, b"hello from upstream\n")

    def test_expired_token(self):
        r = curl(*self.auth(mint("alice", ttl=-3600)), "-i", f"{self.relay.url}/t/demo/hello")
        self.assertIn(b" 401 ", r.stdout.split(b"\r\n")[0])
        self.assertIn(b"token_expired", r.stdout)


class RateLimit(unittest.TestCase):
    def test_per_user_rate_limit_answers_429(self):
        tmp = tempfile.mkdtemp(prefix="ferry-rate-")
        relay = Relay(FERRYD, "--user-rate-limit", "5", shards=1)
        up = Upstream()
        try:
            agent = SshAgent(relay.port, write_token(tmp, agent_token("gina")), [("rl", up.port)])
            relay.log.wait_for(['"tunnel up"', '"rl"'], timeout=20)
            hdr = ["-H", "Authorization: Bearer " + mint("gina")]
            codes = [curl(*hdr, "-o", "/dev/null", "-w", "%{http_code}", f"{relay.url}/t/rl/hello").stdout
                     for _ in range(5)]
            self.assertEqual(codes, [b"200"] * 5)
            r = curl(*hdr, "-i", f"{relay.url}/t/rl/hello")
            head = r.stdout.split(b"\r\n\r\n")[0].lower()
            self.assertIn(b" 429 ", head.split(b"\r\n")[0])
            self.assertIn(b"retry-after: ", head)
            self.assertIn(b"x-ratelimit-limit: 5", head)
            self.assertIn(b"x-ratelimit-remaining: 0", head)
            self.assertIn(b"rate_limited", r.stdout)
            # Another user has a bucket of their own (granted the tunnel by ferry_tunnels).
            other = curl("-H", "Authorization: Bearer " + mint("hank", tunnels=["rl"]), "-o", "/dev/null",
                         "-w", "%{http_code}", f"{relay.url}/t/rl/hello")
            self.assertEqual(other.stdout, b"200")
            agent.stop()
            self.assertEqual(relay.stop(), 0)
        finally:
            relay.stop()
            up.stop()
            relay.cleanup()
            shutil.rmtree(tmp, ignore_errors=True)


class Limits(unittest.TestCase):
    """The queue bound, the queue wait and the first-byte timeout, each with its answer."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="ferry-limits-")
        self.up = Upstream()

    def tearDown(self):
        self.up.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def test_first_byte_timeout_answers_504(self):
        relay = Relay(FERRYD, "--first-byte-timeout-ms", "1000", "--user-rate-limit", "0", shards=1)
        try:
            agent = SshAgent(relay.port, write_token(self.tmp, agent_token("jo")), [("slow", self.up.port)])
            relay.log.wait_for(['"tunnel up"', '"slow"'], timeout=20)
            t0 = time.time()
            r = curl("-i", "-H", "Authorization: Bearer " + mint("jo"), f"{relay.url}/t/slow/slow?s=4")
            took = time.time() - t0
            self.assertIn(b" 504 ", r.stdout.split(b"\r\n")[0], r.stdout[:300])
            self.assertIn(b"upstream_timeout", r.stdout)
            self.assertLess(took, 3.5)
            # A fast request on the same tunnel is unaffected.
            r = curl("-H", "Authorization: Bearer " + mint("jo"), f"{relay.url}/t/slow/hello")
            self.assertEqual(r.stdout, b"hello from upstream\n")
            agent.stop()
            self.assertEqual(relay.stop(), 0, relay.log.text()[-3000:])
        finally:
            relay.stop()
            relay.cleanup()

    def test_queue_bound_and_wait_limit(self):
        relay = Relay(FERRYD, "--queue-max", "1", "--queue-wait-ms", "2000", "--lease-s", "60",
                      "--user-rate-limit", "0", shards=1)
        try:
            agent = SshAgent(relay.port, write_token(self.tmp, agent_token("kai")), [("q", self.up.port)])
            relay.log.wait_for(['"tunnel up"', '"q"'], timeout=20)
            agent.stop(kill=True)
            relay.log.wait_for(['"tunnel down"', "leased to its owner"], timeout=20)
            hdr = ["-H", "Authorization: Bearer " + mint("kai")]
            mark = len(relay.log.lines)
            waiting = subprocess.Popen(["curl", "-sS", "-i", "--max-time", "20", *hdr, f"{relay.url}/t/q/hello"],
                                       stdout=subprocess.PIPE)
            relay.log.wait_for(['"request queued"', '"tunnel":"q"'], timeout=10, start=mark)
            # The queue (1) is taken: the next request is refused at once.
            t0 = time.time()
            r = curl("-i", *hdr, f"{relay.url}/t/q/hello")
            self.assertLess(time.time() - t0, 1.5)
            self.assertIn(b" 503 ", r.stdout.split(b"\r\n")[0], r.stdout[:300])
            self.assertIn(b"tunnel_busy", r.stdout)
            self.assertIn(b"retry-after:", r.stdout.lower())
            # The queued one gives up after the wait limit with 503 tunnel_offline.
            out, _ = waiting.communicate(timeout=20)
            self.assertIn(b" 503 ", out.split(b"\r\n")[0], out[:300])
            self.assertIn(b"tunnel_offline", out)
            self.assertEqual(relay.stop(), 0, relay.log.text()[-3000:])
        finally:
            relay.stop()
            relay.cleanup()


class TokenExpiry(unittest.TestCase):
    def test_agent_session_ends_when_its_token_expires(self):
        """R4: the session the token opened ends when the token expires (leeway 0 here); the
        name stays leased, so an agent with a fresh token takes it back."""
        tmp = tempfile.mkdtemp(prefix="ferry-expiry-")
        relay = Relay(FERRYD, "--jwt-leeway-s", "0", "--lease-s", "30", shards=1)
        up = Upstream()
        try:
            t0 = time.time()
            short = SshAgent(relay.port, write_token(tmp, agent_token("ivy", ttl=3), "short"), [("exp", up.port)])
            relay.log.wait_for(['"tunnel up"', '"exp"'], timeout=20)
            i = relay.log.wait_for(['"agent gone"', "token expired"], timeout=20)
            took = time.time() - t0
            self.assertGreater(took, 2.0)
            self.assertLess(took, 12.0)
            relay.log.wait_for(['"tunnel down"', "leased to its owner"], timeout=5, start=i - 5)
            short.stop()
            fresh = SshAgent(relay.port, write_token(tmp, agent_token("ivy"), "fresh"), [("exp", up.port)])
            relay.log.wait_for(['"tunnel up"', '"exp"'], timeout=20, start=i)
            r = curl("-H", "Authorization: Bearer " + mint("ivy"), f"{relay.url}/t/exp/hello")
            self.assertEqual(r.stdout, b"hello from upstream\n")
            fresh.stop()
            self.assertEqual(relay.stop(), 0)
        finally:
            relay.stop()
            up.stop()
            relay.cleanup()
            shutil.rmtree(tmp, ignore_errors=True)


class AgentRestart(unittest.TestCase):
    def test_kill_and_restart_takes_over_and_queued_requests_succeed(self):
        tmp = tempfile.mkdtemp(prefix="ferry-restart-")
        relay = Relay(FERRYD, "--lease-s", "30", "--queue-wait-ms", "20000")
        up = Upstream()
        tok = write_token(tmp, agent_token("carol"))
        try:
            a1 = SshAgent(relay.port, tok, [("llm", up.port)])
            relay.log.wait_for(['"tunnel up"', '"llm"'], timeout=20)
            hdr = {"Authorization": "Bearer " + mint("carol")}
            a1.stop(kill=True)
            # The relay may not notice at once; either way the name stays carol's.
            with concurrent.futures.ThreadPoolExecutor(max_workers=4) as ex:
                def req():
                    c = http.client.HTTPConnection("127.0.0.1", relay.port, timeout=40)
                    try:
                        c.request("GET", "/t/llm/hello", headers=hdr)
                        r = c.getresponse()
                        return r.status, r.read()
                    finally:
                        c.close()
                time.sleep(0.5)
                futs = [ex.submit(req) for _ in range(3)]
                time.sleep(1.0)
                # Someone else cannot take the name meanwhile.
                dave = SshAgent(relay.port, write_token(tmp, agent_token("dave"), "dave"), [("llm", up.port)])
                relay.log.wait_for(['"tunnel refused"', '"llm"'], timeout=20)
                dave.stop()
                a2 = SshAgent(relay.port, tok, [("llm", up.port)])
                results = [f.result(timeout=40) for f in futs]
            self.assertEqual(results, [(200, b"hello from upstream\n")] * 3)
            a2.stop()
            self.assertEqual(relay.stop(), 0, relay.log.text()[-4000:])
        finally:
            relay.stop()
            up.stop()
            relay.cleanup()
            shutil.rmtree(tmp, ignore_errors=True)


class WithFerryAgent(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="ferry-agent-relay-")
        self.up = Upstream()
        self.tok = write_token(self.tmp, agent_token("erin"))
        self.hdr = {"Authorization": "Bearer " + mint("erin")}

    def tearDown(self):
        self.up.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    @contextlib.contextmanager
    def ferry_tunnel(self, *relay_args, agent_args=(), target=None):
        """ferryd (one shard) and `ferry agent` serving tunnel "web" (the upstream, or port
        `target`), up when the block starts; both stopped and the relay's folder removed after."""
        relay = Relay(FERRYD, *relay_args, shards=1)
        agent = FerryAgent(FERRY, relay.port, self.tok, [("web", target or self.up.port)], self.tmp, *agent_args)
        try:
            relay.log.wait_for(['"tunnel up"', '"web"'], timeout=20)
            yield relay, agent
        finally:
            agent.stop()
            relay.stop()
            relay.cleanup()

    def get(self, port, path="/t/web/hello", timeout=30):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        c.request("GET", path, headers=self.hdr)
        r = c.getresponse()
        out = r.status, r.read()
        c.close()
        return out


    def slow_pair(self, relay, seconds):
        """Two requests that hold the tunnel's two channels for `seconds`; returns their futures
        once the upstream has both (so both channels are in use)."""
        pool = concurrent.futures.ThreadPoolExecutor(4)
        while not self.up.server.seen.empty():
            self.up.server.seen.get_nowait()
        slow = [pool.submit(self.get, relay.port, f"/t/web/slow?s={seconds}") for _ in range(2)]
        for _ in range(2):
            self.assertTrue(self.up.server.seen.get(timeout=10)["path"].startswith("/slow"))
        return pool, slow

    def get_full(self, port, path):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        c.request("GET", path, headers=self.hdr)
        r = c.getresponse()
        out = r.status, r.getheader("Retry-After"), r.read()
        c.close()
        return out

    def test_max_channels_per_tunnel_queues_and_a_freed_channel_wakes_the_request(self):
        """Issue 12: at max_channels_per_tunnel a request waited the whole queue wait and then got
        503 tunnel_offline, although the tunnel was online. It waits in the tunnel's queue and
        is served as soon as a channel ends; 503 tunnel_busy when the queue is full."""
        with self.ferry_tunnel("--max-channels-per-tunnel", "2", "--queue-max", "1",
                               "--queue-wait-ms", "20000") as (relay, agent):
            pool, slow = self.slow_pair(relay, 1.5)
            mark = len(relay.log.lines)
            t0 = time.time()
            third = pool.submit(self.get, relay.port, "/t/web/hello")
            relay.log.wait_for(['"request queued"', '"web"'], timeout=10, start=mark)
            # The queue (1) is full now: a fourth is refused at once.
            status, retry, body = self.get_full(relay.port, "/t/web/hello")
            self.assertEqual(status, 503)
            self.assertEqual(json.loads(body)["error"]["code"], "tunnel_busy")
            self.assertIsNotNone(retry)
            self.assertEqual(third.result(timeout=15), (200, b"hello from upstream\n"))
            self.assertLess(time.time() - t0, 10, "the queued request waited for the queue timeout")
            for f in slow:
                self.assertEqual(f.result(timeout=15), (200, b"slow\n"))
            pool.shutdown()

    def test_a_request_waiting_for_a_channel_gets_tunnel_busy_at_the_queue_wait(self):
        with self.ferry_tunnel("--max-channels-per-tunnel", "2", "--queue-wait-ms", "500") as (relay, agent):
            pool, slow = self.slow_pair(relay, 3)
            t0 = time.time()
            status, retry, body = self.get_full(relay.port, "/t/web/hello")
            waited = time.time() - t0
            self.assertEqual(status, 503)
            self.assertEqual(json.loads(body)["error"]["code"], "tunnel_busy")  # online, only busy
            self.assertIsNotNone(retry)
            self.assertGreaterEqual(waited, 0.45)
            self.assertLess(waited, 2.5)
            for f in slow:
                self.assertEqual(f.result(timeout=15), (200, b"slow\n"))
            pool.shutdown()

    def test_pipelined_large_responses_to_a_slow_reader_both_complete(self):
        """Review finding (issue 12): the last bytes of a response could finish the exchange and
        start the next pipelined request on a new channel inside the same callback; their
        acknowledgement then went to the new channel, which refused it, and that channel's
        window never reopened: the second response stalled for ever. A reader slow enough that
        the relay's output is above its watermark when the first response ends."""
        n = 3 * MiB
        with self.ferry_tunnel() as (relay, agent):
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
            s.settimeout(30)
            s.connect(("127.0.0.1", relay.port))
            auth = self.hdr["Authorization"]
            req = f"GET /t/web/bytes?n={n} HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\n\r\n".encode()
            s.sendall(req + req)
            got = bytearray()
            # Slow at first, so that the relay holds the end of the first response above its
            # watermark while the second request starts; then as fast as it comes.
            t_end = time.time() + 3
            while time.time() < t_end:
                chunk = s.recv(16384)
                if not chunk:
                    break
                got += chunk
                time.sleep(0.01)
            deadline = time.time() + 30
            bodies = []
            while len(bodies) < 2 and time.time() < deadline:
                i = got.find(b"\r\n\r\n")
                if i >= 0:
                    head = bytes(got[:i]).decode("latin-1")
                    self.assertTrue(head.startswith("HTTP/1.1 200"), head)
                    length = int(next(l.split(":", 1)[1] for l in head.split("\r\n") if l.lower().startswith("content-length")))
                    if len(got) >= i + 4 + length:
                        bodies.append(bytes(got[i + 4:i + 4 + length]))
                        del got[:i + 4 + length]
                        continue
                chunk = s.recv(1 << 20)
                if not chunk:
                    break
                got += chunk
            s.close()
            self.assertEqual(len(bodies), 2, "the second response stalled")
            for b in bodies:
                self.assertEqual(hashlib.sha256(b).hexdigest(), hashlib.sha256(pattern(1 << 20) * 3).hexdigest())

    def test_sighup_is_ignored_by_ferryd_and_the_agent(self):
        """SIGHUP has no meaning yet (reload comes with the control plane); its default would end
        the process at once and cut every tunnel. A signal sent with kill() is pending at once
        and delivered before the process runs user code again, so a request served afterwards
        by both processes proves neither died of it."""
        with self.ferry_tunnel() as (relay, agent):
            self.assertEqual(self.get(relay.port), (200, b"hello from upstream\n"))
            for p in (relay.proc, agent.proc):
                os.kill(p.pid, signal.SIGHUP)
            for _ in range(3):
                self.assertEqual(self.get(relay.port), (200, b"hello from upstream\n"))
            self.assertIsNone(relay.proc.poll())
            self.assertIsNone(agent.proc.poll())
    def test_agent_serves_and_comes_back_after_relay_restart(self):
        relay = Relay(FERRYD, shards=2)
        agent = FerryAgent(FERRY, relay.port, self.tok, [("web", self.up.port)], self.tmp)
        try:
            relay.log.wait_for(['"tunnel up"', '"web"'], timeout=20)
            self.assertEqual(self.get(relay.port), (200, b"hello from upstream\n"))
            # 1 MiB each way through ferry's own agent.
            body = pattern(MiB, seed=9)
            c = http.client.HTTPConnection("127.0.0.1", relay.port, timeout=30)
            c.request("POST", "/t/web/echo", body=body, headers=self.hdr)
            got = json.loads(c.getresponse().read())
            c.close()
            self.assertEqual(got["sha256"], hashlib.sha256(body).hexdigest())
            # Restart the relay on the same port with the same data dir (same host key).
            port, data = relay.port, relay.dir
            relay.stop()
            t_down = time.time()
            relay2 = Relay(FERRYD, shards=2, data_dir=data, port=port)
            try:
                relay2.log.wait_for(['"tunnel up"', '"web"'], timeout=30)
                back = time.time() - t_down
                # R1: first retry at once, then 2 s +-30 %, 4 s ...: back within a few seconds.
                self.assertLess(back, 12, agent.log.text())
                self.assertEqual(self.get(port), (200, b"hello from upstream\n"))
                print(f"\nagent back {back:.1f} s after the relay restart", file=sys.stderr)
            finally:
                self.assertEqual(agent.stop(), 0, agent.log.text())
                relay2.stop()
        finally:
            agent.stop()
            relay.stop()
            relay.cleanup()

    def seen_peers(self):
        """Upstream source ports of the requests seen since the last call, in order."""
        out = []
        while not self.up.server.seen.empty():
            out.append(self.up.server.seen.get().get("peer"))
        return out

    def test_upstream_keep_alive(self):
        # ferry agent keeps the upstream connection of a finished exchange for the next channel.
        # The relay keeps spare channels open ahead, which hold connections too: the requests
        # share at most three upstream connections.
        with self.ferry_tunnel("--log-level", "debug", agent_args=("--upstream-idle-ms", "1500")) as (relay, agent):
            self.seen_peers()
            for _ in range(5):  # a new consumer connection each time
                self.assertEqual(self.get(relay.port), (200, b"hello from upstream\n"))
            body = pattern(256 << 10, seed=3)
            c = http.client.HTTPConnection("127.0.0.1", relay.port, timeout=30)
            c.request("POST", "/t/web/echo", body=body, headers=self.hdr)
            self.assertEqual(json.loads(c.getresponse().read())["sha256"], hashlib.sha256(body).hexdigest())
            c.close()
            c = http.client.HTTPConnection("127.0.0.1", relay.port, timeout=30)
            c.request("HEAD", "/t/web/hello", headers=self.hdr)
            r = c.getresponse()
            self.assertEqual((r.status, r.read()), (200, b""))
            c.close()
            self.assertEqual(self.get(relay.port), (200, b"hello from upstream\n"))
            peers = self.seen_peers()
            self.assertEqual(len(peers), 8)
            # At most: the first request's own connection and the two spares its miss opened.
            self.assertLessEqual(len(set(peers)), 3, peers)
            # After the first request every request found its channel already open.
            deadline = time.time() + 5  # the log reader thread may be a line behind
            while relay.log.count('"spare_channel":1') < 7 and time.time() < deadline:
                time.sleep(0.05)
            self.assertGreaterEqual(relay.log.count('"spare_channel":1'), 7, relay.log.text()[-3000:])
            seen = set(peers)
            # Connection: close from the upstream: that connection is never used again.
            self.assertEqual(self.get(relay.port, "/t/web/close"), (200, b"bye\n"))
            closed = self.seen_peers()[0]
            # The upstream closes a connection it said it would keep: the agent drops it.
            self.assertEqual(self.get(relay.port, "/t/web/quiet-close"), (200, b"quiet\n"))
            quiet = self.seen_peers()[0]
            time.sleep(0.3)
            for _ in range(4):
                self.assertEqual(self.get(relay.port), (200, b"hello from upstream\n"))
            later = self.seen_peers()
            self.assertNotIn(closed, later)
            self.assertNotIn(quiet, later)
            seen |= set(later) | {closed, quiet}
            # Unused for longer than --upstream-idle-ms (kept or held by a spare channel): closed
            # by the agent, a new one next.
            time.sleep(2.5)
            self.assertEqual(self.get(relay.port), (200, b"hello from upstream\n"))
            p = self.seen_peers()
            self.assertNotIn(p[0], seen)
            self.assertEqual(agent.stop(), 0, agent.log.text())
            self.assertEqual(relay.stop(), 0, relay.log.text()[-4000:])

    def test_unused_spare_channels_expire(self):
        # The relay closes a spare channel that stayed unused for 1 s (kSpareTtl): the agent's
        # upstream idle limit must never be what ends one. A request right after another finds a
        # spare open; one after a longer pause opens its channel on demand.
        def served(spare, n):
            # The access-log line of the n-th request that did (1) or did not (0) use a spare.
            deadline = time.time() + 5  # the log reader thread may be a line behind
            while relay.log.count('"spare_channel":%d' % spare) < n and time.time() < deadline:
                time.sleep(0.02)
            return relay.log.count('"spare_channel":%d' % spare)

        with self.ferry_tunnel("--log-level", "debug", agent_args=("--log-level", "debug")) as (relay, agent):
            time.sleep(1.5)  # whatever was opened at tunnel-up has expired
            mark = len(agent.log.lines)
            self.assertEqual(self.get(relay.port), (200, b"hello from upstream\n"))
            self.assertEqual((served(0, 1), served(1, 0)), (1, 0), relay.log.text()[-3000:])
            # The miss opened its own channel and asked for two spares: the agent confirmed all three.
            agent.log.wait_count('"msg":"channel open"', 3, timeout=10, start=mark)
            self.assertEqual(self.get(relay.port), (200, b"hello from upstream\n"))
            self.assertEqual((served(0, 1), served(1, 1)), (1, 1), relay.log.text()[-3000:])
            time.sleep(1.6)  # every spare is older than 1 s: closed
            self.assertEqual(self.get(relay.port), (200, b"hello from upstream\n"))
            self.assertEqual((served(0, 2), served(1, 1)), (2, 1), relay.log.text()[-3000:])
            self.assertEqual(agent.stop(), 0, agent.log.text())
            self.assertEqual(relay.stop(), 0, relay.log.text()[-4000:])

    def test_kept_connection_closed_unanswered_is_retried(self):
        # Every upstream connection drops the request that follows a /drop-next on it (closed
        # without an answer, like a keep-alive timeout firing as the request arrives). The agent
        # sends such a GET again on a new connection: every consumer gets its answer.
        with self.ferry_tunnel() as (relay, agent):
            while not self.up.server.seen.empty():
                self.up.server.seen.get()
            for _ in range(12):
                self.assertEqual(self.get(relay.port, "/t/web/drop-next"), (200, b"marked\n"))
            seen = []
            while not self.up.server.seen.empty():
                seen.append(self.up.server.seen.get())
            dropped = [e for e in seen if e.get("dropped")]
            self.assertGreater(len(dropped), 0, "no request met a kept connection")
            self.assertEqual(len(seen) - len(dropped), 12)
            agent.log.wait_for("request sent again on a new one", timeout=5)
            self.assertEqual(agent.stop(), 0, agent.log.text())

    def test_unsafe_or_large_requests_are_not_sent_again(self):
        # After /drop-next every kept connection drops its next request once its body has
        # arrived. A POST (not idempotent) and a 100 KiB PUT (more than the 64 KiB the agent
        # keeps for a replay) that meet one get 502: the upstream never sees either twice.
        with self.ferry_tunnel("--user-rate-limit", "0") as (relay, agent):
            for _ in range(6):  # every connection the agent keeps is marked
                self.assertEqual(self.get(relay.port, "/t/web/drop-next"), (200, b"marked\n"))
            while not self.up.server.seen.empty():
                self.up.server.seen.get()
            # Which kept connection a request meets depends on timing: go on until both methods
            # met a marked one (each attempt does with a good chance; 60 is far more than needed).
            statuses, dropped_methods = [], set()
            for i in range(60):
                for method, body in (("POST", b"x" * 100), ("PUT", pattern(100 << 10, seed=i))):
                    c = http.client.HTTPConnection("127.0.0.1", relay.port, timeout=30)
                    c.request(method, f"/t/web/echo?{method}={i}", body=body, headers=self.hdr)
                    r = c.getresponse()
                    r.read()
                    c.close()
                    self.assertIn(r.status, (200, 502), method)
                    statuses.append(r.status)
                    if r.status == 502:
                        dropped_methods.add(method)
                if dropped_methods == {"POST", "PUT"}:
                    break
            seen = []
            while not self.up.server.seen.empty():
                seen.append(self.up.server.seen.get())
            paths = [e["path"] for e in seen]
            for p in set(paths):
                self.assertEqual(paths.count(p), 1, f"{p} reached the upstream twice")
            self.assertEqual(dropped_methods, {"POST", "PUT"}, "not both met a marked connection: nothing was tested")
            self.assertEqual(statuses.count(502), sum(1 for e in seen if e.get("dropped")))

    def test_target_down_costs_one_refusal_per_request(self):
        # Nothing listens on the target: each request gets 502 from the agent's refusal, and a
        # refused spare channel stops the relay from opening more (no open loop).
        down = free_port()
        with self.ferry_tunnel(target=down) as (relay, agent):
            for _ in range(10):
                status, body = self.get(relay.port)
                self.assertEqual(status, 502, body)
                self.assertIn(b"could not reach its target", body)
            # One per request, plus the two spares the first miss asked for: at least the ten
            # (waited for), and at most twelve over the agent's whole life (counted once it
            # has exited and its log has been read to the end).
            agent.log.wait_count("channel refused: target unreachable", 10, timeout=10)
            self.assertEqual(agent.stop(), 0, agent.log.text()[-3000:])
            refusals = agent.log.count("channel refused: target unreachable")
            self.assertLessEqual(refusals, 12, agent.log.text()[-3000:])

    def test_upstream_keep_alive_off(self):
        with self.ferry_tunnel(agent_args=("--upstream-keepalive", "0")) as (relay, agent):
            self.seen_peers()
            for _ in range(3):
                self.assertEqual(self.get(relay.port), (200, b"hello from upstream\n"))
            self.assertEqual(len(set(self.seen_peers())), 3)

    def test_openssh_through_ferry_connect(self):
        relay = Relay(FERRYD, shards=1)
        try:
            # ssh itself checks the host key: `ferry connect` refuses --known-hosts.
            proxy = f"{FERRY} connect {{url}} --token-file {{token_file}}"
            agent = SshAgent(relay.port, self.tok, [("web", self.up.port)], proxy=proxy)
            relay.log.wait_for(['"tunnel up"', '"web"'], timeout=20)
            self.assertEqual(self.get(relay.port), (200, b"hello from upstream\n"))
            body = pattern(4 * MiB, seed=5)
            c = http.client.HTTPConnection("127.0.0.1", relay.port, timeout=30)
            c.request("POST", "/t/web/echo", body=body, headers=self.hdr)
            got = json.loads(c.getresponse().read())
            c.close()
            self.assertEqual(got["length"], len(body))
            self.assertEqual(got["sha256"], hashlib.sha256(body).hexdigest())
            agent.stop()
        finally:
            relay.stop()
            relay.cleanup()



class RawSshListener(unittest.TestCase):
    """ssh_listen (issue 12): OpenSSH connects to ferryd directly, no WebSocket, and serves a
    tunnel with its password as the JWT. The same relay end (agent_conn on link::ssh_endpoint)
    as WebSocket agents: leases, take-over, limits and the consumer path are the same."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="ferry-rawssh-")
        cls.up = Upstream()
        cls.relay = Relay(FERRYD, "--ssh-listen", "127.0.0.1:0", shards=2)

    @classmethod
    def tearDownClass(cls):
        cls.relay.stop()
        cls.relay.cleanup()
        cls.up.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def agent(self, name, sub, user=None, tok=None):
        tf = write_token(self.tmp, tok or agent_token(sub), f"tok-{name}-{sub}")
        return RawSshAgent(self.relay.ssh_port, tf, [(name, self.up.port)], user or sub, self.tmp)

    def get(self, path, sub):
        c = http.client.HTTPConnection("127.0.0.1", self.relay.port, timeout=30)
        c.request("GET", path, headers={"Authorization": "Bearer " + mint(sub)})
        r = c.getresponse()
        body = r.read()
        c.close()
        return r.status, body

    def test_openssh_serves_requests_and_a_stream(self):
        mark = len(self.relay.log.lines)
        a = self.agent("raw", "rita")
        try:
            i = self.relay.log.wait_for(['"agent authenticated"', '"rita"'], timeout=20, start=mark)
            rec = json.loads(self.relay.log.lines[i])
            self.assertEqual(rec["method"], "password")  # `none` is refused without a WebSocket token
            self.relay.log.wait_for(['"tunnel up"', '"raw"'], timeout=20, start=mark)
            self.assertEqual(self.get("/t/raw/hello", "rita"), (200, b"hello from upstream\n"))
            # 1 MiB up and its digest back, through OpenSSH's own channel windows.
            body = pattern(MiB, seed=3)
            c = http.client.HTTPConnection("127.0.0.1", self.relay.port, timeout=30)
            c.request("POST", "/t/raw/echo", body=body, headers={"Authorization": "Bearer " + mint("rita")})
            got = json.loads(c.getresponse().read())
            c.close()
            self.assertEqual(got["sha256"], hashlib.sha256(body).hexdigest())
            # A streamed (chunked NDJSON) response: the first line arrives while the upstream
            # is still producing the rest.
            c = http.client.HTTPConnection("127.0.0.1", self.relay.port, timeout=30)
            t0 = time.time()
            c.request("GET", "/t/raw/ndjson?lines=4&delay=0.4", headers={"Authorization": "Bearer " + mint("rita")})
            r = c.getresponse()
            self.assertEqual(r.status, 200)
            arrivals = []
            for line in r:
                arrivals.append((time.time() - t0, json.loads(line)))
            c.close()
            self.assertEqual([x[1]["i"] for x in arrivals], list(range(4)))
            self.assertLess(arrivals[0][0], arrivals[-1][0] - 0.8, arrivals)
            # Consumers still need a token for the tunnel.
            c = http.client.HTTPConnection("127.0.0.1", self.relay.port, timeout=30)
            c.request("GET", "/t/raw/hello")
            self.assertEqual(c.getresponse().status, 401)
            c.close()
        finally:
            a.stop()

    def test_a_jwt_for_another_user_or_without_agent_scope_is_refused(self):
        cases = (("mallory-as-rita", "rita", agent_token("mallory")),   # sub is not the SSH user
                 ("consumer-token", "rita", mint("rita")),                # no agent scope
                 ("garbage", "rita", "not-a-jwt"))
        for name, user, tok in cases:
            with self.subTest(name):
                mark = len(self.relay.log.lines)
                a = self.agent(name, user, user=user, tok=tok)
                try:
                    rc = a.proc.wait(timeout=30)  # ssh gives up after its one password prompt
                    a.log.wait_for("Permission denied", timeout=10)
                finally:
                    a.stop()
                self.assertEqual(rc, 255)
                self.assertFalse(any(f'"{name}"' in l and '"tunnel up"' in l for l in self.relay.log.lines[mark:]))

    def test_take_over_by_a_websocket_agent_of_the_same_owner(self):
        """Leases and take-over are the registry's, whatever the transport: `ferry agent` of the
        same owner takes the name from the raw SSH session."""
        mark = len(self.relay.log.lines)
        a = self.agent("shared", "sam")
        fa = None
        try:
            self.relay.log.wait_for(['"tunnel up"', '"shared"'], timeout=20, start=mark)
            self.assertEqual(self.get("/t/shared/hello", "sam")[0], 200)
            mark = len(self.relay.log.lines)
            fa = FerryAgent(FERRY, self.relay.port, write_token(self.tmp, agent_token("sam"), "sam-ws"),
                            [("shared", self.up.port)], self.tmp)
            i = self.relay.log.wait_for(['"tunnel up"', '"shared"'], timeout=20, start=mark)
            self.assertNotEqual(json.loads(self.relay.log.lines[i])["replaced_session"], 0)
            self.assertEqual(self.get("/t/shared/hello", "sam"), (200, b"hello from upstream\n"))
        finally:
            if fa:
                fa.stop()
            a.stop()


class KeysNotBuiltYet(unittest.TestCase):
    """Keys for parts that are not built yet (JWKS over HTTPS, the admin listener and its token,
    graceful drain) are refused at start with a message that says so, rather than
    accepted and ignored; the defaults start."""

    def test_refused_at_start_with_a_reason(self):
        tmp = tempfile.mkdtemp(prefix="ferry-notbuilt-")
        try:
            secret = os.path.join(tmp, "secret")
            with open(secret, "wb") as f:
                f.write(b"s" * 40)
            os.chmod(secret, 0o600)
            base = [FERRYD, "--no-tls", "--listen", "127.0.0.1:0", "--data-dir", tmp, "--jwt-secret-file", secret]
            for key, args in {"jwks_url": ["--jwks-url", "https://id.example/jwks.json"],
                              "admin_listen": ["--admin-listen", "127.0.0.1:9999"],
                              "admin_token_file": ["--admin-token-file", secret],
                              "drain_timeout_ms": ["--drain-timeout-ms", "5000"]}.items():
                with self.subTest(key):
                    r = subprocess.run(base + args, capture_output=True, text=True, timeout=30)
                    self.assertEqual(r.returncode, 1, r.stderr)
                    self.assertIn(f"ferryd: {key}: ", r.stderr)
                    self.assertIn("not built yet", r.stderr)
                    self.assertEqual(r.stdout, "")  # never listened
            # No key source at all: a relay that would refuse every token does not start.
            r = subprocess.run([FERRYD, "--no-tls", "--listen", "127.0.0.1:0", "--data-dir", tmp],
                               capture_output=True, text=True, timeout=30)
            self.assertEqual(r.returncode, 1, r.stderr)
            self.assertIn("ferryd: JWT keys: no key source: set jwt_secret_file or jwks_file", r.stderr)
            self.assertEqual(r.stdout, "")
            # The default admin_listen starts, and warns that nothing listens there.
            relay = Relay(FERRYD, "--admin-listen", "127.0.0.1:9090")
            try:
                relay.log.wait_for("the admin listener (health, metrics, admin API) is not built yet")
            finally:
                relay.stop()
                relay.cleanup()
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    unittest.main(verbosity=2)
