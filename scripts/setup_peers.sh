#!/usr/bin/env bash
# Create .venv-peers: cytolt next to the tools it is benchmarked against (bench/peers/, `make bench-peers`).
# A separate virtualenv, so that the peers' own pins never reach the product's .venv. Idempotent: a second
# run checks a stamp and exits in seconds.
#
#   CYTOLT_PEERS_VENV    virtualenv folder (default .venv-peers)
#   CYTOLT_WHEEL_CACHE   where scripts/setup.sh keeps the mmcv wheel it built (default ~/.cache/cytolt/wheels)
#   PYTHON               interpreter used to create the venv (default python3.11, else python3)
#
# Same torch as the product (constraints.txt applies to every pip call); cytolt is installed editable without
# the napari extra. A peer that fails to install is written to $VENV/peers-missing.txt with pip's last error
# line, and the benchmarks report it as missing instead of failing.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
VENV=${CYTOLT_PEERS_VENV:-$ROOT/.venv-peers}
CACHE=${CYTOLT_WHEEL_CACHE:-$HOME/.cache/cytolt/wheels}
PY=${PYTHON:-$(command -v python3.11 || command -v python3)}
CONSTRAINTS=$ROOT/constraints.txt
MMCV_VERSION=$(sed -n 's/^mmcv==//p' "$CONSTRAINTS")
# Each peer is installed on its own, so one that cannot be installed leaves the others in place.
PEERS=(tiffslide monai tiatoolbox sahi faster-coco-eval)
STAMP=$VENV/.cytolt-peers-stamp
MISSING=$VENV/peers-missing.txt
WANT=$(cat "$CONSTRAINTS" pyproject.toml scripts/setup_peers.sh | sha256sum | cut -c1-16)

log() { printf '\033[1m[setup-peers]\033[0m %s\n' "$*"; }

if [[ -f $STAMP && $(cat "$STAMP") == "$WANT" ]]; then
    log "environment up to date ($VENV)"
    exit 0
fi

if [[ ! -x $VENV/bin/python ]]; then
    log "creating virtualenv $VENV with $PY"
    "$PY" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
"${PIP[@]}" install -c "$CONSTRAINTS" -U pip wheel 'setuptools<81'

log "installing torch and torchvision (the product's pins)"
"${PIP[@]}" install -c "$CONSTRAINTS" torch torchvision numpy

# mmdet (a cytolt dependency) needs mmcv, which has no wheel for this torch: reuse the one scripts/setup.sh built.
TORCH_TAG=$("$VENV/bin/python" -c 'import torch; print(torch.__version__.replace("+", "_"))')
WHEEL=$(ls "$CACHE"/mmcv-"$MMCV_VERSION"-torch"$TORCH_TAG"-cuda*/mmcv-*.whl 2>/dev/null | head -n1 || true)
if [[ -z $WHEEL ]]; then
    log "no cached mmcv wheel for torch $TORCH_TAG: running scripts/setup.sh to build it"
    scripts/setup.sh
    WHEEL=$(ls "$CACHE"/mmcv-"$MMCV_VERSION"-torch"$TORCH_TAG"-cuda*/mmcv-*.whl | head -n1)
fi
log "installing mmcv from $WHEEL"
"${PIP[@]}" install -c "$CONSTRAINTS" --no-deps "$WHEEL"

log "installing cytolt (editable, no napari extra)"
"${PIP[@]}" install -c "$CONSTRAINTS" -e "$ROOT"

: > "$MISSING"
for peer in "${PEERS[@]}"; do
    log "installing $peer"
    if ! out=$("${PIP[@]}" install -c "$CONSTRAINTS" "$peer" 2>&1); then
        reason=$(grep -E 'ERROR|error:' <<< "$out" | tail -n1 || true)
        log "could not install $peer: ${reason:-see pip output}"
        printf '%s\t%s\n' "$peer" "${reason:-pip install failed}" >> "$MISSING"
    fi
done
"${PIP[@]}" check || log "warning: pip check reported the conflicts above"
echo "$WANT" > "$STAMP"
log "done: $VENV ($(wc -l < "$MISSING") peer(s) missing)"
