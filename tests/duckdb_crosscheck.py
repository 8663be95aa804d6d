"""Independent figures for the cross-check test: the community × category
table of one month computed by DuckDB straight from manyi's curated Parquet
files, with none of manyi's code. The rates are over first evaluations
(评价次数 1, read from the rating id) that are not default ratings; 主动评价率
is active / all first evaluations; second evaluations are counted apart.

usage: python3 duckdb_crosscheck.py DATA_DIR YYYY-MM  > table.csv
       python3 duckdb_crosscheck.py DATA_DIR YYYY-MM --out table.csv --time [--repeat N]

With --time (the benchmark) the query's own wall time, from running it to
the last row fetched (the median of N runs in one connection), is printed as a JSON line on stdout: the Python start and
the import of duckdb are left out, as manyi's figure leaves out its start.

Version resolution is done here the plain way (the latest batch of each
rating id wins), which is what manyi's catalog-driven read must agree with.
"""
import json
import sys
import time

t_import = time.perf_counter()
import duckdb  # noqa: E402
from month_table import month_table_sql  # noqa: E402

data_dir, month = sys.argv[1], sys.argv[2]
out_path = sys.argv[sys.argv.index("--out") + 1] if "--out" in sys.argv else None
timed = "--time" in sys.argv
year, mon = map(int, month.split("-"))
start = f"{year:04d}-{mon:02d}-01"
end = f"{year + (mon == 12):04d}-{mon % 12 + 1:02d}-01"
sql = f"""
WITH v AS (
    SELECT *, row_number() OVER (PARTITION BY source, rating_id ORDER BY batch_seq DESC) AS v
    FROM read_parquet('{data_dir}/curated/ratings/*/*.parquet', hive_partitioning = true, union_by_name = true)
    WHERE month = '{month}'
),
""" + month_table_sql("v", "v = 1", start, end)
repeat = int(sys.argv[sys.argv.index("--repeat") + 1]) if "--repeat" in sys.argv else 1
times = []
con = duckdb.connect()
for _ in range(repeat):
    t0 = time.perf_counter()
    out = con.sql(sql)
    columns, rows = out.columns, out.fetchall()
    times.append(time.perf_counter() - t0)
secs = sorted(times)[len(times) // 2]
text = ",".join(columns) + "\n" + "".join(",".join(str(x) for x in row) + "\n" for row in rows)
if out_path:
    with open(out_path, "w", encoding="utf-8") as f:
        f.write(text)
else:
    sys.stdout.write(text)
if timed:
    print(json.dumps({"secs": secs, "runs": times, "cells": len(rows), "items": sum(r[2] for r in rows),
                      "threads": con.sql("SELECT current_setting('threads')").fetchall()[0][0],
                      "duckdb": duckdb.__version__}))
