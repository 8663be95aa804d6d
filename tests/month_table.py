"""The month's community × category table in DuckDB SQL, shared by the two
independent cross-checks (tests/duckdb_crosscheck.py over the curated
Parquet files, tests/delta_crosscheck.py over the published Delta table), so
that both compute the figures by the same rules and differ only in how they
find the latest version of each rating.

The rates are over first evaluations (评价次数 1, read from the rating id)
that are not default ratings; 主动评价率 is active / all first evaluations;
second evaluations are counted apart.
"""


def month_table_sql(source: str, where: str, start: str, end: str) -> str:
    """The CTEs after `WITH …,` and the final SELECT: rows of `source` that
    pass `where`, rated in [start, end), grouped by community and category."""
    return f"""
r AS (
    -- rating_id is 办件编号 + '-' + 评价次数; an id without that suffix is a
    -- first evaluation. A default mark missing (older files) means active.
    SELECT *,
           coalesce(TRY_CAST(regexp_extract(rating_id, '^.+-([0-9]+)$', 1) AS INTEGER), 1) AS times_raw,
           coalesce(default_rating, false) AS is_default
    FROM {source}
    WHERE {where} AND rated_at >= TIMESTAMP '{start}' AND rated_at < TIMESTAMP '{end}'
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
