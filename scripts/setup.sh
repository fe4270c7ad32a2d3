#!/usr/bin/env bash
# Create .venv with cytolt's full stack. Idempotent: a second run checks a stamp and exits in seconds.
#
#   CYTOLT_WHEEL_CACHE   where the mmcv wheel built here is kept (default ~/.cache/cytolt/wheels)
#   CYTOLT_VENV          virtualenv folder (default .venv)
#   PYTHON               interpreter used to create the venv (default python3.11, else python3)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
VENV=${CYTOLT_VENV:-$ROOT/.venv}
CACHE=${CYTOLT_WHEEL_CACHE:-$HOME/.cache/cytolt/wheels}
PY=${PYTHON:-$(command -v python3.11 || command -v python3)}
CONSTRAINTS=$ROOT/constraints.txt
MMCV_VERSION=$(sed -n 's/^mmcv==//p' "$CONSTRAINTS")
STAMP=$VENV/.cytolt-setup-stamp
# The stamp records what the venv was built from; any change to the pins or extras rebuilds.
WANT=$(cat "$CONSTRAINTS" pyproject.toml plugins/napari-cytolt/pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)

log() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

if [[ -f $STAMP && $(cat "$STAMP") == "$WANT" ]]; then
    log "environment up to date ($VENV)"
    exit 0
fi

if [[ ! -x $VENV/bin/python ]]; then
    log "creating virtualenv $VENV with $PY"
    "$PY" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
"${PIP[@]}" install -c "$CONSTRAINTS" -U pip wheel 'setuptools<81' ninja

# torch first and alone, so nothing later can pull a different build.
log "installing torch and torchvision"
"${PIP[@]}" install -c "$CONSTRAINTS" torch torchvision numpy

# mmcv: no wheel exists for this torch; build once from the sdist and cache the wheel outside the repo.
TORCH_TAG=$("$VENV/bin/python" -c 'import torch; print(torch.__version__.replace("+", "_"))')
CUDA_OPS=0
if command -v nvcc >/dev/null 2>&1 && command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    CUDA_OPS=1
fi
WHEEL_DIR=$CACHE/mmcv-$MMCV_VERSION-torch$TORCH_TAG-cuda$CUDA_OPS
mkdir -p "$WHEEL_DIR"
WHEEL=$(ls "$WHEEL_DIR"/mmcv-*.whl 2>/dev/null | head -n1 || true)
if [[ -z $WHEEL ]]; then
    JOBS=${MAX_JOBS:-$(nproc)}
    log "building mmcv $MMCV_VERSION from source (CUDA ops: $CUDA_OPS, $JOBS jobs; ~9 min on 2 cores, done once)"
    BUILD=$(mktemp -d)
    trap 'rm -rf "$BUILD"' EXIT
    "${PIP[@]}" download --no-deps --no-build-isolation --no-binary :all: "mmcv==$MMCV_VERSION" -d "$BUILD"
    tar -xzf "$BUILD"/mmcv-"$MMCV_VERSION".tar.gz -C "$BUILD"
    SRC=$BUILD/mmcv-$MMCV_VERSION
    # torch >= 2.10 headers need C++20; the sdist asks for C++17.
    sed -i 's/-std=c++17/-std=c++20/g' "$SRC/setup.py"
    (cd "$SRC" && MMCV_WITH_OPS=1 FORCE_CUDA=$CUDA_OPS MAX_JOBS=$JOBS \
        "$VENV/bin/python" -m pip --disable-pip-version-check -q wheel --no-build-isolation --no-deps . -w "$WHEEL_DIR")
    WHEEL=$(ls "$WHEEL_DIR"/mmcv-*.whl | head -n1)
    log "cached $WHEEL"
fi
log "installing mmcv from $WHEEL"
"${PIP[@]}" install -c "$CONSTRAINTS" --no-deps "$WHEEL"

log "installing cytolt with extras [dev,napari,dask] and the napari plugin"
"${PIP[@]}" install -c "$CONSTRAINTS" -e "$ROOT[dev,napari,dask]" -e "$ROOT/plugins/napari-cytolt"
# mmcv pulls opencv-python (built with Qt) and albumentations opencv-python-headless; both write cv2/. The Qt one
# points Qt at cv2's own plugins and aborts napari's window when cv2 is imported first, so headless goes last.
OPENCV=$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("opencv-python-headless"))')
"${PIP[@]}" install --force-reinstall --no-deps "opencv-python-headless==$OPENCV"
"${PIP[@]}" check || log "warning: pip check reported the conflicts above"

# napari tests need an X server; Xvfb comes from apt.
if ! command -v Xvfb >/dev/null 2>&1; then
    if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null 2>&1; then
        log "installing Xvfb and libxcb packages with apt"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq xvfb libxcb-icccm4 libxcb-keysyms1 libxcb-xinerama0 >/dev/null \
            || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq xvfb libxcb-icccm4 libxcb-keysyms1 libxcb-xinerama0 >/dev/null)
    else
        log "Xvfb not found and not root: napari tests will be skipped."
        log "  install with: sudo apt-get install xvfb libxcb-icccm4 libxcb-keysyms1 libxcb-xinerama0"
    fi
fi
echo "$WANT" > "$STAMP"
log "done: $VENV"
