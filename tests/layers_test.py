#!/usr/bin/env python3
"""scripts/check-layers: accepts the real tree, and fails on each kind of wrong include
(a lower layer including a higher one; relay and agent including each other)."""
import pathlib
import shutil
import subprocess
import sys
import tempfile
import unittest

ROOT = pathlib.Path(__file__).resolve().parent.parent
CHECK = ROOT / "scripts" / "check-layers"


def run(src):
    return subprocess.run([sys.executable, str(CHECK), str(src)], capture_output=True, text=True)


class CheckLayers(unittest.TestCase):
    def test_real_tree_passes(self):
        r = run(ROOT / "src")
        self.assertEqual(r.returncode, 0, r.stderr)

    def check_refused(self, file, include, words):
        with tempfile.TemporaryDirectory() as d:
            src = pathlib.Path(d) / "src"
            shutil.copytree(ROOT / "src", src)
            with open(src / file, "a") as f:
                f.write(f'\n#include "{include}"\n')
            r = run(src)
            self.assertEqual(r.returncode, 1)
            self.assertIn(file, r.stderr)
            self.assertIn(words, r.stderr)

    def test_relay_including_agent_fails(self):
        self.check_refused("relay/registry.cc", "agent/agent.hh", "includes its sibling 'agent'")

    def test_agent_including_relay_fails(self):
        self.check_refused("agent/backoff.cc", "relay/relay.hh", "includes its sibling 'relay'")

    def test_link_including_relay_fails(self):
        self.check_refused("link/ws_client.cc", "relay/relay.hh", "includes higher layer 'relay'")

    def test_proto_including_reactor_fails(self):
        self.check_refused("proto/http1/parser.cc", "reactor/shard.hh", "includes higher layer 'reactor'")


if __name__ == "__main__":
    unittest.main()
