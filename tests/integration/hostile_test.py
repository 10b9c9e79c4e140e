#!/usr/bin/python3
"""ferryd and `ferry agent` against the second hostile test (issue 11): one class per finding,
each reproducing the attack with real processes on loopback and asserting that it no longer
works, while an honest consumer keeps being served.

  CrossConsumerCapture  a consumer's request body left unread by the upstream must never reach
                        the next consumer's request (the agent's upstream keep-alive pool)
  ShardHandOver         one keep-alive connection alternating between tunnels on two shards
  SilentAgents          upgraded agent connections that never speak SSH lose their slots
  AgentTokenScope       a consumer token (a ferry_tunnels grant) cannot register tunnels

Tokens are minted with PyJWT. Agents are `ferry agent` (the one with an upstream pool) unless a
test says otherwise. Memory figures come from /proc/PID/status. Thresholds are wide: the machine
is small and shared; every wait is for the event asserted on, never a bare sleep.
Usage: hostile_test.py PATH/TO/ferryd PATH/TO/ferry [unittest arguments]
"""
import http.client
import http.server
import json
import os
import shutil
import socket
import socketserver
import sys
import tempfile
import threading
import time
import unittest
import urllib.parse

from ferry_harness import FerryAgent, Relay, Upstream, agent_token, mint, write_token

FERRYD = sys.argv.pop(1) if len(sys.argv) > 1 else "build/src/cmd/ferryd"
FERRY = sys.argv.pop(1) if len(sys.argv) > 1 else "build/src/cmd/ferry"
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")


def stop_clean(testcase, relay):
    """Stops ferryd and fails when it did not exit 0 or a sanitizer wrote a report."""
    rc = relay.stop()
    text = relay.log.text()
    relay.cleanup()
    marks = [m for m in SANITIZER_MARKS if m in text]
    testcase.assertEqual((rc, marks), (0, []), "\n".join(relay.log.lines[-40:]))


def raw_exchange(sock, data, timeout=10):
    """Sends `data` and reads one response with a Content-Length body: (status, body), or None
    when the connection closed first."""
    sock.settimeout(timeout)
    sock.sendall(data)
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        buf += chunk
    head, rest = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    length = 0
    for line in lines[1:]:
        k, _, v = line.partition(":")
        if k.strip().lower() == "content-length":
            length = int(v)
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        rest += chunk
    return int(lines[0].split(" ")[1]), rest[:length]


# ---- 1. cross-consumer capture through the agent's upstream pool ------------------------------

class _ShopHandler(http.server.BaseHTTPRequestHandler):
    """An ordinary keep-alive HTTP/1.1 service whose GET handlers never read a request body
    (Python's http.server leaves it in the connection, to be read as the next request)."""
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def _send(self, body):
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        u = urllib.parse.urlsplit(self.path)
        q = dict(urllib.parse.parse_qsl(u.query))
        if u.path == "/owner":
            n = q.get("n", "")
            ok = self.headers.get("X-Api-Key") == "owner-secret-" + n
            return self._send(f"owner {n} key-ok={ok}".encode())
        return self._send(b"x")  # /x and everything else: the body, if any, stays unread

    def do_POST(self):
        # /comment stores what it reads (up to Content-Length): the attacker reads it back.
        n = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(n) if n else b""
        with self.server.lock:
            self.server.comments.append(self.raw_requestline + bytes(self.headers) + body)
        return self._send(b"stored")


