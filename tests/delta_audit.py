"""Checks of a Delta table written by manyi's own log writer, read with the
Python `deltalake` package (delta-rs) and pyarrow; used by
tests/delta_crosscheck.py --audit. Raises AssertionError on the first
mismatch; returns a one-line summary."""
import json

import pyarrow as pa
import pyarrow.parquet as pq
from deltalake import DeltaTable

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
        assert pf.metadata.row_group(0).column(0).compression == "ZSTD"

    adds = pa.table(dt.get_add_actions(flatten=True))
    rows = dt.to_pyarrow_table()
    records = sum(adds.column("num_records").to_pylist())
    assert records == rows.num_rows, f"stats say {records} rows, the table has {rows.num_rows}"
    assert len(adds) == len(files)
    # Statistics a cluster skips files by: timestamps and integers per file,
    # each covering the file's rows (manyi writes one file per month).
    for add in adds.to_pylist():
        part = rows.filter(pa.compute.equal(rows.column("month"), add["partition.month"]))
        assert part.num_rows == add["num_records"], add["path"]
        for c in ("rated_at", "level", "channel", "batch_seq"):
            lo, hi = pa.compute.min_max(part.column(c)).values()
            assert add[f"min.{c}"] == lo.as_py() and add[f"max.{c}"] == hi.as_py(), (add["path"], c, add[f"min.{c}"], lo)
        assert add["null_count.rater_hash"] == part.column("rater_hash").null_count
    return f"version {dt.version()}, {len(files)} files, {rows.num_rows} rows"
