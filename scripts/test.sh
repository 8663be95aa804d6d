#!/usr/bin/env bash
# The test command of README.md: installs what the tests need on a fresh
# machine, then runs every test. .ci/run calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

# Polars dominates the build; keep its artefacts outside the clone so that a
# fresh clone reuses them.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/manyi-target}"
mkdir -p "$CARGO_TARGET_DIR"

cargo test --locked --all-targets "$@"
