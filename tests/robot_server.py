#!/usr/bin/env python3
"""A loopback group-robot server for the tests: 企业微信 webhooks and 钉钉
custom robots in one process.

It behaves like the real APIs where manyi depends on them: the 企业微信 key and
the 钉钉 access token must be the configured ones, 钉钉's 加签 signature is
checked (HMAC-SHA256 of "{timestamp}\\n{secret}", base64, URL-encoded) with
its one-hour timestamp window, markdown (4096 bytes) and text (2048 bytes)
limits are enforced, an image's base64 must match its md5 and stay under
2 MB, a file message must name a media_id this server issued from
upload_media, and a robot sending more than --per-window messages in
--window seconds is throttled (45009 / 130101). Every answer is HTTP 200
with {"errcode": …, "errmsg": …}, as the real ones are.

Faults on request, by the number of the send request (1-based, uploads not
counted): --fail N:throttle (45009 / 130101), --fail N:500 (HTTP 500),
--fail N:drop (the connection is closed without an answer). A wrong key is
a matter of the client's configuration.

Accepted messages are appended to --log as JSON lines:
{"api": "wecom"|"dingtalk", "robot": key or token, "body": {...}}; uploads
as {"api": "upload", "robot": key, "media_id": …, "filename": …, "size": …}.
Prints "PORT n" once listening.
"""

import argparse
import base64
import hashlib
import hmac
import json
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()
STATE = {"sends": 0, "media": {}, "recent": {}}


def parse_args():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--log", required=True)
    p.add_argument("--wecom-key", action="append", default=[])
    p.add_argument("--dingtalk", action="append", default=[], help="TOKEN:SECRET")
    p.add_argument("--per-window", type=int, default=20)
    p.add_argument("--window", type=float, default=60.0)
    p.add_argument("--fail", action="append", default=[], help="N:throttle|500|drop")
    return p.parse_args()


ARGS = parse_args()
FAULTS = {}
for spec in ARGS.fail:
    n, kind = spec.split(":", 1)
    FAULTS[int(n)] = kind
DINGTALK = dict(s.split(":", 1) for s in ARGS.dingtalk)


def log(entry):
    with LOCK:
        with open(ARGS.log, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry, ensure_ascii=False) + "\n")


