#!/usr/bin/env python3
"""manyi's benchmark at city and province scale, with DuckDB beside it.

usage: scripts/bench.py [--rows 1000000,10000000] [--work /tmp/manyi-bench]
                        [--bin target/release/examples/bench] [--month 2026-10]

Normally started by scripts/bench.sh, which builds the release binary and
installs DuckDB and aiosmtpd first. For every scale it runs, each stage in a
process of its own so that its peak memory is its own (os.wait4's ru_maxrss):

  gen          a province of N ratings (fixed seed): 2,000 communities, 12
               categories, 13 months, as 13 monthly CSV office exports
  ingest-csv   collect those files (land, parse, normalise, de-duplicate,
               Parquet, commit)
  ingest-json  collect the same N ratings as JSON pages of 1,000 from a
               loopback platform, committing every 100 pages
  table        manyi's community × category table of the report month
  duckdb       DuckDB's same table straight from the same Parquet files
               (tests/duckdb_crosscheck.py), compared cell by cell
  aggregate    a month's full tables plus the 12-month trend, for the
               leadership and all 222 offices, and the month's 差评
  report       the monthly report job for all 223 offices to the outbox
  deliver      the same job with SMTP (STARTTLS + AUTH) to aiosmtpd on loopback

and prints one table per scale plus the targets, and writes
WORK/results.json and WORK/results.md.
"""
import argparse
import csv
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import time

# Runs of the community × category table on each side, in one process each;
# the median is compared. The first run reads the Parquet files cold and
# the allocator is still growing, so a median of few runs swung with it.
REPEAT = 11

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(cmd, log, env=None):
    """Runs a stage; returns its JSON line plus wall time and peak RSS."""
    t = time.perf_counter()
    with open(log, "w") as err:
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, env=env, text=True)
        out = p.stdout.read()
        _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t
    if os.waitstatus_to_exitcode(status) != 0:
        sys.stderr.write(open(log).read()[-3000:])
        raise SystemExit(f"stage failed: {' '.join(cmd)} (log {log})")
    lines = [l for l in out.splitlines() if l.startswith("{")]
    res = json.loads(lines[-1]) if lines else {}
    res["process_secs"] = wall
    res["maxrss_mib"] = ru.ru_maxrss / 1024
    return res


def read_table(path):
    with open(path, encoding="utf-8") as f:
        return {(r["community"], r["category"]): r for r in csv.DictReader(f)}


def compare(a_path, b_path):
    a, b = read_table(a_path), read_table(b_path)
    problems = []
    if set(a) != set(b):
        problems.append(f"cells only in manyi: {len(set(a) - set(b))}, only in DuckDB: {len(set(b) - set(a))}")
    for k in sorted(set(a) & set(b)):
        for col in ("n", "c1", "c2", "c3", "c4", "c5"):
            if int(a[k][col]) != int(b[k][col]):
                problems.append(f"{k} {col}: manyi {a[k][col]} DuckDB {b[k][col]}")
        for col, tol in (("satisfied_rate", 1e-9), ("score", 1e-9)):
            if abs(float(a[k][col]) - float(b[k][col])) > tol:
                problems.append(f"{k} {col}: manyi {a[k][col]} DuckDB {b[k][col]}")
    return len(a), problems


def start_smtp(work):
    spool, certdir = os.path.join(work, "spool"), os.path.join(work, "cert")
    os.makedirs(spool, exist_ok=True)
    os.makedirs(certdir, exist_ok=True)
    p = subprocess.Popen(
        [sys.executable, os.path.join(ROOT, "tests/smtp_server.py"), "--spool", spool, "--security", "starttls",
         "--certdir", certdir, "--user", "manyi", "--password", "bench-secret"],
        stdout=subprocess.PIPE, text=True)
    line = p.stdout.readline()
    if not line.startswith("PORT "):
        raise SystemExit("the SMTP test server did not start (is aiosmtpd installed?)")
    return p, line.split()[1], os.path.join(certdir, "cert.pem"), spool


def machine():
    cpu = ""
    try:
        for l in open("/proc/cpuinfo"):
            if l.startswith("model name"):
                cpu = l.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = 0
    try:
        mem = int(next(l for l in open("/proc/meminfo") if l.startswith("MemTotal")).split()[1]) // 1024
    except (OSError, StopIteration):
        pass
    rev = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    rustc = subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.strip()
    import duckdb
    return {"cpu": cpu, "cores": os.cpu_count(), "mem_mib": mem, "kernel": platform.release(), "commit": rev,
            "rustc": rustc, "duckdb": duckdb.__version__, "python": platform.python_version(),
            "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
            "load_before": os.getloadavg()[0]}


def fmt_rate(x):
    return f"{x:,.0f}" if x >= 100 else f"{x:,.1f}"