class _ShopServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class CrossConsumerCapture(unittest.TestCase):
    """Consumer M (granted the tunnel) sends GET /t/shop/x with a Content-Length body that is
    the start of another request (POST /comment with Content-Length: 200 and an open body).
    The upstream answers the GET without reading the body; before issue 11 the agent pooled
    that connection and the owner's next request became the body of M's smuggled POST: the
    owner got M's answer and M could read the owner's head (API key included) back. For six
    seconds M attacks while the honest owner sends requests: no owner answer may be wrong and
    no byte of the owner's requests may reach a stored comment."""

    SMUGGLED = b"POST /comment HTTP/1.1\r\nHost: shop\r\nContent-Length: 200\r\n\r\n"

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="ferry-hostile-")
        self.up = _ShopServer(("127.0.0.1", 0), _ShopHandler)
        self.up.comments = []
        self.up.lock = threading.Lock()
        threading.Thread(target=self.up.serve_forever, daemon=True).start()
        self.relay = Relay(FERRYD, "--user-rate-limit", "0")
        self.agent = FerryAgent(FERRY, self.relay.port, write_token(self.tmp, agent_token("owner")),
                                [("shop", self.up.server_address[1])], self.tmp)
        self.relay.log.wait_for(['"tunnel up"', '"shop"'], timeout=20)

    def tearDown(self):
        self.agent.stop()
        stop_clean(self, self.relay)
        self.up.shutdown()
        self.up.server_close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def test_smuggled_body_never_reaches_another_consumer(self):
        attacker = mint("mallory", tunnels=["shop"])
        owner = mint("owner")
        stop_at = time.time() + 6
        counts = {"attacks": 0, "attack_errors": 0, "owner_ok": 0, "owner_wrong": []}

        def attack():
            req = (b"GET /t/shop/x HTTP/1.1\r\nHost: relay\r\nAuthorization: Bearer " + attacker.encode() +
                   b"\r\nContent-Length: " + str(len(self.SMUGGLED)).encode() + b"\r\n\r\n" + self.SMUGGLED)
            while time.time() < stop_at:
                s = socket.create_connection(("127.0.0.1", self.relay.port), timeout=10)
                try:
                    for _ in range(5):
                        r = raw_exchange(s, req)
                        if r is None:
                            break
                        if r[0] == 200:
                            counts["attacks"] += 1
                        else:
                            counts["attack_errors"] += 1
                except OSError:
                    counts["attack_errors"] += 1
                finally:
                    s.close()

        def honest():
            c = http.client.HTTPConnection("127.0.0.1", self.relay.port, timeout=10)
            i = 0
            while time.time() < stop_at:
                i += 1
                try:
                    c.request("GET", f"/t/shop/owner?n={i}",
                              headers={"Authorization": "Bearer " + owner, "X-Api-Key": f"owner-secret-{i}"})
                    r = c.getresponse()
                    body = r.read()
                except (OSError, http.client.HTTPException):
                    c.close()
                    c = http.client.HTTPConnection("127.0.0.1", self.relay.port, timeout=10)
                    continue
                if r.status == 200 and body == f"owner {i} key-ok=True".encode():
                    counts["owner_ok"] += 1
                else:
                    counts["owner_wrong"].append((r.status, body[:80]))
            c.close()

        threads = [threading.Thread(target=attack), threading.Thread(target=honest)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        with self.up.lock:
            captured = [c for c in self.up.comments if b"owner" in c or b"X-Api-Key" in c]
        self.assertGreater(counts["attacks"], 20, counts)
        self.assertGreater(counts["owner_ok"], 20, counts)
        self.assertEqual(counts["owner_wrong"], [], "the owner got answers meant for someone else")
        self.assertEqual(captured, [], "the owner's request bytes reached the attacker's stored POST")
        print(f"\ncapture attempts {counts['attacks']}, owner requests served {counts['owner_ok']}, "
              f"wrong 0, captured 0", file=sys.stderr)


# ---- 6. a keep-alive connection across shards ---------------------------------------------------

def log_record(log, index):
    return json.loads(log.lines[index])


class ShardHandOver(unittest.TestCase):
    """Two tunnels whose agents sit on different shards, one keep-alive connection alternating
    between them: the hand-over budget (two hops, so replicas that briefly disagree cannot
    bounce a socket for ever) is counted per request, so every request is served at once.
    Before issue 11 it was counted per connection and the fourth request waited 30 s for a
    503 tunnel_offline."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="ferry-hostile-")
        self.up = Upstream()
        self.relay = Relay(FERRYD, "--user-rate-limit", "0", shards=2)
        self.tok = write_token(self.tmp, agent_token("owner"))
        self.agents = []

    def tearDown(self):
        for a in self.agents:
            a.stop()
        stop_clean(self, self.relay)
        self.up.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def start_agent(self, name):
        """`ferry agent` for tunnel `name`; returns the shard its session landed on."""
        start = len(self.relay.log.lines)
        a = FerryAgent(FERRY, self.relay.port, self.tok, [(name, self.up.port)], self.tmp)
        i = self.relay.log.wait_for(['"tunnel up"', f'"{name}"'], timeout=20, start=start)
        self.agents.append(a)
        return log_record(self.relay.log, i)["shard"]

    def test_alternating_tunnels_on_two_shards(self):
        shard_a = self.start_agent("ta")
        for attempt in range(20):  # SO_REUSEPORT picks the shard: reconnect until it differs
            shard_b = self.start_agent(f"tb{attempt}")
            if shard_b != shard_a:
                break
            self.agents.pop().stop()
        self.assertNotEqual(shard_a, shard_b, "could not place the two agents on different shards")
        hdr = {"Authorization": "Bearer " + mint("owner")}
        c = http.client.HTTPConnection("127.0.0.1", self.relay.port, timeout=10)
        try:
            for i in range(10):
                name = "ta" if i % 2 == 0 else f"tb{attempt}"
                t0 = time.time()
                c.request("GET", f"/t/{name}/hello", headers=hdr)
                r = c.getresponse()
                body = r.read()
                self.assertEqual((r.status, body), (200, b"hello from upstream\n"), f"request {i} to {name}")
                self.assertLess(time.time() - t0, 5, f"request {i} to {name} waited")
                self.assertFalse(r.getheader("Connection", "").lower() == "close", f"request {i}")
        finally:
            c.close()


# ---- 7. silent agent sessions ---------------------------------------------------------------------

def ws_upgrade(port, token, timeout=10, rest=None):
    """A WebSocket upgrade on /tunnel with `token`; returns (socket, status line). `rest` (a
    bytearray) receives what came after the response head."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.sendall(("GET /tunnel HTTP/1.1\r\nHost: relay\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
               f"Authorization: Bearer {token}\r\n\r\n").encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(4096)
        if not chunk:
            break
        buf += chunk
    if rest is not None:
        rest[:] = buf.partition(b"\r\n\r\n")[2]
    return s, buf.split(b"\r\n", 1)[0].decode("latin-1")


