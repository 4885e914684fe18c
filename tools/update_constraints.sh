#!/usr/bin/env bash
# Re-lock constraints.txt: the exact versions of everything the test and bench extras install, as a
# fresh virtualenv resolves them today. The README's test command installs with `-c constraints.txt`,
# so CI and every developer test against these versions; users installing bertkit itself get the
# ranges in pyproject.toml (with upper bounds at the next major release of what could break us).
# Run it, run the test command, and commit both files together.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=$(mktemp -d "${TMPDIR:-/tmp}/bertkit-lock.XXXXXX")
trap 'rm -rf "$venv"' EXIT
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check torch==2.13.0
"$venv/bin/pip" install --quiet --disable-pip-version-check -e ".[test,bench]"
{
    echo "# Made by tools/update_constraints.sh on $(date -u +%Y-%m-%d) with $("$venv/bin/python" --version)."
    echo "# The versions the test suite passes with; see the script for how to update them."
    # torch is installed first from its CPU build; its local label (+cpu) is not a PyPI version.
    "$venv/bin/pip" freeze --exclude-editable | grep -v -i -e '^torch==' -e '^bertkit' | sed 's/+[a-z0-9.]*$//'
} > constraints.txt.tmp
mv constraints.txt.tmp constraints.txt
echo "constraints.txt: $(grep -vc '^#' constraints.txt) packages"