def scale(args, rows):
    work = os.path.join(args.work, f"{rows}")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    logs = os.path.join(work, "logs")
    os.makedirs(logs)
    base = [args.bin]
    common = ["--work", work, "--rows", str(rows), "--month", args.month, "--seed", str(args.seed)]
    env = dict(os.environ, BENCH_HCP_SECRET="bench-secret", BENCH_SMTP_PASSWORD="bench-secret", RUST_LOG="warn")
    r = {}

    def stage(name, *extra):
        print(f"  {name} …", end="", flush=True)
        r[name] = run(base + [name.split(":")[0]] + common + list(extra), os.path.join(logs, f"{name}.log"), env)
        print(f" {r[name]['process_secs']:.1f} s", flush=True)

    stage("gen")
    stage("ingest-csv")
    stage("ingest-json")
    manyi_csv, duck_csv = os.path.join(work, "manyi-table.csv"), os.path.join(work, "duckdb-table.csv")
    stage("table", "--out", manyi_csv, "--repeat", str(REPEAT))
    print("  duckdb …", end="", flush=True)
    r["duckdb"] = run([sys.executable, os.path.join(ROOT, "tests/duckdb_crosscheck.py"), os.path.join(work, "site/data"),
                       args.month, "--out", duck_csv, "--time", "--repeat", str(REPEAT)], os.path.join(logs, "duckdb.log"))
    print(f" {r['duckdb']['process_secs']:.1f} s", flush=True)
    cells, problems = compare(manyi_csv, duck_csv)
    r["agreement"] = {"cells": cells, "problems": problems[:20], "agree": not problems}
    stage("aggregate")
    stage("report")
    smtp, port, ca, spool = start_smtp(work)
    try:
        stage("report:smtp", "--smtp-port", port, "--smtp-ca", ca)
    finally:
        smtp.terminate()
        smtp.wait()
    r["report:smtp"]["spooled"] = len([f for f in os.listdir(spool) if f.endswith(".eml")])
    return r


def info_cores():
    return os.cpu_count()


def table_md(rows, r):
    g, ic, ij, t, d, a, rep, sm = (r[k] for k in ("gen", "ingest-csv", "ingest-json", "table", "duckdb", "aggregate",
                                                   "report", "report:smtp"))
    lines = [
        f"### {rows:,} ratings",
        "",
        "| stage | what | wall | rate | peak RSS |",
        "|---|---|---:|---:|---:|",
        f"| generate | {g['items']:,} ratings + {g['corrections']:,} re-sent, {g['csv_mib']:.0f} MiB of CSV | {g['secs']:.1f} s | "
        f"{fmt_rate(g['items'] / g['secs'])} rows/s | {g['maxrss_mib']:.0f} MiB |",
        f"| ingest CSV | 13 files: {ic['new']:,} new, {ic['updated']:,} new versions, {ic['quarantined']:,} quarantined | "
        f"{ic['secs']:.1f} s | {fmt_rate(ic['per_sec'])} rows/s | {ic['maxrss_mib']:.0f} MiB |",
        f"| ingest JSON | {ij['pages']:,} pages of 1,000 over loopback: {ij['new']:,} new, {ij['quarantined']:,} quarantined | "
        f"{ij['secs']:.1f} s | {fmt_rate(ij['per_sec'])} rows/s | {ij['maxrss_mib']:.0f} MiB |",
        f"| community × category, manyi | {t['cells']:,} cells, n = {t['items']:,} | {t['secs']:.3f} s | "
        f"{fmt_rate(t['items'] / t['secs'])} rows/s | {t['maxrss_mib']:.0f} MiB |",
        f"| community × category, DuckDB {d.get('duckdb', '')} | {d['cells']:,} cells, n = {d['items']:,} | {d['secs']:.3f} s | "
        f"{fmt_rate(d['items'] / d['secs'])} rows/s | {d['maxrss_mib']:.0f} MiB |",
        f"| monthly aggregation | 14 buckets ({a['items']:,} ratings in the 12-month trend), leadership + {a['offices'] - 1} "
        f"offices' tables, {a['bad']:,} 差评 | {a['secs']:.2f} s (grain {a['grain_secs']:.2f}, roll-ups {a['rollup_secs']:.2f}, "
        f"差评 {a['bad_secs']:.2f}) | {fmt_rate(a['per_sec'])} rows/s | {a['maxrss_mib']:.0f} MiB |",
        f"| build all office reports | {rep['rendered']} reports (roll-ups, HTML, text, PNG charts, XLSX, CSV) on "
        f"{info_cores()} cores; work summed over reports: roll-ups {rep['aggregate_secs']:.2f} s, rendering {rep['render_secs']:.2f} s | "
        f"{rep['build_secs']:.2f} s | {fmt_rate(rep['render_per_sec'])} reports/s | — |",
        f"| report job to outbox | scan {rep['scan_secs']:.2f} s, prepare {rep.get('prepare_secs', 0):.2f} s, build {rep['build_secs']:.2f} s, "
        f"files {rep['write_secs']:.2f} s, outbox {rep['deliver_secs']:.2f} s; "
        f"{rep['outbox_mib']:.1f} MiB of .eml | {rep['secs']:.1f} s | {fmt_rate(rep['items'] / rep['secs'])} reports/s | "
        f"{rep['maxrss_mib']:.0f} MiB |",
        f"| deliver by SMTP | {sm['sent']} messages (STARTTLS, AUTH, one connection) to aiosmtpd, {sm['spooled']} stored | "
        f"{sm['deliver_secs']:.1f} s | {fmt_rate(sm['deliver_per_sec'])} msg/s | {sm['maxrss_mib']:.0f} MiB |",
        "",
        f"DuckDB vs manyi on the community × category table (median of {REPEAT} runs each, in one process each; "
        f"first run {t['runs'][0]:.3f} s and {d['runs'][0]:.3f} s, all runs {min(t['runs']):.3f}–{max(t['runs']):.3f} s and "
        f"{min(d['runs']):.3f}–{max(d['runs']):.3f} s): manyi {t['secs']:.3f} s, DuckDB {d['secs']:.3f} s "
        f"({d.get('threads', '?')} threads), **ratio {t['secs'] / d['secs']:.2f}** (manyi / DuckDB); "
        f"results {'**agree**' if r['agreement']['agree'] else '**DIFFER**'} on all {r['agreement']['cells']:,} cells "
        f"(n and counts per level exact, rates to 1e-9).",
    ]
    for p in r["agreement"]["problems"]:
        lines.append(f"- {p}")
    return "\n".join(lines)


