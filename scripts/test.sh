#!/usr/bin/env bash
# The test command of README.md: installs what the tests need on a fresh
# machine, then runs every test. .ci/run calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

# Python packages the tests use as independent references: DuckDB computes
# the main table straight from the Parquet files.
python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore duckdb

cargo test --locked --all-targets "$@"
