#!/usr/bin/env bash
# Delivers 1,000 report messages to the local aiosmtpd test server (STARTTLS,
# AUTH, one reused connection) through `manyi run` and prints messages per second.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -c 'import aiosmtpd' >/dev/null 2>&1 || python3 -m pip install -q --disable-pip-version-check aiosmtpd
cargo test --test cli smtp::bench_deliver_1000_reports -- --ignored --nocapture 2>&1 | grep -E 'bench_smtp|test result|panicked'
