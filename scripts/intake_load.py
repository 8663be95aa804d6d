#!/usr/bin/env python3
"""Load test of the QR-code intake on loopback (a command, not a timed test).

Generates the demo city, starts `manyi intake` on a free port, posts
submissions from concurrent clients at --rate per second for --seconds
while a collect and a report run go on, stops the server, then checks that
every acknowledged submission is in the store exactly once (landing file,
catalog, and the curated Parquet files read by DuckDB when it is installed).
Prints the latency percentiles.

    scripts/intake_load.py --bin target/release/manyi --seconds 60 --rate 250
"""
import argparse
import http.client
import json
import os
import re
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

SECRET = "load-test-secret-0123456789"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def worker(w, port, path, per_second, until, acked, latencies, failures):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    i = 0
    start = time.monotonic()
    while time.monotonic() < until:
        due = start + i / per_second
        now = time.monotonic()
        if due > now:
            time.sleep(due - now)
        marker = f"load-{w}-{i}"
        level = 5 - (i % 5)
        body = f"level={level}&step=2&comment={marker}"
        if level <= 2:
            body += "&reason=" + urllib.parse.quote("等候时间长")
        t0 = time.monotonic()
        try:
            conn.request("POST", path, body, {"content-type": "application/x-www-form-urlencoded", "x-forwarded-for": f"10.{w}.{i // 250 % 250}.{i % 250}"})
            resp = conn.getresponse()
            text = resp.read().decode("utf-8", "replace")
            if resp.status == 200 and "感谢" in text:
                latencies.append(time.monotonic() - t0)
                acked.append(marker)
            else:
                failures.append(resp.status)
        except (OSError, http.client.HTTPException) as e:
            failures.append(str(e))
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        i += 1


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))] * 1000 if xs else float("nan")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.environ.get("MANYI_BIN", "target/debug/manyi"))
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--rate", type=float, default=250)
    ap.add_argument("--workers", type=int, default=32)
    ap.add_argument("--no-background", action="store_true", help="no collect and report runs during the load")
    args = ap.parse_args()
    binary = os.path.abspath(args.bin)
    tmp = tempfile.mkdtemp(prefix="manyi-load-")
    demo = os.path.join(tmp, "demo")
    subprocess.run([binary, "demo", "--dir", demo], check=True, stdout=subprocess.DEVNULL)
    cfg_path = os.path.join(demo, "manyi.toml")
    port = free_port()
    cfg = open(cfg_path, encoding="utf-8").read()
    cfg = cfg.replace('listen = "127.0.0.1:8088"', f'listen = "127.0.0.1:{port}"\ncommit_every_ms = 1000\nper_client_per_minute = 1000000\n'
                      'per_code_per_minute = 1000000\nrepeat_window_minutes = 0\ntrust_proxy = true')
    open(cfg_path, "w", encoding="utf-8").write(cfg)
    point = re.search(r'id = "(c\d+-meals)"', cfg).group(1)
    env = dict(os.environ, MANYI_CONFIG=cfg_path, MANYI_INTAKE_SECRET=SECRET)
    log = open(os.path.join(tmp, "intake.log"), "w")
    server = subprocess.Popen([binary, "intake"], cwd=demo, env=env, stderr=log, stdout=subprocess.DEVNULL)
    for _ in range(300):
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", "/healthz")
            if c.getresponse().status == 200:
                break
        except OSError:
            time.sleep(0.1)
    background = []
    if not args.no_background:
        background.append(subprocess.Popen([binary, "collect"], cwd=demo, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        background.append(subprocess.Popen([binary, "run", "monthly-report", "--resend"], cwd=demo, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    acked, latencies, failures = [], [], []
    until = time.monotonic() + args.seconds
    per_worker = args.rate / args.workers
    t0 = time.monotonic()
    threads = [threading.Thread(target=worker, args=(w, port, f"/p/{point}", per_worker, until, acked, latencies, failures)) for w in range(args.workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - t0
    for b in background:
        b.wait()
    server.terminate()
    server.wait(timeout=60)
    ok = verify(demo, acked)
    print(f"submissions acknowledged: {len(acked)} in {elapsed:.1f}s = {len(acked) / elapsed:.0f}/s; refused or failed: {len(failures)}")
    print("latency ms: p50 %.1f  p90 %.1f  p99 %.1f  p99.9 %.1f  max %.1f" % tuple(pct(latencies, p) for p in (50, 90, 99, 99.9, 100)))
    print(f"background runs: {[b.returncode for b in background]}; deployment kept in {tmp}")
    sys.exit(0 if ok and not failures else 1)


def verify(demo, acked):
    landing = [json.loads(l) for l in open(os.path.join(demo, "data/landing/qr-code/intake.jsonl"), encoding="utf-8")]
    comments = {}
    for s in landing:
        comments[s["comment"]] = comments.get(s["comment"], 0) + 1
    lost = [m for m in acked if comments.get(m, 0) != 1]
    db = sqlite3.connect(os.path.join(demo, "data/state.db"))
    keys = db.execute("SELECT count(*) FROM record_keys WHERE source = 'qr-code'").fetchone()[0]
    versions = db.execute("SELECT count(*) FROM record_versions WHERE source = 'qr-code'").fetchone()[0]
    print(f"landed {len(landing)}, acknowledged {len(acked)}, not landed exactly once {len(lost)}; catalog keys {keys}, second versions {versions}")
    ok = not lost and keys == len(landing) and versions == 0
    try:
        import duckdb
        rows = duckdb.sql(f"SELECT comment, count(*) AS n FROM read_parquet('{demo}/data/curated/ratings/*/*.parquet', hive_partitioning = true) "
                          "WHERE source = 'qr-code' GROUP BY comment").fetchall()
        stored = dict(rows)
        missing = [m for m in acked if stored.get(m, 0) != 1]
        print(f"curated Parquet: {sum(stored.values())} rows, acknowledged not stored exactly once: {len(missing)}")
        ok = ok and not missing
    except ImportError:
        print("duckdb not installed: Parquet not checked")
    return ok


if __name__ == "__main__":
    main()
