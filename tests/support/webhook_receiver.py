#!/usr/bin/env python3
"""A webhook receiver for the tests, written the way a user's receiver would be (see the
README's "Webhooks" section): it verifies idgraph's signature with the standard library
only, and fails on purpose when told to.

    webhook_receiver.py DIR SECRET [--cert C --key K] [--fail-first N] [--poison TEXT]

- Listens on a free loopback port (TLS with --cert/--key) and writes it to DIR/port.
- Every request: the signature header `Idgraph-Signature: t=<unix>,v1=<hex>` must be
  HMAC-SHA256(SECRET, "<t>." + body) and `t` at most 300 s old, else 401.
- The first N requests (--fail-first) answer 503; a body containing TEXT (--poison)
  answers 500 unless the file DIR/accept_poison exists.
- Accepted bodies are appended to DIR/received.jsonl, every attempt's status to
  DIR/attempts.jsonl.
"""

import argparse
import hashlib
import hmac
import json
import os
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("dir")
    p.add_argument("secret")
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--fail-first", type=int, default=0)
    p.add_argument("--poison")
    args = p.parse_args()
    state = {"seen": 0}

    def log(name, obj):
        with LOCK:
            with open(os.path.join(args.dir, name), "a") as f:
                f.write(json.dumps(obj) + "\n")

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def answer(self, status):
            log("attempts.jsonl", {"status": status, "delivery": self.headers.get("Idgraph-Delivery")})
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            header = self.headers.get("Idgraph-Signature", "")
            parts = dict(kv.split("=", 1) for kv in header.split(",") if "=" in kv)
            try:
                t = int(parts.get("t", ""))
            except ValueError:
                return self.answer(401)
            expected = hmac.new(args.secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
            if not hmac.compare_digest(expected, parts.get("v1", "")) or abs(time.time() - t) > 300:
                return self.answer(401)
            with LOCK:
                state["seen"] += 1
                seen = state["seen"]
            if seen <= args.fail_first:
                return self.answer(503)
            if args.poison and args.poison.encode() in body and not os.path.exists(
                os.path.join(args.dir, "accept_poison")
            ):
                return self.answer(500)
            log(
                "received.jsonl",
                {
                    "delivery": self.headers.get("Idgraph-Delivery"),
                    "webhook": self.headers.get("Idgraph-Webhook"),
                    "body": json.loads(body),
                },
            )
            self.answer(200)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    if args.cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.cert, args.key)
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
    tmp = os.path.join(args.dir, "port.tmp")
    with open(tmp, "w") as f:
        f.write(str(server.server_address[1]))
    os.rename(tmp, os.path.join(args.dir, "port"))
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
