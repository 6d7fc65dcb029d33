#!/usr/bin/env bash
# The test command: install what is needed, then run the whole suite with coverage
# (subprocesses included) of aishorts/, runner/, ipc/, stages/, serve/, cluster/ and tools/.
set -uo pipefail
cd "$(dirname "$0")/.."
AISHORTS_EXTRAS=test,serve,cluster bash tools/install.sh || exit 1
# The browser test of `serve` drives Debian's chromium through Playwright (`playwright install` cannot download here).
if ! command -v chromium >/dev/null 2>&1; then
    sudo=$([ "$(id -u)" -eq 0 ] || echo sudo)
    { $sudo apt-get update -q && $sudo apt-get install -y -q chromium; } >/dev/null \
        || echo "tools/test.sh: chromium could not be installed; tests/test_serve_browser.py will fail"
fi
rm -f .coverage .coverage.*
.venv/bin/python -m pytest -p no:cacheprovider --cov --cov-report=term-missing:skip-covered "$@"
status=$?
if [ "$status" -eq 5 ]; then
    echo "pytest collected no tests"  # exit 5 is not a failure of the code, but CI must say so
    exit 0
fi
exit "$status"