def seconds_until_closed(sock, timeout):
    """Seconds until the peer closes `sock` (reading and dropping what it sends), or None."""
    t0 = time.time()
    while time.time() - t0 < timeout:
        sock.settimeout(max(0.05, timeout - (time.time() - t0)))
        try:
            if not sock.recv(65536):
                return time.time() - t0
        except socket.timeout:
            return None
        except OSError:
            return time.time() - t0
    return None


class SilentAgents(unittest.TestCase):
    """Connections that upgrade with a valid agent token and never send an SSH byte held the
    owner's agent slots (max 3) for ever, so the real agent got 429. The SSH version, key
    exchange and authentication now have a deadline (handshake_timeout_ms): the silent ones are
    closed, their slots freed, and the real agent comes up."""

    def test_silent_upgrades_are_closed_and_free_their_slots(self):
        tmp = tempfile.mkdtemp(prefix="ferry-hostile-")
        up = Upstream()
        relay = Relay(FERRYD, "--handshake-timeout-ms", "2000")
        agent = None
        socks = []
        try:
            tok = agent_token("sam")
            for _ in range(3):
                s, status = ws_upgrade(relay.port, tok)
                self.assertIn(" 101 ", status)
                socks.append(s)
            # The slots are taken: a fourth agent connection is refused while they hold.
            s4, status = ws_upgrade(relay.port, tok)
            s4.close()
            self.assertIn(" 429 ", status)
            t0 = time.time()
            for s in socks:
                waited = seconds_until_closed(s, 15)
                self.assertIsNotNone(waited, "a silent agent connection outlived the handshake timeout")
            closed_after = time.time() - t0
            self.assertLess(closed_after, 10)
            self.assertGreater(closed_after, 1.0, "closed before the handshake timeout")
            relay.log.wait_for("agent SSH handshake not finished in time")
            # Their slots are free again: the real agent connects and serves.
            agent = FerryAgent(FERRY, relay.port, write_token(tmp, tok), [("sam", up.port)], tmp)
            relay.log.wait_for(['"tunnel up"', '"sam"'], timeout=20)
            c = http.client.HTTPConnection("127.0.0.1", relay.port, timeout=10)
            c.request("GET", "/t/sam/hello", headers={"Authorization": "Bearer " + mint("sam")})
            r = c.getresponse()
            self.assertEqual((r.status, r.read()), (200, b"hello from upstream\n"))
            c.close()
        finally:
            for s in socks:
                s.close()
            if agent:
                agent.stop()
            stop_clean(self, relay)
            up.stop()
            shutil.rmtree(tmp, ignore_errors=True)


