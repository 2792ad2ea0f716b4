#!/bin/sh
# make mutants: cosmic-ray's mutants of the roles and the machine, each run against the
# model checker and the Hypothesis suite (scripts/mutants.py), in a scratch copy of the
# tree so that a mutant never touches the work tree. Writes the report to
# build/mutants.md. MUTANTS_SAMPLE (default 100: about 30 min on one core) places are
# mutated, MUTANTS_SEED (14)
# picks them; MUTANTS_SURVIVORS_OF=build/mutants.sqlite runs only the survivors of that
# earlier campaign (to check that new tests catch them); MUTANTS_STAGES (default
# model,hypothesis,unit) the kill stages of scripts/mutants.py.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN="$ROOT/.venv/bin"
SAMPLE=${MUTANTS_SAMPLE:-100}
SEED=${MUTANTS_SEED:-14}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/coldmig-mutants.XXXXXX")
trap 'rm -rf "$WORK"' EXIT INT TERM
mkdir -p "$WORK/scripts" "$ROOT/build"
# What the copy holds: the sources, the tests and all they import from the tree
# (tests/conftest.py imports benchmarks/: Hypothesis draws from the literals of every
# local module loaded, so the suite must see the same modules as `make test`).
COPY="src tests docs benchmarks pyproject.toml"
for path in $COPY; do cp -R "$ROOT/$path" "$WORK/"; done
cp "$ROOT/scripts/mutants.py" "$WORK/scripts/"
# The test command runs the scratch copy's python path first: its src/ wins over the
# editable install's.
STAGES=${MUTANTS_STAGES:-model,hypothesis,unit}
sed -e "s|^test-command = \"python |test-command = \"$BIN/python |" \
    -e "s|scripts/mutants.py kill\"|scripts/mutants.py kill --stages $STAGES\"|" \
    "$ROOT/scripts/mutants.toml" > "$WORK/mutants.toml"
NAME=mutants
PREVIOUS=
if [ -n "${MUTANTS_SURVIVORS_OF:-}" ]; then
    PREVIOUS="$(cd "$(dirname "$MUTANTS_SURVIVORS_OF")" && pwd)/$(basename "$MUTANTS_SURVIVORS_OF")"
    NAME=mutants-rerun
fi
cd "$WORK"
export PYTHONPATH="$WORK/src:$WORK"
echo "mutants: baseline (no mutant) must pass"
"$BIN/python" scripts/mutants.py kill --stages "$STAGES" > baseline.log 2>&1 || {
    cat baseline.log; echo "mutants: the baseline fails; fix that first" >&2; exit 1; }
started=$(date +%s)
"$BIN/cosmic-ray" init mutants.toml session.sqlite
if [ -n "$PREVIOUS" ]; then
    cp "$PREVIOUS" previous.sqlite
    "$BIN/python" scripts/mutants.py select mutants.toml session.sqlite --survivors-of previous.sqlite
else
    "$BIN/python" scripts/mutants.py select mutants.toml session.sqlite --sample "$SAMPLE" --seed "$SEED"
fi
"$BIN/cosmic-ray" exec mutants.toml session.sqlite
{
    if [ -n "$PREVIOUS" ]; then
        echo "<!-- make mutants: the survivors of $MUTANTS_SURVIVORS_OF, $(( $(date +%s) - started )) s -->"
    else
        echo "<!-- make mutants: sample $SAMPLE, seed $SEED, $(( $(date +%s) - started )) s -->"
    fi
    "$BIN/python" scripts/mutants.py report session.sqlite
} > "$ROOT/build/$NAME.md"
cp session.sqlite "$ROOT/build/$NAME.sqlite"
cat "$ROOT/build/$NAME.md"
