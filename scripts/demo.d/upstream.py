#!/usr/bin/python3
"""The demo's private service: streams NDJSON lines slowly, like an LLM answering.

GET /stream[?lines=N&delay=S]  chunked NDJSON, one line every S seconds (default 8 x 0.5 s)
GET /                          a short text answer
Usage: upstream.py PORT
"""
import http.server
import json
import sys
import time
import urllib.parse

WORDS = "ferry carries each token through the tunnel the moment it is produced".split()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        sys.stderr.write("upstream: " + (fmt % args) + "\n")

    def do_GET(self):
        u = urllib.parse.urlsplit(self.path)
        q = dict(urllib.parse.parse_qsl(u.query))
        if u.path == "/stream":
            lines = min(int(q.get("lines", "8")), 1000)
            delay = min(float(q.get("delay", "0.5")), 10.0)
            self.send_response(200)
            self.send_header("Content-Type", "application/x-ndjson")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(lines):
                line = json.dumps({"i": i, "token": WORDS[i % len(WORDS)],
                                   "produced_at": round(time.time(), 3)}).encode() + b"\n"
                self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
                self.wfile.flush()
                time.sleep(delay)
            self.wfile.write(b"0\r\n\r\n")
            return
        body = b"hello from the demo upstream behind the ferry agent\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True


if __name__ == "__main__":
    srv = Server(("127.0.0.1", int(sys.argv[1])), Handler)
    print(f"upstream: listening on 127.0.0.1:{srv.server_address[1]}", flush=True)
    srv.serve_forever()
