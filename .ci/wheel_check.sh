#!/usr/bin/env bash
# CI: the wheel works outside a checkout. Build it, install it (with its dependencies, from the same package
# index as the quickstart) into a fresh venv in a temp dir, then from an empty temp folder with no
# orchestrator.toml around run `orchestrator models` and a tiny `orchestrator bench` (the rule baseline:
# no model download) and check that the report lands in ./reports/.
#     bash .ci/wheel_check.sh            (PYTHON=python3.12 to pick the interpreter; KEEP=1 keeps the temp dir)
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
python=${PYTHON:-python3}
work=$(mktemp -d "${TMPDIR:-/tmp}/orchestrator-wheel.XXXXXX")
if [[ -z "${KEEP:-}" ]]; then trap 'rm -rf "$work"' EXIT; else echo "wheel: keeping $work"; fi
started=$SECONDS
step() { echo "wheel: [$((SECONDS - started)) s] $*"; }
fail() { echo "wheel: FAILED: $*" >&2; exit 1; }

# 1. the wheel, built from a copy of the files git sees (a stale build/ in the tree cannot leak into it)
step "building the wheel"
mkdir -p "$work/src" "$work/dist"
if git -C "$repo" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  git -C "$repo" ls-files -z --cached --others --exclude-standard \
    | while IFS= read -r -d '' f; do [[ -e "$f" ]] && printf '%s\0' "$f"; done \
    | tar --null -T - -cf - | tar -xf - -C "$work/src"
else
  tar --exclude=./.venv --exclude=./.git --exclude=./build --exclude=./dist -cf - . | tar -xf - -C "$work/src"
fi
"$python" -m pip wheel --no-deps -q -w "$work/dist" "$work/src"
wheel=$(find "$work/dist" -name 'orchestrator_workbench-*.whl' | head -n 1)
[[ -n "$wheel" ]] || fail "no orchestrator_workbench wheel in $work/dist"
step "built $(basename "$wheel")"
"$python" - "$wheel" <<'EOF'
import sys, zipfile
names = set(zipfile.ZipFile(sys.argv[1]).namelist())
for need in ("orchestrator/default.toml", "orchestrator/py.typed",
             "orchestrator/_shipped/notebooks/benchmark.ipynb", "orchestrator/_shipped/datasets/sample.jsonl",
             *(f"orchestrator/tasks/builtin/{t}.toml" for t in ("classify", "explain", "fix", "summarize"))):
    if need not in names:
        sys.exit(f"wheel: FAILED: {need} missing from the wheel")
print("wheel: data files:", *sorted(n for n in names if not n.endswith(".py") and ".dist-info/" not in n))
EOF

# 2. a fresh venv outside the repo, the wheel and its dependencies from the registry
step "installing it into a fresh venv"
"$python" -m venv "$work/venv"
"$work/venv/bin/python" -m pip install -q "$wheel"
step "installed"

# 3. a user's empty folder: no checkout, no config, the installed package only
run="$work/run"
mkdir -p "$run"
cd "$run"
unset ORCHESTRATOR_CONFIG ORCHESTRATOR_HOME PYTHONPATH VIRTUAL_ENV
export PATH="$work/venv/bin:$PATH"
where=$(python -c 'import orchestrator, sys; print(orchestrator.__file__)')
[[ "$where" == "$work/venv/"* ]] || fail "orchestrator imported from $where, not from the fresh venv"

step "\$ orchestrator models"
orchestrator models | tee "$work/models.txt"
for id in local/smollm2 baseline/rules; do
  grep -q -- "$id" "$work/models.txt" || fail "orchestrator models does not list the shipped $id"
done

step "\$ orchestrator bench -p limit 1 -p modes '\"classify\"' --models baseline/rules --run-id wheel-check"
orchestrator bench -p limit 1 -p modes '"classify"' --models baseline/rules --run-id wheel-check
for f in reports/wheel-check.ipynb reports/wheel-check.html; do
  [[ -s "$f" ]] || fail "$f was not written in the working directory"
done
grep -q "baseline/rules" reports/wheel-check.html || fail "the report does not mention baseline/rules"
if grep -q -- "$work" reports/wheel-check.html reports/wheel-check.ipynb; then
  fail "the report shows absolute paths of this machine ($work)"
fi
step "ok: reports/wheel-check.html written outside the checkout"
