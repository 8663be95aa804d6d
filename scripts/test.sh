#!/usr/bin/env bash
# The test command of README.md: installs what the tests need on a fresh
# machine, then runs every test. .ci/run calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

# The SMTP tests run a real server on loopback (tests/smtp_server.py):
# aiosmtpd from PyPI, and the openssl CLI for its self-signed certificate.
if ! command -v openssl >/dev/null 2>&1; then
    if command -v apt-get >/dev/null 2>&1; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl >/dev/null
    else
        echo "scripts/test.sh: the SMTP tests need the openssl command; install it" >&2
        exit 1
    fi
fi
if ! python3 -c 'import aiosmtpd' >/dev/null 2>&1; then
    python3 -m pip install -q --disable-pip-version-check aiosmtpd \
        || python3 -m pip install -q --disable-pip-version-check --break-system-packages aiosmtpd
fi

# Python packages the tests use as independent references: DuckDB computes
# the main table straight from the Parquet files; the Python `deltalake`
# (with pyarrow) reads the published Delta table (tests/cli/delta.rs).
python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore duckdb deltalake pyarrow

# The intake's browser test drives Debian's chromium through Selenium.
if ! command -v chromedriver >/dev/null 2>&1; then
    if command -v apt-get >/dev/null 2>&1; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
    else
        echo "scripts/test.sh: the browser test needs chromium and chromedriver; install them" >&2
        exit 1
    fi
fi
if ! python3 -c 'import selenium' >/dev/null 2>&1; then
    python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore selenium \
        || python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore --break-system-packages selenium
fi

# The site's test parses /metrics with the Prometheus project's own Python parser.
if ! python3 -c 'import prometheus_client' >/dev/null 2>&1; then
    python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore prometheus_client \
        || python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore --break-system-packages prometheus_client
fi

# The packaging files (scripts parse, the unit verifies, the shipped config
# names only installed paths); the packages are built by hand, not here.
bash scripts/package.sh --check

cargo test --locked --all-targets "$@"