# ---- 5. agent token scope ------------------------------------------------------------------------

class AgentTokenScope(unittest.TestCase):
    """A consumer token, say one holding only a `ferry_tunnels` grant that a web app was given,
    used to work as an agent token and register tunnels. Agent connections now need the
    `ferry:agent` scope: the upgrade is refused with 403, `ferry agent` reports it (and backs off
    to its cap), OpenSSH's password path refuses it too, and no tunnel comes up."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="ferry-hostile-")
        self.up = Upstream()
        self.relay = Relay(FERRYD)

    def tearDown(self):
        stop_clean(self, self.relay)
        self.up.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def test_consumer_tokens_cannot_register_tunnels(self):
        for name, tok in {"grant-only": mint("webapp", tunnels=["shop"]),
                          "plain": mint("webapp"),
                          "other-scope": mint("webapp", scope="read write"),
                          "scope-as-grant": mint("webapp", tunnels=["ferry:agent"])}.items():
            with self.subTest(name):
                after = bytearray()
                s, status = ws_upgrade(self.relay.port, tok, rest=after)
                rest = bytes(after)
                try:
                    s.settimeout(5)
                    while True:
                        chunk = s.recv(65536)
                        if not chunk:
                            break
                        rest += chunk
                        if b"}}" in rest:
                            break
                except OSError:
                    pass
                s.close()
                self.assertIn(" 403 ", status)
                self.assertIn(b'"code":"forbidden"', rest)
                self.assertIn(b"ferry:agent", rest)
        # `ferry agent` with a consumer token: refused, said clearly, no tunnel.
        agent = FerryAgent(FERRY, self.relay.port, write_token(self.tmp, mint("webapp", tunnels=["shop"])),
                           [("shop", self.up.port)], self.tmp)
        try:
            agent.log.wait_for(["relay refused the agent's token", '"status":403', "ferry:agent"], timeout=20)
        finally:
            agent.stop()
        self.assertEqual(self.relay.log.count('"tunnel up"'), 0)
        # The same user's agent token works (the positive control), as does an array scope.
        for tok in (agent_token("webapp"), mint("webapp", scope=["x", "ferry:agent"])):
            mark = len(self.relay.log.lines)
            agent = FerryAgent(FERRY, self.relay.port, write_token(self.tmp, tok), [("shop", self.up.port)], self.tmp)
            try:
                self.relay.log.wait_for(['"tunnel up"', '"shop"'], timeout=20, start=mark)
            finally:
                agent.stop()


if __name__ == "__main__":
    unittest.main(verbosity=2)
