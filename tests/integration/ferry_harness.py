"""Shared pieces of the relay integration tests: real processes on loopback.

Relay       ferryd on 127.0.0.1:0 with a data dir, an HS256 secret and its stderr (JSON log lines)
            collected so tests can wait for events instead of sleeping.
Upstream    a threaded HTTP/1.1 server standing for the agent's private service: /hello,
            /echo (sha256 of the body), /bytes?n= (a deterministic stream), /ndjson (slow lines,
            like an LLM), /slow?s=.
mint()      HS256 tokens with PyJWT (an independent JWT implementation); agent_token() adds
            the agent scope.
SshAgent    OpenSSH `ssh -N -R NAME:80:127.0.0.1:PORT` with ProxyCommand = a WebSocket bridge, so
            the SSH session runs inside the relay's /tunnel WebSocket like a ferry agent's.
"""
import hashlib
import http.server
import json
import os
import queue
import shutil
import socket
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

import jwt

HERE = os.path.dirname(os.path.abspath(__file__))
SECRET = b"integration-test-secret-0123456789abcdef"


def mint(sub, ttl=3600, tunnels=None, secret=SECRET, alg="HS256", headers=None, **claims):
    now = int(time.time())
    body = {"sub": sub, "iat": now, "exp": now + ttl}
    if tunnels is not None:
        body["ferry_tunnels"] = tunnels
    body.update(claims)
    return jwt.encode(body, secret, algorithm=alg, headers=headers)


def agent_token(sub, **kw):
    """A token meant for an agent: the relay lets only tokens with the `ferry:agent` scope
    register tunnels (docs/security.md); it works as the owner's consumer token too."""
    return mint(sub, scope="ferry:agent", **kw)


def pattern(n, seed=7):
    """n deterministic bytes (cheap to produce and to check on both sides)."""
    block = hashlib.sha256(str(seed).encode()).digest() * 2048  # 64 KiB
    full, rest = divmod(n, len(block))
    return block * full + block[:rest]


class LogReader:
    """Collects a process's stderr lines in a thread; wait_for() blocks until one matches."""

    def __init__(self, stream):
        self.stream = stream
        self.lines = []
        self.cv = threading.Condition()
        self.t = threading.Thread(target=self._run, args=(stream,), daemon=True)
        self.t.start()

    def _run(self, stream):
        for line in stream:
            with self.cv:
                self.lines.append(line.rstrip("\n"))
                self.cv.notify_all()

    def _wait(self, check, timeout, failure):
        """Under the lock, until check() returns something other than None (returned), or
        raises AssertionError(failure()) after `timeout` seconds."""
        deadline = time.time() + timeout
        with self.cv:
            while True:
                v = check()
                if v is not None:
                    return v
                left = deadline - time.time()
                if left <= 0:
                    raise AssertionError(failure() + "; log:\n" + "\n".join(self.lines[-40:]))
                self.cv.wait(left)

    @staticmethod
    def _matches(text):
        want = text if isinstance(text, (list, tuple)) else [text]
        return want, lambda line: all(w in line for w in want)

    def wait_for(self, text, timeout=15, start=0):
        """Index of the first line at or after `start` containing `text` (all of them if a
        list), or raises."""
        want, match = self._matches(text)
        return self._wait(lambda: next((i for i in range(start, len(self.lines)) if match(self.lines[i])), None),
                          timeout, lambda: f"no log line with {want} in {timeout}s")

    def wait_count(self, text, n, timeout=15, start=0):
        """Blocks until at least `n` lines at or after `start` contain `text` (all of them if a
        list); returns the count, or raises."""
        want, match = self._matches(text)
        count = lambda: sum(1 for l in self.lines[start:] if match(l))
        return self._wait(lambda: (lambda got: got if got >= n else None)(count()), timeout,
                          lambda: f"{count()} of {n} log lines with {want} in {timeout}s")

    def close(self):
        """After the process exited: wait for the last lines, then close the pipe (a child that
        inherited it may keep it open: then it is left to the garbage collector)."""
        self.t.join(timeout=2)
        if not self.t.is_alive():
            self.stream.close()

    def count(self, text):
        with self.cv:
            return sum(1 for l in self.lines if text in l)

    def text(self):
        with self.cv:
            return "\n".join(self.lines)


