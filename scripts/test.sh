#!/usr/bin/env bash
# The test command of README.md: installs what the tests need on a fresh
# machine, then runs every test. .ci/run calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo test --locked --all-targets "$@"
