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
r AS (
    -- rating_id is 办件编号 + '-' + 评价次数; an id without that suffix is a
    -- first evaluation. A default mark missing (older files) means active.
    SELECT *,
           coalesce(TRY_CAST(regexp_extract(rating_id, '^.+-([0-9]+)$', 1) AS INTEGER), 1) AS times_raw,
           coalesce(default_rating, false) AS is_default
    FROM v
    WHERE v = 1 AND rated_at >= TIMESTAMP '{start}' AND rated_at < TIMESTAMP '{end}'
),
k AS (
    SELECT *, CASE WHEN times_raw BETWEEN 1 AND 99 THEN times_raw ELSE 1 END AS times FROM r
)
SELECT CASE WHEN length(org_code) = 15 THEN substr(org_code, 1, 12) ELSE org_code END AS community,
       category,
       -- the rates: first evaluations a resident gave
       count(*) FILTER (WHERE times = 1 AND NOT is_default) AS n,
       count(*) FILTER (WHERE times = 1 AND NOT is_default AND level = 1) AS c1,
       count(*) FILTER (WHERE times = 1 AND NOT is_default AND level = 2) AS c2,
       count(*) FILTER (WHERE times = 1 AND NOT is_default AND level = 3) AS c3,
       count(*) FILTER (WHERE times = 1 AND NOT is_default AND level = 4) AS c4,
       count(*) FILTER (WHERE times = 1 AND NOT is_default AND level = 5) AS c5,
       coalesce(avg(CASE WHEN level >= 3 THEN 1.0 ELSE 0.0 END) FILTER (WHERE times = 1 AND NOT is_default), 0.0) AS satisfied_rate,
       coalesce(avg(CASE WHEN level <= 2 THEN 1.0 ELSE 0.0 END) FILTER (WHERE times = 1 AND NOT is_default), 0.0) AS bad_rate,
       coalesce(avg((level - 1) * 25.0) FILTER (WHERE times = 1 AND NOT is_default), 0.0) AS score,
       -- shown apart
       count(*) FILTER (WHERE times = 1 AND NOT is_default) AS active,
       count(*) FILTER (WHERE times = 1 AND is_default) AS "default",
       count(*) FILTER (WHERE times = 1 AND NOT is_default) * 1.0 / nullif(count(*) FILTER (WHERE times = 1), 0) AS active_rate,
       count(*) FILTER (WHERE times > 1) AS second
FROM k
GROUP BY ALL
ORDER BY community, category
"""
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