class Relay:
    def __init__(self, ferryd, *extra, shards=2, data_dir=None, port=0, tls=False, nofile=None):
        """`nofile`: RLIMIT_NOFILE (soft and hard) for ferryd, to test running out of fds."""
        self.owns_dir = data_dir is None
        self.dir = data_dir or tempfile.mkdtemp(prefix="ferry-relay-")
        self.secret_file = os.path.join(self.dir, "jwt.secret")
        with open(os.open(self.secret_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as f:
            f.write(SECRET)
        args = [ferryd, "--listen", f"127.0.0.1:{port}", "--admin-listen", "",
                "--data-dir", self.dir, "--jwt-secret-file", self.secret_file,
                "--shards", str(shards), "--log-level", "debug"]
        if not tls:
            args.append("--no-tls")
        preexec = None
        if nofile:
            import resource

            def preexec():
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
        self.proc = subprocess.Popen(args + list(extra), stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, preexec_fn=preexec)
        self.log = LogReader(self.proc.stderr)
        self.port = self._port_line("listening on")
        self.url = f"http://127.0.0.1:{self.port}"
        # The raw SSH listener says where it is next.
        self.ssh_port = self._port_line("ssh listening on") if "--ssh-listen" in extra else None

    def _port_line(self, what):
        line = self.proc.stdout.readline()
        if what not in line:
            self.proc.kill()
            self.proc.wait()
            raise RuntimeError(f"ferryd did not start ({what}): " + line + self.log.text())
        return int(line.strip().rsplit(":", 1)[1])

    def alive(self):
        return self.proc.poll() is None

    def stop(self, sig=None):
        if self.proc.poll() is None:
            if sig:
                self.proc.send_signal(sig)
            else:
                self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()
        self.log.close()
        return self.proc.returncode

    def cleanup(self):
        if self.owns_dir:
            shutil.rmtree(self.dir, ignore_errors=True)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def _send(self, code, body, ctype="text/plain"):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        u = urllib.parse.urlsplit(self.path)
        q = dict(urllib.parse.parse_qsl(u.query))
        if getattr(self, "drop_next", False):
            # /drop-next marked this connection: close it without answering (an upstream's
            # keep-alive timeout firing just as a request arrives).
            self.server.seen.put({"path": self.path, "headers": dict(self.headers.items()),
                                  "method": self.command, "peer": self.client_address[1], "dropped": True})
            self.close_connection = True
            return None
        if u.path == "/drop-next":
            self.drop_next = True
        self.server.seen.put({"path": self.path, "headers": dict(self.headers.items()),
                              "method": self.command, "peer": self.client_address[1]})
        if u.path == "/hello":
            return self._send(200, b"hello from upstream\n")
        if u.path == "/drop-next":
            return self._send(200, b"marked\n")
        if u.path == "/close":  # answers, then closes the connection (Connection: close)
            self.close_connection = True
            self.send_response(200)
            self.send_header("Content-Length", "4")
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(b"bye\n")
            return None
        if u.path == "/quiet-close":  # a keep-alive answer, then closes anyway (an idle timeout)
            self.close_connection = True
            return self._send(200, b"quiet\n")
        if u.path == "/headers":
            return self._send(200, json.dumps(dict(self.headers.items())).encode(), "application/json")
        if u.path == "/bytes":
            n = int(q.get("n", "0"))
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(n))
            self.end_headers()
            block = pattern(1 << 20)
            left = n
            while left > 0:
                k = min(left, len(block))
                self.wfile.write(block[:k])
                left -= k
            return None
        if u.path == "/ndjson":
            lines = int(q.get("lines", "5"))
            delay = float(q.get("delay", "0.3"))
            self.send_response(200)
            self.send_header("Content-Type", "application/x-ndjson")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(lines):
                line = json.dumps({"i": i, "t": time.time()}).encode() + b"\n"
                self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
                self.wfile.flush()
                time.sleep(delay)
            self.wfile.write(b"0\r\n\r\n")
            return None
        if u.path == "/slow":
            time.sleep(float(q.get("s", "1")))
            return self._send(200, b"slow\n")
        return self._send(404, b"no such path upstream\n")

    def do_POST(self):
        if getattr(self, "drop_next", False):  # see do_GET: closed without an answer,
            left = int(self.headers.get("Content-Length", "0"))  # after the whole body arrived
            while left > 0:
                data = self.rfile.read(min(left, 1 << 16))
                if not data:
                    break
                left -= len(data)
            self.server.seen.put({"path": self.path, "headers": dict(self.headers.items()),
                                  "method": self.command, "peer": self.client_address[1], "dropped": True})
            self.close_connection = True
            return None
        self.server.seen.put({"path": self.path, "headers": dict(self.headers.items()),
                              "method": self.command, "peer": self.client_address[1]})
        h = hashlib.sha256()
        n = 0
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                data = self.rfile.read(size)
                h.update(data)
                n += len(data)
                self.rfile.readline()
        else:
            left = int(self.headers.get("Content-Length", "0"))
            while left > 0:
                data = self.rfile.read(min(left, 1 << 20))
                if not data:
                    break
                h.update(data)
                n += len(data)
                left -= len(data)
        return self._send(200, json.dumps({"sha256": h.hexdigest(), "length": n}).encode(),
                          "application/json")


_Handler.do_PUT = _Handler.do_POST


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 512


class Upstream:
    def __init__(self):
        self.server = _Server(("127.0.0.1", 0), _Handler)
        self.server.seen = queue.Queue()
        self.port = self.server.server_address[1]
        self.t = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.t.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def write_token(directory, token, name="token"):
    path = os.path.join(directory, name)
    with open(path, "w") as f:
        f.write(token)
    os.chmod(path, 0o600)
    return path


def serve_in_threads(listener, handle):
    """Accepts connections on the listening socket in a daemon thread and runs handle(conn) for
    each in a daemon thread of its own, until the listener is closed."""
    def accept():
        while True:
            try:
                c, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=handle, args=(c,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()


def stop_process(proc, kill=False, timeout=10):
    """SIGTERM (or SIGKILL), then SIGKILL if it has not exited within `timeout` s; the exit code."""
    if proc.poll() is None:
        if kill:
            proc.kill()
        else:
            proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


class SshAgent:
    """OpenSSH as a ferry agent: the SSH session runs inside the relay's WebSocket, through
    `proxy` (a ProxyCommand template with {url} and {token_file})."""

    def __init__(self, relay_port, token_file, forwards, proxy=None, user="agent"):
        if proxy is None:
            proxy = f"{sys.executable} {HERE}/ws_stdio_bridge.py {{url}} {{token_file}}"
        cmd = proxy.format(url=f"ws://127.0.0.1:{relay_port}/tunnel", token_file=token_file)
        args = ["ssh", "-N", "-v", "-o", f"ProxyCommand={cmd}",
                "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                "-o", "ExitOnForwardFailure=no", "-o", "BatchMode=yes",
                "-o", "ServerAliveInterval=5", "-F", "/dev/null"]
        for name, port in forwards:
            args += ["-R", f"{name}:80:127.0.0.1:{port}"]
        args.append(f"{user}@ferry-relay")
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True)
        self.log = LogReader(self.proc.stderr)

    def stop(self, kill=False):
        rc = stop_process(self.proc, kill=kill, timeout=10)
        self.log.close()
        return rc


class RawSshAgent:
    """OpenSSH straight into ferryd's raw SSH listener (ssh_listen), no WebSocket: `ssh -N -R
    NAME:80:127.0.0.1:PORT USER@relay`, the password (a JWT) given by SSH_ASKPASS."""

    def __init__(self, ssh_port, token_file, forwards, user, tmp):
        askpass = os.path.join(tmp, f"askpass-{user}-{os.path.basename(token_file)}")
        with open(askpass, "w") as f:
            f.write(f"#!/bin/sh\nexec cat {token_file}\n")
        os.chmod(askpass, 0o700)
        args = ["ssh", "-N", "-v", "-p", str(ssh_port), "-F", "/dev/null",
                "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                "-o", "PreferredAuthentications=password", "-o", "PubkeyAuthentication=no",
                "-o", "NumberOfPasswordPrompts=1", "-o", "ExitOnForwardFailure=no",
                "-o", "ServerAliveInterval=5"]
        for name, port in forwards:
            args += ["-R", f"{name}:80:127.0.0.1:{port}"]
        args.append(f"{user}@127.0.0.1")
        env = dict(os.environ, SSH_ASKPASS=askpass, SSH_ASKPASS_REQUIRE="force", DISPLAY=":0")
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)
        self.log = LogReader(self.proc.stderr)

    def stop(self, kill=False):
        rc = stop_process(self.proc, kill=kill, timeout=10)
        self.log.close()
        return rc


class FerryAgent:
    """`ferry agent` (the binary `ferry`) serving `tunnels` [(name, port)] through the relay on
    `relay_port` (ws://), its known_hosts in `tmp`; stderr (JSON lines) collected in `log`."""

    def __init__(self, ferry, relay_port, token_file, tunnels, tmp, *extra):
        args = [ferry, "agent", "--relay", f"ws://127.0.0.1:{relay_port}", "--token-file", token_file,
                "--known-hosts", os.path.join(tmp, "known_hosts"), *extra]
        for name, port in tunnels:
            args += ["--tunnel", f"{name}=127.0.0.1:{port}"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.log = LogReader(self.proc.stderr)

    def stop(self):
        running = self.proc.poll() is None
        rc = stop_process(self.proc, timeout=20)
        if running:
            self.log.close()
        return rc


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p
