"""Independent figures from the published Delta table: the Python `deltalake`
package (delta-rs's Python reader, from PyPI) resolves the table at a version
by itself, and DuckDB computes the community × category table of one month
over the Arrow data, with none of manyi's code and no version resolution of
its own (the Delta table holds one row per rating).

usage: python3 delta_crosscheck.py TABLE_DIR YYYY-MM [VERSION]  > table.csv
       python3 delta_crosscheck.py TABLE_DIR --rows [VERSION]    prints the row count

The columns and rules are those of tests/duckdb_crosscheck.py.
"""
import sys

import duckdb
from deltalake import DeltaTable

table_dir = sys.argv[1]
rows_only = sys.argv[2] == "--rows"
rest = sys.argv[3:]
version = int(rest[0]) if rest else None
dt = DeltaTable(table_dir, version=version)
ratings = dt.to_pyarrow_table()
con = duckdb.connect()
con.register("ratings", ratings)

dupes = con.sql("SELECT count(*) - count(DISTINCT (source, rating_id)) FROM ratings").fetchall()[0][0]
if dupes:
    sys.exit(f"{dupes} rating(s) appear more than once at version {dt.version()}")
if rows_only:
    print(ratings.num_rows)
    sys.exit(0)

month = sys.argv[2]
year, mon = map(int, month.split("-"))
start = f"{year:04d}-{mon:02d}-01"
end = f"{year + (mon == 12):04d}-{mon % 12 + 1:02d}-01"
sql = f"""
WITH r AS (
    SELECT *,
           coalesce(TRY_CAST(regexp_extract(rating_id, '^.+-([0-9]+)$', 1) AS INTEGER), 1) AS times_raw,
           coalesce(default_rating, false) AS is_default
    FROM ratings
    WHERE month = '{month}' AND rated_at >= TIMESTAMP '{start}' AND rated_at < TIMESTAMP '{end}'
),
k AS (
    SELECT *, CASE WHEN times_raw BETWEEN 1 AND 99 THEN times_raw ELSE 1 END AS times FROM r
)
SELECT CASE WHEN length(org_code) = 15 THEN substr(org_code, 1, 12) ELSE org_code END AS community,
       category,
       count(*) FILTER (WHERE times = 1 AND NOT is_default) AS n,
       count(*) FILTER (WHERE times = 1 AND NOT is_default AND level = 1) AS c1,
       count(*) FILTER (WHERE times = 1 AND NOT is_default AND level = 2) AS c2,
       count(*) FILTER (WHERE times = 1 AND NOT is_default AND level = 3) AS c3,
       count(*) FILTER (WHERE times = 1 AND NOT is_default AND level = 4) AS c4,
       count(*) FILTER (WHERE times = 1 AND NOT is_default AND level = 5) AS c5,
       coalesce(avg(CASE WHEN level >= 3 THEN 1.0 ELSE 0.0 END) FILTER (WHERE times = 1 AND NOT is_default), 0.0) AS satisfied_rate,
       coalesce(avg(CASE WHEN level <= 2 THEN 1.0 ELSE 0.0 END) FILTER (WHERE times = 1 AND NOT is_default), 0.0) AS bad_rate,
       coalesce(avg((level - 1) * 25.0) FILTER (WHERE times = 1 AND NOT is_default), 0.0) AS score,
       count(*) FILTER (WHERE times = 1 AND NOT is_default) AS active,
       count(*) FILTER (WHERE times = 1 AND is_default) AS "default",
       count(*) FILTER (WHERE times > 1) AS second
FROM k
GROUP BY ALL
ORDER BY community, category
"""
out = con.sql(sql)
columns, rows = out.columns, out.fetchall()
sys.stdout.write(",".join(columns) + "\n" + "".join(",".join(str(x) for x in row) + "\n" for row in rows))
