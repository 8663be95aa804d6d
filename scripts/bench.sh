#!/usr/bin/env bash
# The benchmark in one command: builds manyi's bench stages in release,
# installs DuckDB and aiosmtpd (and the openssl CLI the SMTP server's
# certificate needs) if missing, then runs scripts/bench.py, which prints the
# figures and writes them to $WORK/results.md and results.json.
#
#   bash scripts/bench.sh                      # 1,000,000 and 10,000,000 ratings
#   bash scripts/bench.sh --rows 1000000       # one scale
#   MANYI_FEATURES=f1,f2 bash scripts/bench.sh # with cargo features on (manyi has none today)
#
# Needs about 4 GiB of disk under --work (default /tmp/manyi-bench) for the
# 10 M run, and 20–40 minutes the first time for the release build.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/manyi-target}"
if ! command -v openssl >/dev/null; then
  if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq openssl >/dev/null
  else sudo apt-get update -qq && sudo apt-get install -y -qq openssl >/dev/null; fi
fi
for m in duckdb aiosmtpd; do
  python3 -c "import $m" >/dev/null 2>&1 || python3 -m pip install -q --disable-pip-version-check "$m" \
    || python3 -m pip install -q --disable-pip-version-check --break-system-packages "$m"
done
cargo build --release --locked ${MANYI_FEATURES:+--features "$MANYI_FEATURES"} --example bench
exec python3 scripts/bench.py --bin "$CARGO_TARGET_DIR/release/examples/bench" "$@"
