#!/usr/bin/python3
"""`ferry token` checked against an independent JWT implementation (Debian's PyJWT).

Mints with the real binary and verifies with PyJWT (signature, sub, exp - iat = ttl, aud, iss,
ferry_tunnels, header); mints with PyJWT and checks `ferry token inspect --secret-file` agrees
(valid, expired, invalid); and checks the errors a user can make.
Usage: ferry_token_test.py PATH/TO/ferry
"""
import json
import os
import subprocess
import sys
import tempfile
import time
import unittest

import jwt

FERRY = sys.argv.pop(1) if len(sys.argv) > 1 else "build/src/cmd/ferry"


def ferry(*args, stdin=None):
    return subprocess.run([FERRY, *args], input=stdin, capture_output=True, text=True, timeout=60)


class FerryToken(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.TemporaryDirectory()
        cls.secret = os.urandom(16).hex().encode()  # 32 ASCII bytes
        cls.secret_file = os.path.join(cls.dir.name, "secret")
        with open(cls.secret_file, "wb") as f:
            f.write(cls.secret + b"\n")  # the trailing newline is not part of the secret
        os.chmod(cls.secret_file, 0o600)

    @classmethod
    def tearDownClass(cls):
        cls.dir.cleanup()

    def mint(self, *extra):
        r = ferry("token", "--secret-file", self.secret_file, *extra)
        self.assertEqual(r.returncode, 0, r.stderr)
        token = r.stdout.strip()
        self.assertEqual(r.stdout, token + "\n")  # only the token on stdout: scripts capture it
        return token

    def test_minted_token_verifies_with_pyjwt(self):
        before = int(time.time())
        token = self.mint("--sub", "alice")
        after = int(time.time())
        claims = jwt.decode(token, self.secret, algorithms=["HS256"])
        self.assertEqual(claims["sub"], "alice")
        self.assertEqual(claims["exp"] - claims["iat"], 3600)  # default ttl 1h
        self.assertTrue(before <= claims["iat"] <= after)
        self.assertNotIn("ferry_tunnels", claims)
        self.assertNotIn("aud", claims)
        header = jwt.get_unverified_header(token)
        self.assertEqual(header, {"alg": "HS256", "typ": "JWT"})

    def test_ttl_forms(self):
        for text, seconds in (("90", 90), ("90s", 90), ("30m", 1800), ("12h", 43200), ("7d", 604800)):
            with self.subTest(ttl=text):
                claims = jwt.decode(self.mint("--sub", "a", "--ttl", text), self.secret, algorithms=["HS256"])
                self.assertEqual(claims["exp"] - claims["iat"], seconds)

    def test_tunnels_aud_iss_kid(self):
        token = self.mint("--sub", "bob", "--tunnels", "llm,dev-1", "--tunnels", "x",
                          "--aud", "ferry", "--iss", "https://id.test", "--kid", "k1")
        claims = jwt.decode(token, self.secret, algorithms=["HS256"], audience="ferry",
                            issuer="https://id.test")
        self.assertEqual(claims["ferry_tunnels"], ["llm", "dev-1", "x"])
        self.assertEqual(jwt.get_unverified_header(token)["kid"], "k1")
        with self.assertRaises(jwt.InvalidAudienceError):
            jwt.decode(token, self.secret, algorithms=["HS256"], audience="other")
        with self.assertRaises(jwt.InvalidSignatureError):
            jwt.decode(token, b"x" * 32, algorithms=["HS256"], audience="ferry")

    def test_agent_and_scope(self):
        """--agent adds the scope the relay asks of agent tokens (issue 11 item 5); --scope sets
        the claim as given and --agent adds to it; consumer tokens carry no scope."""
        claims = jwt.decode(self.mint("--sub", "a", "--agent"), self.secret, algorithms=["HS256"])
        self.assertEqual(claims["scope"], "ferry:agent")
        claims = jwt.decode(self.mint("--sub", "a", "--scope", "read", "--agent"), self.secret, algorithms=["HS256"])
        self.assertEqual(claims["scope"], "read ferry:agent")
        claims = jwt.decode(self.mint("--sub", "a", "--scope", "ferry:agent", "--agent"), self.secret,
                            algorithms=["HS256"])
        self.assertEqual(claims["scope"], "ferry:agent")
        claims = jwt.decode(self.mint("--sub", "a"), self.secret, algorithms=["HS256"])
        self.assertNotIn("scope", claims)
        r = ferry("token", "inspect", self.mint("--sub", "a", "--agent"))
        self.assertIn("scope:      ferry:agent", r.stdout)
        self.assertIn("agent:      yes", r.stdout)
        r = ferry("token", "inspect", self.mint("--sub", "a", "--tunnels", "x"))
        self.assertIn("agent:      no", r.stdout)

    def test_inspect_agrees_with_pyjwt_tokens(self):
        now = int(time.time())
        good = jwt.encode({"sub": "carol", "iat": now, "exp": now + 600, "ferry_tunnels": ["a"]},
                          self.secret, algorithm="HS256")
        r = ferry("token", "inspect", good, "--secret-file", self.secret_file)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("sub:        carol", r.stdout)
        self.assertIn("tunnels:    a", r.stdout)
        self.assertIn("verdict:    valid", r.stdout)
        # The claims line is the payload as sent.
        line = next(l for l in r.stdout.splitlines() if l.startswith("claims:"))
        self.assertEqual(json.loads(line.split(":", 1)[1]), jwt.decode(good, self.secret, algorithms=["HS256"]))

        expired = jwt.encode({"sub": "carol", "iat": now - 7200, "exp": now - 3600}, self.secret, algorithm="HS256")
        r = ferry("token", "inspect", expired, "--secret-file", self.secret_file)
        self.assertEqual(r.returncode, 1)
        self.assertIn("verdict:    expired", r.stdout)
        self.assertIn("(expired 1h", r.stdout)

        forged = jwt.encode({"sub": "carol", "exp": now + 600}, b"y" * 32, algorithm="HS256")
        r = ferry("token", "inspect", forged, "--secret-file", self.secret_file)
        self.assertEqual(r.returncode, 1)
        self.assertIn("verdict:    invalid (token_bad_signature", r.stdout)

        # Without a secret nothing is verified, and stdin works ("-").
        r = ferry("token", "inspect", "-", stdin=forged + "\n")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("signature:  not checked", r.stdout)

    def test_short_ttl_expires_with_zero_leeway(self):
        token = self.mint("--sub", "a", "--ttl", "1s")
        time.sleep(2.1)
        r = ferry("token", "inspect", token, "--secret-file", self.secret_file, "--leeway", "0")
        self.assertEqual(r.returncode, 1, r.stdout)
        self.assertIn("verdict:    expired", r.stdout)
        with self.assertRaises(jwt.ExpiredSignatureError):
            jwt.decode(token, self.secret, algorithms=["HS256"])

    def test_user_errors(self):
        short = os.path.join(self.dir.name, "short")
        with open(short, "wb") as f:
            f.write(b"x" * 31 + b"\n")
        r = ferry("token", "--secret-file", short, "--sub", "a")
        self.assertEqual(r.returncode, 1)
        self.assertIn("the secret is 31 bytes, at least 32 are needed", r.stderr)
        self.assertEqual(r.stdout, "")
        r = ferry("token", "--secret-file", os.path.join(self.dir.name, "missing"), "--sub", "a")
        self.assertEqual(r.returncode, 1)
        self.assertIn("No such file or directory", r.stderr)
        for args, text in ((["--sub", "a"], "--secret-file is required"),
                           (["--secret-file", self.secret_file], "--sub is required"),
                           (["--secret-file", self.secret_file, "--sub", "a", "--ttl", "0"], "--ttl"),
                           (["--secret-file", self.secret_file, "--sub", "a", "--ttl", "5y"], "--ttl"),
                           (["--secret-file", self.secret_file, "--sub", "a", "--tunnels", "Bad"],
                            "is not a tunnel name"),
                           (["--secret-file", self.secret_file, "--sub", "a", "--bogus", "1"],
                            "unknown flag --bogus")):
            with self.subTest(args=args):
                r = ferry("token", *args)
                self.assertEqual(r.returncode, 2, r.stderr)
                self.assertIn(text, r.stderr)
                self.assertEqual(r.stdout, "")
        r = ferry("token", "inspect", "not.a.token")
        self.assertEqual(r.returncode, 1)
        self.assertIn("not a readable JWT", r.stderr)

    def test_dispatcher(self):
        r = ferry("version")
        self.assertEqual(r.returncode, 0)
        self.assertRegex(r.stdout, r"^ferry \d+\.\d+\.\d+\n$")
        r = ferry("frobnicate")
        self.assertEqual(r.returncode, 2)
        self.assertIn('unknown command "frobnicate"', r.stderr)
        r = ferry("help")
        self.assertEqual(r.returncode, 0)
        for cmd in ("agent", "connect", "token", "version"):
            self.assertIn(cmd, r.stdout)
        r = ferry("help", "config-reference")
        self.assertEqual(r.returncode, 0)
        self.assertIn("| `jwt_secret_file` | `--jwt-secret-file` | `FERRY_JWT_SECRET_FILE` |", r.stdout)
        r = ferry("token", "--help")
        self.assertEqual(r.returncode, 0)
        self.assertIn("ferry token inspect", r.stdout)


if __name__ == "__main__":
    unittest.main(verbosity=2)
