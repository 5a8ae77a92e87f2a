#!/usr/bin/env bash
# Prepares a fresh machine (Debian, Python 3.11, root) for genofed: the Debian tools the tests and
# benchmarks compare against, and a virtualenv in .venv/ with genofed installed (with the `sim`
# extra the demo uses). Idempotent: a second run only re-checks.
# Usage: scripts/bootstrap.sh [--test]   (--test adds the test dependencies, PostgreSQL and Chromium)
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-}
if [[ -z "$python" ]]; then
  for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null && "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
      python=$candidate; break
    fi
  done
fi
[[ -n "$python" ]] || { echo "bootstrap: Python >= 3.11 is required" >&2; exit 1; }

debian_packages=(bcftools tabix samtools plink2 gcc)
# The suite also runs the governance tests against a real PostgreSQL server, and the portal's
# pages in Debian's Chromium (driven by Playwright; never `playwright install`, which downloads
# browsers of its own).
[[ "${1:-}" == "--test" ]] && debian_packages+=(postgresql chromium)
missing=()
for pkg in "${debian_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
# genofed's ingest kernels are C, compiled at install: they need the interpreter's headers.
include=$("$python" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
[[ -f "$include/Python.h" ]] || missing+=("$(basename "$python")-dev")
if ((${#missing[@]})); then
  echo "bootstrap: installing Debian packages: ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [[ ! -x .venv/bin/python ]]; then
  "$python" -m venv .venv
fi
# The demo simulates its cohorts (the `sim` extra); the tests need that and their own tools.
extras="[sim]"
[[ "${1:-}" == "--test" ]] && extras="[test]"
stamp=".venv/.genofed-installed${extras}"
# Reinstall when the project's metadata or a C source changed (the extension is rebuilt then).
if [[ ! -f "$stamp" || pyproject.toml -nt "$stamp" || -n "$(find src -name '*.c' -newer "$stamp")" ]]; then
  echo "bootstrap: installing genofed${extras} into .venv/" >&2
  .venv/bin/python -m pip install -q --disable-pip-version-check -e ".${extras}"
  touch "$stamp"
fi
