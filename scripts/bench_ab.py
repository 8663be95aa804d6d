"""Interleaved A/B of the bench's `aggregate` and `report` stages at 1 M: each
binary of examples/bench on its own already ingested scale directory (a
`--work .../1000000` that scripts/bench.py left), the binaries taking turns
round after round so a shared machine's load falls on all of them alike;
medians printed. BENCHMARKS.md's run of 2026-11-27 (d1b287f → eb07fba):

  python3 scripts/bench_ab.py 2 old=/tmp/bench-old:/tmp/w-old/1000000 \
      before=/tmp/bench-before:/tmp/w/1000000 after=/tmp/bench-after:/tmp/w/1000000
"""
import json, os, subprocess, sys, time, statistics
pairs = [a.split("=", 1) for a in sys.argv[2:]]  # label=bin:workdir
rounds = int(sys.argv[1])
env = dict(os.environ, BENCH_HCP_SECRET="bench-secret", BENCH_SMTP_PASSWORD="bench-secret", RUST_LOG="warn")
res = {}
for r in range(rounds):
    for label, spec in pairs:
        binary, work = spec.split(":")
        for stage in ("aggregate", "report"):
            t = time.perf_counter()
            p = subprocess.Popen([binary, stage, "--work", work, "--rows", "1000000", "--month", "2026-10", "--seed", "42"],
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True)
            out = p.stdout.read()
            _, st, ru = os.wait4(p.pid, 0)
            wall = time.perf_counter() - t
            j = json.loads([l for l in out.splitlines() if l.startswith("{")][-1])
            j["process_secs"], j["maxrss_mib"], j["load"] = wall, ru.ru_maxrss / 1024, os.getloadavg()[0]
            res.setdefault((label, stage), []).append(j)
            print(f"round {r} {label} {stage}: {json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in j.items() if k.endswith('secs') or k in ('maxrss_mib', 'load')})}", flush=True)
print("\nmedians:")
for (label, stage), runs in res.items():
    keys = [k for k in runs[0] if k.endswith("secs") or k in ("maxrss_mib", "load")]
    print(label, stage, {k: round(statistics.median(x[k] for x in runs), 3) for k in keys})
