#!/usr/bin/env bash
# The test command: install what is needed, then run the whole suite with coverage
# (subprocesses included) of runner/, ipc/, stages/ and tools/.
set -uo pipefail
cd "$(dirname "$0")/.."
AISHORTS_EXTRAS=test,serve,cluster bash tools/install.sh || exit 1
rm -f .coverage .coverage.*
.venv/bin/python -m pytest -p no:cacheprovider --cov --cov-report=term-missing:skip-covered "$@"
status=$?
if [ "$status" -eq 5 ]; then
    echo "pytest collected no tests"  # exit 5 is not a failure of the code, but CI must say so
    exit 0
fi
exit "$status"
