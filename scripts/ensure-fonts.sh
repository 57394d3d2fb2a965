#!/usr/bin/env bash
# `make screenshots` renders Japanese pages in Debian's chromium: without a CJK font every
# glyph is a box. Noto Sans CJK JP is the font the screenshots in docs/ were taken with.
set -euo pipefail
if fc-list :lang=ja family 2>/dev/null | grep -q "Noto Sans CJK JP"; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  SUDO=sudo
else
  SUDO=
fi
echo "Installing Debian's fonts-noto-cjk for the screenshots..."
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends fonts-noto-cjk >/dev/null
