#!/usr/bin/env bash
# Installs Debian's Chromium, which the HTML report's test renders in
# headless. Nothing else can be downloaded here; Debian's packages can.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then exit 0; fi
sudo=""
if [[ $(id -u) != 0 ]]; then sudo=sudo; fi
echo "install-chromium: installing Debian's chromium (for the report's browser test)" >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
