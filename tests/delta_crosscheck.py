"""Independent figures from the published Delta table: the Python `deltalake`
package (delta-rs's Python reader, from PyPI) resolves the table at a version
by itself, and DuckDB computes the community × category table of one month
over the Arrow data, with none of manyi's code and no version resolution of
its own (the Delta table holds one row per rating).

usage: python3 delta_crosscheck.py TABLE_DIR YYYY-MM [VERSION]  > table.csv
       python3 delta_crosscheck.py TABLE_DIR --rows [VERSION]    prints the row count
       python3 delta_crosscheck.py TABLE_DIR --audit             checks the files and the log, prints a summary
       python3 delta_crosscheck.py TABLE_DIR --checkpoint        writes a checkpoint (as a cluster's tool would)
       python3 delta_crosscheck.py TABLE_DIR --optimize          rewrites every file (OPTIMIZE ZORDER BY rated_at)

The table is written by manyi's own log writer, so --audit checks what delta-rs
would otherwise have guaranteed: the protocol and partitioning, every data
file's Parquet schema (timestamps without UTC adjustment, no partition column),
and per-file statistics that add up to the rows a reader sees.

The SQL is tests/month_table.py's, shared with tests/duckdb_crosscheck.py.
"""
import sys

import duckdb
from deltalake import DeltaTable
from month_table import month_table_sql

table_dir = sys.argv[1]
if sys.argv[2] == "--checkpoint":
    DeltaTable(table_dir).create_checkpoint()
    sys.exit(0)
if sys.argv[2] == "--optimize":
    DeltaTable(table_dir).optimize.z_order(["rated_at"])
    sys.exit(0)
if sys.argv[2] == "--audit":
    from delta_audit import audit

    print(audit(table_dir))
    sys.exit(0)
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
sql = "WITH " + month_table_sql("ratings", f"month = '{month}'", start, end)
out = con.sql(sql)
columns, rows = out.columns, out.fetchall()
sys.stdout.write(",".join(columns) + "\n" + "".join(",".join(str(x) for x in row) + "\n" for row in rows))
