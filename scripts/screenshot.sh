#!/usr/bin/env bash
# Screenshots of a rendered report in headless Chromium, at a desktop and a
# phone width, for looking at by eye: scripts/screenshot.sh REPORT.html OUT_PREFIX
# Writes OUT_PREFIX-800.png and OUT_PREFIX-375.png (full page height).
set -euo pipefail
html=$(realpath "$1"); out=$2
for w in 800 375; do
  profile=$(mktemp -d)
  chromium --headless --no-sandbox --disable-gpu --no-first-run --disable-background-networking \
    --disable-component-update --disable-sync --hide-scrollbars --user-data-dir="$profile" \
    --window-size="$w,${3:-4000}" --screenshot="$out-$w.png" "file://$html" >/dev/null 2>&1
  rm -rf "$profile"
  echo "$out-$w.png"
done
