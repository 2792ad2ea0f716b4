#!/bin/sh
# make mutants: cosmic-ray's mutants of the roles and the machine, each run against the
# model checker and the Hypothesis suite (scripts/mutants.py), in a scratch copy of the
# tree so that a mutant never touches the work tree. Writes the report to
# build/mutants.md. MUTANTS_SAMPLE (default 120) places are mutated, MUTANTS_SEED (14)
# picks them.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN="$ROOT/.venv/bin"
SAMPLE=${MUTANTS_SAMPLE:-120}
SEED=${MUTANTS_SEED:-14}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/coldmig-mutants.XXXXXX")
trap 'rm -rf "$WORK"' EXIT INT TERM
mkdir -p "$WORK/scripts" "$ROOT/build"
cp -R "$ROOT/src" "$ROOT/tests" "$ROOT/pyproject.toml" "$WORK/"
cp "$ROOT/scripts/mutants.py" "$WORK/scripts/"
# The test command runs the scratch copy's python path first: its src/ wins over the
# editable install's.
sed "s|^test-command = \"python |test-command = \"$BIN/python |" "$ROOT/scripts/mutants.toml" \
    > "$WORK/mutants.toml"
cd "$WORK"
export PYTHONPATH="$WORK/src:$WORK"
echo "mutants: baseline (no mutant) must pass"
"$BIN/python" scripts/mutants.py kill > baseline.log 2>&1 || {
    cat baseline.log; echo "mutants: the baseline fails; fix that first" >&2; exit 1; }
started=$(date +%s)
"$BIN/cosmic-ray" init mutants.toml session.sqlite
"$BIN/python" scripts/mutants.py select mutants.toml session.sqlite --sample "$SAMPLE" --seed "$SEED"
"$BIN/cosmic-ray" exec mutants.toml session.sqlite
{
    echo "<!-- make mutants: sample $SAMPLE, seed $SEED, $(( $(date +%s) - started )) s -->"
    "$BIN/python" scripts/mutants.py report session.sqlite
} > "$ROOT/build/mutants.md"
cp session.sqlite "$ROOT/build/mutants.sqlite"
cat "$ROOT/build/mutants.md"
