#!/usr/bin/env bash
# The two commands of the README:
#   ./run.sh        set up (once) and run the end-to-end demo on bundled real clips
#   ./run.sh test   set up (once) and run the whole test suite
# Both create and reuse one virtual environment, .venv, inside the checkout.
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
VENV=.venv
STAMP="$VENV/.installed-$(cat setup.cfg pyproject.toml | sha256sum | cut -c1-16)"

if [ ! -f "$STAMP" ]; then
    echo "setting up $VENV (first run only: PyTorch is several GB)" >&2
    [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip
    "$VENV/bin/python" -m pip install -q -e '.[samples,test,ray]'
    rm -f "$VENV"/.installed-*
    touch "$STAMP"
fi

need_test_tools() {
    # The tests make edge-case clips (VP9, VFR, 6-channel audio, ...) with ffmpeg, and
    # check the serve page in headless Chromium.
    local missing=""
    command -v ffmpeg >/dev/null || missing="$missing ffmpeg"
    command -v chromium >/dev/null || missing="$missing chromium"
    command -v chromedriver >/dev/null || missing="$missing chromium-driver"
    [ -z "$missing" ] && return
    echo "installing$missing (Debian packages) for the tests" >&2
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
}

case "${1:-demo}" in
    test)
        need_test_tools
        shift
        "$VENV/bin/ruff" check .
        "$VENV/bin/lint-imports" --no-cache
        exec "$VENV/bin/python" -m pytest "$@"
        ;;
    demo)
        exec "$VENV/bin/python" -m demo
        ;;
    *)
        echo "usage: ./run.sh [demo|test [pytest args]]" >&2
        exit 2
        ;;
esac
