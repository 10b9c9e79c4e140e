#!/usr/bin/python3
"""bench/e2e/tunnel_swarm (the many-agents load tool of bench/e2e/run) against a real ferryd:
its sessions really register and really serve consumers, failures are counted, and EOF ends it.
A handful of sessions only: this checks the tool, it measures nothing.
Usage: tunnel_swarm_test.py PATH/TO/ferryd PATH/TO/tunnel_swarm
"""
import os
import re
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.request

from ferry_harness import Relay, Upstream, mint

FERRYD = sys.argv.pop(1) if len(sys.argv) > 1 else "build/src/cmd/ferryd"
SWARM = sys.argv.pop(1) if len(sys.argv) > 1 else "build/bench/e2e/tunnel_swarm"


class Swarm:
    def __init__(self, relay, upstream, secret_file, tls=False, prefix="swarm"):
        args = [SWARM, "--relay", f"127.0.0.1:{relay.port}", "--secret-file", secret_file,
                "--target", f"127.0.0.1:{upstream.port}", "--prefix", prefix, "--concurrency", "3"]
        if tls:
            args += ["--tls", "--sni", "localhost", "--ca-file", os.path.join(relay.dir, "tls.crt")]
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if line.strip() != "ready":
            self.proc.kill()
            raise RuntimeError("tunnel_swarm did not start: " + line + self.proc.stderr.read())

    def go(self, n):
        self.proc.stdin.write(f"go {n}\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        return {k: float(v) for k, v in re.findall(r"(\w+)=([\d.]+)", line)}, line

    def close(self, timeout=20):
        self.proc.stdin.close()
        try:
            return self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self.proc.stdout.close()
            self.proc.stderr.close()


def get(url, token, timeout=10):
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    ctx = None
    if url.startswith("https:"):
        import ssl
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    with urllib.request.urlopen(req, timeout=timeout, context=ctx) as r:
        return r.status, r.read()


class TunnelSwarm(unittest.TestCase):
    def setUp(self):
        self.upstream = Upstream()
        self.relays = []

    def tearDown(self):
        for r in self.relays:
            r.stop()
            r.cleanup()
        self.upstream.stop()

    def relay(self, tls=False):
        r = Relay(FERRYD, "--user-rate-limit", "0", shards=2, tls=tls)
        self.relays.append(r)
        return r

    def check_sessions(self, tls):
        relay = self.relay(tls)
        sw = Swarm(relay, self.upstream, relay.secret_file, tls=tls)
        try:
            kv, line = sw.go(4)
            self.assertEqual((kv["up"], kv["failed"], kv["total_up"]), (4, 0, 4), line)
            kv, line = sw.go(3)  # a second step adds to the first
            self.assertEqual((kv["up"], kv["failed"], kv["total_up"]), (3, 0, 7), line)
            self.assertGreater(kv["setups_per_s"], 0, line)
            self.assertLessEqual(kv["setup_ms_p50"], kv["setup_ms_max"], line)
            for i in range(7):
                relay.log.wait_for(f'"tunnel":"swarm-{i}"', timeout=10)
            self.assertEqual(relay.log.count('"msg":"tunnel up"'), 7)
            # Each session serves its own tunnel, for its owner (sub = the tunnel's name).
            scheme = "https" if tls else "http"
            for i in (0, 6):
                status, body = get(f"{scheme}://127.0.0.1:{relay.port}/t/swarm-{i}/hello", mint(f"swarm-{i}"))
                self.assertEqual((status, body), (200, b"hello from upstream\n"))
        finally:
            self.assertEqual(sw.close(), 0)
        # EOF dropped every session: the relay saw all seven agents go.
        deadline = time.time() + 10
        while relay.log.count('"msg":"agent gone"') < 7 and time.time() < deadline:
            time.sleep(0.05)
        self.assertEqual(relay.log.count('"msg":"agent gone"'), 7, relay.log.text()[-2000:])

    def test_sessions_register_and_serve(self):
        self.check_sessions(tls=False)

    def test_sessions_over_tls(self):
        self.check_sessions(tls=True)

    def test_refused_sessions_are_counted_as_failed(self):
        relay = self.relay()
        with tempfile.NamedTemporaryFile("wb", delete=False) as f:
            f.write(b"a-different-secret-that-the-relay-does-not-know-0123456789")
        try:
            sw = Swarm(relay, self.upstream, f.name)
            kv, line = sw.go(3)
            self.assertEqual((kv["up"], kv["failed"], kv["total_up"]), (0, 3, 0), line)
            self.assertEqual(sw.close(), 0)
        finally:
            os.unlink(f.name)
        self.assertEqual(relay.log.count('"msg":"tunnel up"'), 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
