#!/usr/bin/env python3
"""A loopback stand-in for the provincial 好差评 platform and the 问卷星 OpenAPI.

Started by the integration tests and the collect benchmark:

    platform_server.py CONTROL.json

It binds 127.0.0.1 on a free port, prints "PORT <n>" on stdout, and serves
until killed. On every request it re-reads CONTROL.json, so a test changes the
platform's data between runs by rewriting the file. CONTROL.json:

    {
      "app_key": "...", "secret": "...", "signature": "hex" | "base64",
      "records": [ {...}, ... ],          # 好差评 records, served as they are
      "generate": {"count": N},           # or: N synthetic records (benchmark)
      "faults": [ {"page": 2, "kind": "429", "times": 1, "retry_after": 1},
                  {"page": 3, "kind": "500", "times": 1},
                  {"page": 4, "kind": "truncate", "times": 1},
                  {"page": 5, "kind": "slow", "secs": 0.5, "times": 100} ],
      "wjx": {"appid": "...", "appkey": "...", "rows": [ {...}, ... ]}
    }

A fault fires for the first `times` requests of its page (counted per server
process): "429" answers 429 with Retry-After, "500" answers 500, "truncate"
announces the whole body in Content-Length, sends half of it and closes the
connection, "slow" waits `secs` before answering normally (a platform under
load; the kill test uses it so that a run lasts long enough to be killed
however fast manyi reads). Every request is logged as a JSON line to CONTROL.json + ".log"
(page, status, time) so tests can check what the client did.

The 好差评 request is POST /api/evaluation/list with the JSON body
{"page", "size", "startTime", "endTime"} and the headers X-App-Key,
X-Timestamp and X-Signature = HMAC-SHA256(secret, timestamp + body); a wrong
key or signature gets 401. Records are filtered to the window by assessTime,
ordered by (assessTime, projectNo, assessNumber) and paged. A record's
assessTime may be written as the platform likes (Unix seconds or
milliseconds, ISO 8601 with an offset, 年月日时分秒, a fraction of a second):
the window and the order go by the moment it names in Beijing time, as a
platform's own database would.
"""

import base64
import hashlib
import hmac
import json
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CONTROL = sys.argv[1]
LOG = CONTROL + ".log"
FIRED = {}
LOCK = threading.Lock()
GEN_CACHE = {}


BEIJING = timezone(timedelta(hours=8))


