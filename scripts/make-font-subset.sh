#!/usr/bin/env bash
# Rebuilds assets/fonts/NotoSansSC-Subset.otf, the CJK font compiled into
# manyi for chart labels: Noto Sans CJK SC (Debian's fonts-noto-cjk) cut
# down to ASCII, GB2312 (levels 1 and 2, 6,763 hanzi) and common punctuation.
# Needs: apt-get install fonts-noto-cjk; pip install fonttools.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
python3 - "$tmp/chars.txt" <<'PY'
import sys
chars = {chr(c) for c in range(0x20, 0x7F)}
for hi in range(0xA1, 0xF8):
    for lo in range(0xA1, 0xFF):
        try:
            chars.add(bytes([hi, lo]).decode("gb2312"))
        except UnicodeDecodeError:
            pass
chars.update("·—–…“”‘’、。，：；！？（）《》【】％")
open(sys.argv[1], "w", encoding="utf-8").write("".join(sorted(chars)))
PY
# Face 2 of the collection is Noto Sans CJK SC.
pyftsubset /usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc --font-number=2 \
  --text-file="$tmp/chars.txt" --output-file=assets/fonts/NotoSansSC-Subset.otf \
  --layout-features='' --no-hinting --desubroutinize
rm -rf "$tmp"
ls -l assets/fonts/NotoSansSC-Subset.otf
