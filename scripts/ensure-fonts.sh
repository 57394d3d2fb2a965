#!/usr/bin/env bash
# `make screenshots` renders Japanese pages in Debian's chromium: without a CJK font every
# glyph is a box. Noto Sans CJK JP is the font the screenshots in docs/ were taken with.
set -euo pipefail
if fc-list :lang=ja family 2>/dev/null | grep -q "Noto Sans CJK JP"; then
  exit 0
fi
echo "Installing Debian's fonts-noto-cjk for the screenshots..."
exec "$(dirname "$0")/apt-install.sh" fonts-noto-cjk
