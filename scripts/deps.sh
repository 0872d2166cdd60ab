#!/usr/bin/env bash
# Dependency versions: test the newest releases on purpose, and refresh the lock.
#
#   scripts/deps.sh newest   fresh venv (.venv-newest) with the newest releases that
#                            setup.cfg's ranges admit (constraints.txt ignored), then the
#                            test suite; the lock is left alone
#   scripts/deps.sh lock     the same, and when the suite passes, constraints.txt is
#                            rewritten from that venv (review and commit the diff)
#
# Extra arguments go to pytest (e.g. scripts/deps.sh newest -x -k classic).
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-}
case "$mode" in
    newest|lock) shift ;;
    *) echo "usage: scripts/deps.sh newest|lock [pytest args...]" >&2; exit 2 ;;
esac
venv=.venv-newest
rm -rf "$venv"
python3 -m venv "$venv"
. "$venv/bin/activate"
pip install -q --upgrade pip
# torch stays the CPU build the README pins: an unpinned torch is a multi-GB CUDA download.
pip install -q torch==2.13.0
pip install -q --upgrade --upgrade-strategy eager -c <(echo torch==2.13.0) -e ".[test]"
echo "== newest releases admitted by setup.cfg:"
pip freeze --exclude-editable | grep -iE '^(av|torch|diffusers|numpy|opencv-python-headless|pillow|constriction|safetensors|pluggy|ray)=='
python -m pytest -q "$@"
if [ "$mode" = lock ]; then
    {
        sed -n '1,/^[^#]/{/^#/p}' constraints.txt
        pip freeze --exclude-editable | sed -E 's/^(torch==[0-9.]+)\+cpu$/\1/'
    } > constraints.txt.new
    mv constraints.txt.new constraints.txt
    echo "== constraints.txt rewritten; review with: git diff constraints.txt"
fi
