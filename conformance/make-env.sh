#!/usr/bin/env bash
# Create a separate virtualenv holding OpenStack Nova 34.0.0 + Placement 16.0.0 and the
# dependencies of Nova's in-process functional-test harness, for conformance/nova_adapter.py.
#
#   conformance/make-env.sh [VENV_DIR]     (default: <repo>/.nova-venv)
#
# Idempotent: when the env is complete (stamp file matching this script's package list),
# it does nothing and exits 0 quickly.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV_DIR="${1:-.nova-venv}"
case "$VENV_DIR" in
  /*) ;;
  *) VENV_DIR="$REPO_ROOT/$VENV_DIR" ;;
esac
PYTHON="${PYTHON:-python3}"

# SQLAlchemy 2.1 turns a deprecation into an error under Nova's warnings fixture.
PACKAGES=(
  "nova==34.0.0"
  "openstack-placement==16.0.0"
  "SQLAlchemy<2.1"
  fixtures testtools oslotest wsgi-intercept "oslo.versionedobjects[fixtures]"
  requests-mock ddt python-barbicanclient osprofiler testresources testscenarios
  stestr PyYAML
)
STAMP="$VENV_DIR/.coldmig-nova-env.stamp"
WANT="$(printf '%s\n' "${PACKAGES[@]}" | sha256sum | cut -d' ' -f1)"

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$WANT" && -x "$VENV_DIR/bin/python" ]]; then
  echo "make-env: $VENV_DIR is complete (stamp $STAMP); nothing to do"
  exit 0
fi

if [[ ! -x "$VENV_DIR/bin/python" ]]; then
  echo "make-env: creating virtualenv $VENV_DIR with $($PYTHON --version)"
  "$PYTHON" -m venv "$VENV_DIR"
fi

echo "make-env: upgrading pip/setuptools/wheel in $VENV_DIR"
"$VENV_DIR/bin/python" -m pip install --quiet --upgrade pip setuptools wheel

echo "make-env: installing ${PACKAGES[*]}"
"$VENV_DIR/bin/python" -m pip install --quiet "${PACKAGES[@]}"

# Nova's test config (nova.tests.fixtures.conf / api paste) looks for
# <site-packages>/etc/nova/api-paste.ini; the wheel installs data files under <venv>/etc/nova.
SITE="$("$VENV_DIR/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
if [[ ! -e "$SITE/etc/nova/api-paste.ini" ]]; then
  if [[ -f "$VENV_DIR/etc/nova/api-paste.ini" ]]; then
    echo "make-env: linking $SITE/etc/nova -> $VENV_DIR/etc/nova"
    mkdir -p "$SITE/etc"
    rm -rf "$SITE/etc/nova"
    ln -s "$VENV_DIR/etc/nova" "$SITE/etc/nova"
  else
    echo "make-env: ERROR: api-paste.ini not found under $VENV_DIR/etc/nova" >&2
    exit 1
  fi
fi

echo "make-env: checking that the harness imports"
"$VENV_DIR/bin/python" - <<'PY'
import nova, placement
from nova.tests.functional import integrated_helpers  # noqa: F401
from nova.tests import fixtures as nova_fixtures  # noqa: F401
import yaml  # noqa: F401
print("make-env: nova", nova.__file__, "OK")
PY

echo "$WANT" > "$STAMP"
echo "make-env: done; use $VENV_DIR/bin/python conformance/nova_adapter.py FILE.yaml"
