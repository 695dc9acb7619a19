#!/usr/bin/env bash
# Docs stage for CI (called from .ci/run): make sure headless Chromium is there, build the documentation site from
# nbs/ and open every page in the browser (tests/test_docs_site.py). Exits non-zero if any step fails.
# Uses $PYTHON (default: python) — the environment that has medseg_tutor installed; the docs builder's packages
# are installed from docs/requirements.txt if they are missing. Prints the time of each step.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
T0=$(date +%s)
step() { echo; echo "==== docs [$(($(date +%s)-T0))s] $*"; }
took() { echo "---- docs $1: $2 in $(($(date +%s)-$3))s"; }
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} MPLBACKEND=Agg PIP_DISABLE_PIP_VERSION_CHECK=1
# Notebooks resolve their data like .ci/run does; needed by cells nbdev executes while building the docs.
if [ -z "${MEDSEG_TUTOR_DATA:-}" ] && [ -d ../shared/data ]; then export MEDSEG_TUTOR_DATA=$(cd ../shared/data && pwd); fi

step "headless Chromium (Debian chromium + chromium-driver)"; t=$(date +%s)
if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
  took chromium "already installed ($(chromium --version 2>/dev/null | head -1))" $t
else
  SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
  if $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
       chromium chromium-driver > /tmp/medseg-docs-apt.log 2>&1; then
    took chromium "installed" $t
  else
    tail -20 /tmp/medseg-docs-apt.log; took chromium FAILED $t; exit 1
  fi
fi

step "docs packages (docs/requirements.txt)"; t=$(date +%s)
if "$PY" -c "import mkdocs, material, pymdownx, mathjax, selenium, nbdev" 2>/dev/null; then took packages "already installed" $t
elif "$PY" -m pip install -q -r docs/requirements.txt; then took packages installed $t
else took packages FAILED $t; exit 1; fi

step "build the site: $PY tools/build_docs.py"; t=$(date +%s)
if "$PY" tools/build_docs.py; then took build ok $t; else took build FAILED $t; exit 1; fi

# The site in Chromium: every page loads cleanly; the home page is a syllabus (intro, install, learning-path table);
# the selective-scan page shows the code of the reference loop and of the chunked scan; no page says "dossier";
# every method page has an "Exercises" heading; no page is wider than a 420 px viewport; every page links its source.
# Each of these is its own test, so the summary names exactly which checks fail.
FAILED=0
step "open it in headless Chromium: pytest tests/test_docs_site.py"; t=$(date +%s)
if MEDSEG_DOCS_REQUIRE=1 "$PY" -m pytest -q -rf -p no:cacheprovider tests/test_docs_site.py; then took browser ok $t
else took browser FAILED $t; echo "screenshots: build/docs_screens/"; FAILED=1; fi

# The student's setup: JupyterLab (the course extra) serves nbs/, a kernel runs the first cells of the scan notebook
# through the server API, Chromium opens the notebook in JupyterLab (screenshot in build/jupyter_course/).
step "the course in JupyterLab: pytest tests/test_jupyter_course.py"; t=$(date +%s)
if ! "$PY" -c "import jupyterlab" 2>/dev/null; then
  echo "JupyterLab is not installed in $PY's environment: install the course extra (pip install -e '.[course]')"; took jupyterlab FAILED $t; FAILED=1
elif MEDSEG_DOCS_REQUIRE=1 "$PY" -m pytest -q -rf -p no:cacheprovider tests/test_jupyter_course.py; then took jupyterlab ok $t
else took jupyterlab FAILED $t; echo "screenshot: build/jupyter_course/"; FAILED=1; fi
[ $FAILED = 0 ] || exit 1
echo "docs stage ok in $(($(date +%s)-T0))s (site: site/index.html, screenshots: build/docs_screens/, build/jupyter_course/)"