def moment(value):
    """A record's assessTime as "YYYY-MM-DD HH:MM:SS" in Beijing time."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        secs = value / 1000 if value >= 10**11 else value
        return datetime.fromtimestamp(int(secs), BEIJING).strftime("%Y-%m-%d %H:%M:%S")
    text = str(value or "")
    for fmt in ("%Y年%m月%d日 %H时%M分%S秒", "%Y年%m月%d日 %H:%M:%S"):
        try:
            return datetime.strptime(text, fmt).strftime("%Y-%m-%d %H:%M:%S")
        except ValueError:
            pass
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return text
    if t.tzinfo is not None:
        t = t.astimezone(BEIJING)
    return t.strftime("%Y-%m-%d %H:%M:%S")


def control():
    with open(CONTROL, encoding="utf-8") as f:
        return json.load(f)


def generated(n):
    """N synthetic records, one per 2 seconds from 2026-10-01, deterministic."""
    if n in GEN_CACHE:
        return GEN_CACHE[n]
    communities = ["369901001001", "369901001002", "369901001003"]
    cats = ["YL", "TY", "WS", "JY"]
    base = time.mktime((2026, 10, 1, 0, 0, 0, 0, 0, -1))
    out = []
    for i in range(n):
        t = time.localtime(base + i * 2)
        level = 5 - (i * 7 % 11) % 5
        out.append({
            "projectNo": "GEN%09d" % i,
            "assessNumber": 1,
            "areaCode": communities[i % 3],
            "deptCode": "11369901MB0000000X",
            "taskCode": cats[i % 4],
            "taskHandleItem": "事项%d" % (i % 50),
            "pf": 1 + i % 7,
            "satisfaction": level,
            "evalDetail": "501,502" if level <= 2 else "",
            "writingEvaluation": "",
            "assessTime": time.strftime("%Y-%m-%d %H:%M:%S", t),
            "userProp": 1,
            "anonymityFlag": 2,
            "reformStatus": 1 if level <= 2 else 0,
        })
    GEN_CACHE[n] = out
    return out


def log(entry):
    with LOCK:
        with open(LOG, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def send(self, status, body, headers=()):
        data = json.dumps(body, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)
        return data

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        raw = self.rfile.read(length)
        ctl = control()
        try:
            req = json.loads(raw)
        except ValueError:
            return self.send(400, {"code": 400, "msg": "body is not JSON"})
        if self.path.startswith("/openapi"):
            return self.wjx(ctl, req)
        return self.haochaping(ctl, raw, req)

    def fault(self, ctl, page):
        for k, f in enumerate(ctl.get("faults", [])):
            if f.get("page") != page:
                continue
            with LOCK:
                n = FIRED.get(k, 0)
                if n >= f.get("times", 1):
                    continue
                FIRED[k] = n + 1
            return f
        return None

    def haochaping(self, ctl, raw, req):
        ts = self.headers.get("X-Timestamp", "")
        mac = hmac.new(ctl["secret"].encode(), ts.encode() + raw, hashlib.sha256).digest()
        want = base64.b64encode(mac).decode() if ctl.get("signature") == "base64" else mac.hex()
        page = int(req.get("page", 1))
        if self.headers.get("X-App-Key") != ctl["app_key"] or not hmac.compare_digest(self.headers.get("X-Signature", ""), want):
            log({"page": page, "status": 401, "t": time.time()})
            return self.send(401, {"code": 401, "msg": "签名校验失败"})
        f = self.fault(ctl, page)
        if f and f["kind"] == "slow":
            time.sleep(float(f.get("secs", 1)))
            f = None
        if f and f["kind"] == "429":
            log({"page": page, "status": 429, "t": time.time()})
            return self.send(429, {"code": 429, "msg": "请求过于频繁"}, [("Retry-After", str(f.get("retry_after", 1)))])
        if f and f["kind"] == "500":
            log({"page": page, "status": 500, "t": time.time()})
            return self.send(500, {"code": 500, "msg": "系统繁忙"})
        if "generate" in ctl:
            records = generated(int(ctl["generate"]["count"]))
        else:
            records = ctl.get("records", [])
        begin, end = req.get("startTime", ""), req.get("endTime", "9999")
        inside = [r for r in records if begin <= moment(r.get("assessTime")) <= end] if "generate" not in ctl else records
        if "generate" not in ctl:
            inside.sort(key=lambda r: (moment(r.get("assessTime")), str(r.get("projectNo", "")), str(r.get("assessNumber", ""))))
        size = int(req.get("size", 100))
        chunk = inside[(page - 1) * size: page * size]
        body = {"code": 200, "msg": "ok", "data": {"page": page, "size": size, "total": len(inside), "records": chunk}}
        if f and f["kind"] == "truncate":
            data = json.dumps(body, ensure_ascii=False).encode("utf-8")
            log({"page": page, "status": "truncated", "t": time.time()})
            self.send_response(200)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            return None
        log({"page": page, "status": 200, "t": time.time(), "n": len(chunk)})
        self.send(200, body)

    def wjx(self, ctl, req):
        w = ctl.get("wjx", {})
        # Assumed rule (see src/collect/wjx_api.rs): sha1 of the values of all
        # other parameters ordered by name, then the appkey.
        text = "".join(str(req[k]) for k in sorted(req) if k != "sign") + w.get("appkey", "")
        if req.get("appid") != w.get("appid") or req.get("sign") != hashlib.sha1(text.encode()).hexdigest():
            return self.send(200, {"result": False, "errormsg": "sign error"})
        if req.get("action") != "1001002" or int(req.get("page_size", 0)) > 50:
            return self.send(200, {"result": False, "errormsg": "bad action or page_size"})
        page, size = int(req["page_index"]), int(req["page_size"])
        rows = w.get("rows", [])
        log({"wjx_page": page, "status": 200, "t": time.time()})
        self.send(200, {"result": True, "data": {"total_count": len(rows), "page_index": page, "rows": rows[(page - 1) * size: page * size]}})


def main():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print("PORT %d" % srv.server_address[1], flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
