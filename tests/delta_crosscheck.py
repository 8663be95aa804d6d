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
import json
import sys

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from deltalake import DeltaTable
from month_table import month_table_sql

# The table's columns (without the partition column) and their Arrow types.
RATINGS = {
    "rating_id": pa.string(), "source": pa.string(), "rated_at": pa.timestamp("us"),
    "org_code": pa.string(), "category": pa.string(), "service_item": pa.string(),
    "department": pa.string(), "channel": pa.int32(), "level": pa.int32(),
    "reason_tags": pa.string(), "comment": pa.string(), "anonymous": pa.bool_(),
    "rater_hash": pa.string(), "follow_up": pa.string(), "rectified_at": pa.timestamp("us"),
    "revisit": pa.string(), "default_rating": pa.bool_(), "batch_seq": pa.int64(),
}


def plain(t):
    """polars writes strings as views in its Arrow metadata; the Parquet type is the same."""
    return pa.string() if t in (pa.string_view(), pa.large_string()) else t


def audit(table_dir):
    dt = DeltaTable(table_dir)
    p = dt.protocol()
    assert (p.min_reader_version, p.min_writer_version) == (3, 7), p
    assert p.reader_features == ["timestampNtz"] and p.writer_features == ["timestampNtz"], p
    assert dt.metadata().partition_columns == ["month"], dt.metadata()
    schema = dt.schema().to_arrow()
    assert [f.name for f in schema] == list(RATINGS) + ["month"], schema

    files = dt.file_uris()
    assert files, "the table lists data files"
    for f in files:
        pf = pq.ParquetFile(f)
        got = {field.name: plain(field.type) for field in pf.schema_arrow}
        assert got == RATINGS, f"{f}: {got}"
        for name in ("rated_at", "rectified_at"):
            logical = json.loads(pf.schema.column(pf.schema.names.index(name)).logical_type.to_json())
            wanted = {"Type": "Timestamp", "isAdjustedToUTC": False, "timeUnit": "microseconds"}
            assert {k: logical.get(k) for k in wanted} == wanted, (f, name, logical)
        assert pf.metadata.row_group(0).column(0).compression == "ZSTD", (f, "zstd, like the curated files")

    adds = pa.table(dt.get_add_actions(flatten=True))
    rows = dt.to_pyarrow_table()
    records = sum(adds.column("num_records").to_pylist())
    assert records == rows.num_rows, f"stats say {records} rows, the table has {rows.num_rows}"
    assert len(adds) == len(files)
    # Statistics a cluster skips files by: timestamps and integers per file,
    # each covering the file's rows (manyi writes one file per month).
    for add in adds.to_pylist():
        part = rows.filter(pc.equal(rows.column("month"), add["partition.month"]))
        assert part.num_rows == add["num_records"], add["path"]
        for c in ("rated_at", "level", "channel", "batch_seq"):
            lo, hi = pc.min_max(part.column(c)).values()
            assert add[f"min.{c}"] == lo.as_py() and add[f"max.{c}"] == hi.as_py(), (add["path"], c, add[f"min.{c}"], lo)
        assert add["null_count.rater_hash"] == part.column("rater_hash").null_count
    return f"version {dt.version()}, {len(files)} files, {rows.num_rows} rows"


table_dir = sys.argv[1]
if sys.argv[2] == "--checkpoint":
    DeltaTable(table_dir).create_checkpoint()
    sys.exit(0)
if sys.argv[2] == "--optimize":
    DeltaTable(table_dir).optimize.z_order(["rated_at"])
    sys.exit(0)
if sys.argv[2] == "--audit":
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