def throttled(robot):
    """A sliding window per robot, like the platforms' 20 per minute."""
    now = time.monotonic()
    with LOCK:
        recent = [t for t in STATE["recent"].get(robot, []) if now - t < ARGS.window]
        if len(recent) >= ARGS.per_window:
            STATE["recent"][robot] = recent
            return True
        recent.append(now)
        STATE["recent"][robot] = recent
        return False


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def answer(self, errcode, errmsg, status=200, **extra):
        body = json.dumps({"errcode": errcode, "errmsg": errmsg, **extra}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        url = urllib.parse.urlsplit(self.path)
        q = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
        raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if url.path == "/cgi-bin/webhook/upload_media":
            return self.upload(q, raw)
        if url.path not in ("/cgi-bin/webhook/send", "/robot/send"):
            return self.answer(404, "not found", status=404)
        with LOCK:
            STATE["sends"] += 1
            n = STATE["sends"]
        fault = FAULTS.get(n)
        wecom = url.path == "/cgi-bin/webhook/send"
        if fault == "drop":
            self.close_connection = True
            self.connection.shutdown(2)
            return
        if fault == "500":
            return self.answer(-1, "internal error", status=500)
        if fault == "throttle":
            return self.throttle(wecom)
        if wecom:
            self.wecom(q, raw)
        else:
            self.dingtalk(q, raw)

    def throttle(self, wecom):
        if wecom:
            return self.answer(45009, "api freq out of limit")
        return self.answer(130101, "send too fast, exceed 20 times per minute")

    def upload(self, q, raw):
        key = q.get("key", "")
        if key not in ARGS.wecom_key:
            return self.answer(93000, "invalid webhook url")
        if q.get("type") != "file":
            return self.answer(40004, "invalid media type")
        ctype = self.headers.get("Content-Type", "")
        if "boundary=" not in ctype:
            return self.answer(40005, "invalid file type")
        boundary = ctype.split("boundary=", 1)[1].encode()
        parts = raw.split(b"--" + boundary)
        media = next((p for p in parts if b'name="media"' in p), None)
        if media is None:
            return self.answer(40005, "no media part")
        head, _, content = media.partition(b"\r\n\r\n")
        content = content[:-2] if content.endswith(b"\r\n") else content
        if len(content) < 5 or len(content) > 20 * 1024 * 1024:
            return self.answer(40006, "invalid file size")
        filename = head.split(b'filename="', 1)[1].split(b'"', 1)[0].decode("utf-8", "replace")
        media_id = hashlib.sha1(content).hexdigest()
        with LOCK:
            STATE["media"][media_id] = filename
        log({"api": "upload", "robot": key, "media_id": media_id, "filename": filename, "size": len(content)})
        self.answer(0, "ok", type="file", media_id=media_id, created_at=str(int(time.time())))

    def wecom(self, q, raw):
        key = q.get("key", "")
        if key not in ARGS.wecom_key:
            return self.answer(93000, "invalid webhook url, please check")
        try:
            body = json.loads(raw)
        except ValueError:
            return self.answer(40008, "invalid message type")
        problem = check_wecom(body)
        if problem:
            return self.answer(*problem)
        if throttled(key):
            return self.answer(45009, "api freq out of limit")
        log({"api": "wecom", "robot": key, "body": body})
        self.answer(0, "ok")

    def dingtalk(self, q, raw):
        token = q.get("access_token", "")
        if token not in DINGTALK:
            return self.answer(300001, "token is not exist")
        secret = DINGTALK[token]
        try:
            ts = int(q.get("timestamp", ""))
        except ValueError:
            return self.answer(310000, "sign not match, timestamp missing")
        if abs(time.time() * 1000 - ts) > 3600 * 1000:
            return self.answer(310000, "sign not match, timestamp is out of the one-hour window")
        mac = hmac.new(secret.encode(), f"{ts}\n{secret}".encode(), hashlib.sha256).digest()
        # parse_qsl has decoded the URL encoding already.
        if not hmac.compare_digest(base64.b64encode(mac).decode(), q.get("sign", "")):
            return self.answer(310000, "sign not match")
        try:
            body = json.loads(raw)
        except ValueError:
            return self.answer(43004, "invalid json")
        problem = check_dingtalk(body)
        if problem:
            return self.answer(*problem)
        if throttled(token):
            return self.answer(130101, "send too fast, exceed 20 times per minute")
        log({"api": "dingtalk", "robot": token, "body": body})
        self.answer(0, "ok")


def check_wecom(body):
    t = body.get("msgtype")
    if t == "markdown":
        c = body.get("markdown", {}).get("content", "")
        if not c:
            return (44004, "markdown content is empty")
        if len(c.encode()) > 4096:
            return (40058, "markdown.content exceed max length 4096")
    elif t == "text":
        c = body.get("text", {}).get("content", "")
        if len(c.encode()) > 2048:
            return (40058, "text.content exceed max length 2048")
    elif t == "image":
        img = body.get("image", {})
        data = base64.b64decode(img.get("base64", ""))
        if len(data) > 2 * 1024 * 1024:
            return (40009, "invalid image size")
        if hashlib.md5(data).hexdigest() != img.get("md5"):
            return (301019, "media md5 not match")
    elif t == "file":
        if body.get("file", {}).get("media_id") not in STATE["media"]:
            return (40007, "invalid media_id")
    else:
        return (40008, "invalid message type")
    return None


def check_dingtalk(body):
    t = body.get("msgtype")
    if t == "markdown":
        md = body.get("markdown", {})
        if not md.get("title") or not md.get("text"):
            return (400105, "markdown title and text are required")
        if len(md["text"].encode()) > 20000:
            return (460101, "message too long")
    elif t == "text":
        if not body.get("text", {}).get("content"):
            return (400105, "text content is required")
    else:
        return (400105, "unsupported msgtype")
    return None


def main():
    server = ThreadingHTTPServer(("127.0.0.1", ARGS.port), Handler)
    print(f"PORT {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
