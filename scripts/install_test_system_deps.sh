#!/usr/bin/env bash
# System programs the report tests drive: a real headless browser (chromium) and a PDF rasteriser
# (pdftoppm from poppler-utils). Installs only what is missing, so reruns are quick no-ops; quiet and
# non-interactive so it can run from tox's commands_pre on a fresh CI machine (Debian/Ubuntu, as root
# or with passwordless sudo).
set -euo pipefail

missing=()
command -v pdftoppm >/dev/null 2>&1 || missing+=(poppler-utils)
if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then
    missing+=(chromium)
fi
# weasyprint renders text through pango; the library is usually present, install it if not.
if ! ldconfig -p 2>/dev/null | grep -q 'libpango-1.0'; then
    missing+=(libpango-1.0-0 libpangoft2-1.0-0)
fi

if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install_test_system_deps: apt-get not found; install ${missing[*]} by hand" >&2
    exit 1
fi

sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        sudo_cmd=(sudo -n)
    else
        echo "install_test_system_deps: need root (or sudo) to install ${missing[*]}" >&2
        exit 1
    fi
fi

export DEBIAN_FRONTEND=noninteractive
echo "install_test_system_deps: installing ${missing[*]}"
"${sudo_cmd[@]}" apt-get update -qq >/dev/null
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