def targets_md(results):
    """The targets of the benchmark issue (19), checked at the largest scale run."""
    out = ["### Targets (issue 19, at the largest scale run)", ""]
    big = results.get(max(results))
    if big:
        t, d, ic, ij, rep = big["table"], big["duckdb"], big["ingest-csv"], big["ingest-json"], big["report"]

        def line(what, figure, target, ok):
            out.append(f"- {what}: {figure} (target {target}) → {'met' if ok else 'MISSED'}")

        line("ingest from CSV, rate", f"{ic['per_sec']:,.0f} rows/s", "≥ 1,000,000", ic["per_sec"] >= 1e6)
        line("ingest from CSV, peak memory", f"{ic['maxrss_mib']:,.0f} MiB", "≤ 1,024", ic["maxrss_mib"] <= 1024)
        line("ingest from JSON pages", f"{ij['per_sec']:,.0f} rows/s", "≥ 300,000", ij["per_sec"] >= 3e5)
        line("build all office reports", f"{rep['render_per_sec']:,.0f} reports/s", "≥ 300", rep["render_per_sec"] >= 300)
        first = t["runs"][0] / d["runs"][0]
        line("month's table, first run, manyi / DuckDB", f"{first:.2f}", "≤ 0.7", first <= 0.7)
        median = t["secs"] / d["secs"]
        line(f"month's table, median of {REPEAT}, manyi / DuckDB", f"{median:.2f}", "≤ 0.6", median <= 0.6)
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", default="1000000,10000000")
    ap.add_argument("--work", default="/tmp/manyi-bench")
    ap.add_argument("--bin", default=os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")),
                                                  "release/examples/bench"))
    ap.add_argument("--month", default="2026-10")
    ap.add_argument("--seed", type=int, default=42)
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)
    info = machine()
    print(f"machine: {info['cpu']}, {info['cores']} cores, {info['mem_mib']:,} MiB; {info['rustc']}; duckdb {info['duckdb']}; "
          f"commit {info['commit']}; load {info['load_before']:.2f}")
    results = {}
    for rows in (int(x.replace("_", "")) for x in args.rows.split(",")):
        print(f"{rows:,} ratings:")
        results[rows] = scale(args, rows)
    md = [f"Run {info['date']} on {info['cpu']} ({info['cores']} cores, {info['mem_mib']:,} MiB RAM), commit {info['commit']}, "
          f"{info['rustc']}, release build; DuckDB {info['duckdb']} (Python {info['python']}); load average before "
          f"the run {info['load_before']:.2f}.", ""]
    for rows, r in results.items():
        md += [table_md(rows, r), ""]
    md.append(targets_md(results))
    text = "\n".join(md) + "\n"
    print()
    print(text)
    with open(os.path.join(args.work, "results.md"), "w", encoding="utf-8") as f:
        f.write(text)
    with open(os.path.join(args.work, "results.json"), "w", encoding="utf-8") as f:
        json.dump({"machine": info, "results": {str(k): v for k, v in results.items()}}, f, indent=1, ensure_ascii=False)
    bad = [rows for rows, r in results.items() if not r["agreement"]["agree"]]
    if bad:
        raise SystemExit(f"manyi and DuckDB disagree at {bad}")


if __name__ == "__main__":
    main()
