#!/usr/bin/env bash
# GPU smoke test of the LVIS reproduction on a CUDA machine:  scripts/lvis/gpu_smoke.sh [OUT]
#
# 1. Builds mmcv 2.1.0 with its CUDA ops against the venv's torch (FORCE_CUDA=1, MMCV_WITH_OPS=1, MAX_JOBS = all
#    cores) in the background, logging to OUT/mmcv_build.log; progress lines every minute. The wheel on PyPI has
#    CPU ops only, and RoIAlign / NMS on CUDA tensors need the CUDA ones. MMCV_SRC names what pip builds from
#    (default "mmcv==2.1.0" from the index; an offline machine needs a local sdist or checkout, e.g.
#    MMCV_SRC=/data/mmcv-2.1.0.tar.gz). --no-deps: torch stays as it is. SKIP_BUILD=1 reuses an installed build.
# 2. Checks that mmcv's RoIAlign and NMS run on CUDA tensors.
# 3. Trains 50 iterations of two configs (METHODS, default "rfs_mmdet eqlv2": mmdet's recipe and the authors'
#    EQLv2 with its objectness output) on a mini LVIS set of 100 train images (one epoch = 50 iterations at
#    batch 2) on one GPU with AMP, through train.sh (-- --allow-random-init is not needed: the mini set is
#    exempt from the weights check), then evaluates each with evaluate.sh.
# 4. Writes OUT/summary.txt: torch / CUDA / mmcv versions, build time, per-config train and eval times, final
#    loss and the mini-set AP (near 0 after 50 iterations from scratch: the point is that it runs).
# OUT defaults to work_dirs/gpu_smoke. Exit status: 0 when every step ran, else the failing step's.
set -euo pipefail
source "$(dirname "$0")/_common.sh"
cd "$ROOT"

OUT=${1:-work_dirs/gpu_smoke}
METHODS=${METHODS:-rfs_mmdet eqlv2}
MMCV_SRC=${MMCV_SRC:-mmcv==2.1.0}
mkdir -p "$OUT"
SUMMARY=$OUT/summary.txt
: >"$SUMMARY"
note() { echo "$*" | tee -a "$SUMMARY"; }

"$PY" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name(0))" \
    || { echo "gpu_smoke.sh needs a CUDA device" >&2; exit 3; }
note "date: $(date -u +%FT%TZ)  commit: $(git rev-parse HEAD 2>/dev/null || echo unknown)"
note "$("$PY" -c "import torch; print(f'torch {torch.__version__}, CUDA {torch.version.cuda}, {torch.cuda.get_device_name(0)}')")"
note "cores: $(nproc)"

# ---------------------------------------------------------------------------------------------- 1. mmcv build
if [[ ${SKIP_BUILD:-0} != 1 ]]; then
    start=$SECONDS
    (
        FORCE_CUDA=1 MMCV_WITH_OPS=1 MAX_JOBS=$(nproc) "$PY" -m pip install --no-build-isolation --no-deps \
            --no-binary mmcv --force-reinstall -v "$MMCV_SRC" >"$OUT/mmcv_build.log" 2>&1
    ) &
    build=$!
    while kill -0 "$build" 2>/dev/null; do
        sleep 60
        echo "mmcv build: $((SECONDS - start)) s, $(wc -l <"$OUT/mmcv_build.log") log lines, last: $(tail -c 120 "$OUT/mmcv_build.log" | tr '\n' ' ')"
    done
    if ! wait "$build"; then
        note "mmcv build FAILED after $((SECONDS - start)) s; see $OUT/mmcv_build.log (last lines below)"
        tail -n 30 "$OUT/mmcv_build.log" | tee -a "$SUMMARY"
        exit 4
    fi
    note "mmcv build: $((SECONDS - start)) s with MAX_JOBS=$(nproc)"
fi

# ---------------------------------------------------------------------------------------------- 2. CUDA ops
"$PY" - <<'EOF' | tee -a "$SUMMARY"
import mmcv
import torch
from mmcv.ops import RoIAlign, nms

feat = torch.randn(1, 8, 32, 32, device="cuda")
rois = torch.tensor([[0, 2.0, 2.0, 20.0, 20.0]], device="cuda")
out = RoIAlign((7, 7), 1.0, sampling_ratio=0)(feat, rois)
boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], dtype=torch.float32, device="cuda")
_, keep = nms(boxes, torch.tensor([0.9, 0.8, 0.7], device="cuda"), 0.5)
assert out.is_cuda and out.shape == (1, 8, 7, 7) and keep.tolist() == [0, 2]
print(f"mmcv {mmcv.__version__}: RoIAlign and NMS run on CUDA")
EOF

# ---------------------------------------------------------------------------------------------- 3. train, evaluate
MINI=$OUT/mini_lvis
[[ -f $MINI/annotations/lvis_v1_train.json ]] ||
    "$PY" scripts/lvis/make_mini_lvis.py "$MINI" --train-images 100 --val-images 20 --size 256
status=0
for method in $METHODS; do
    start=$SECONDS
    if MINI_LVIS=$MINI WORK_DIRS=$OUT/work AMP=1 scripts/lvis/train.sh "$method" 1 -- \
        --cfg-options train_cfg.max_epochs=1 --cfg-options default_hooks.logger.interval=10 \
        >"$OUT/train_$method.log" 2>&1; then
        iters=$(grep -o 'Iter(train) \[ *[0-9]*/' "$OUT/train_$method.log" | tail -1 || true)
        loss=$(grep -o ' loss: [0-9.]*' "$OUT/train_$method.log" | tail -1 || true)
        note "$method: trained in $((SECONDS - start)) s (${iters:-?}${loss:-})"
    else
        note "$method: training FAILED after $((SECONDS - start)) s; last lines of $OUT/train_$method.log:"
        tail -n 20 "$OUT/train_$method.log" | tee -a "$SUMMARY"
        status=5
        continue
    fi
    start=$SECONDS
    ckpt=$OUT/work/$method/epoch_1.pth
    if MINI_LVIS=$MINI WORK_DIRS=$OUT/work scripts/lvis/evaluate.sh "$method" "$ckpt" >"$OUT/eval_$method.log" 2>&1; then
        note "$method: evaluated in $((SECONDS - start)) s"
        grep -A4 "AP50" "$OUT/eval_$method.log" | tail -n 5 | tee -a "$SUMMARY" || true
    else
        note "$method: evaluation FAILED; last lines of $OUT/eval_$method.log:"
        tail -n 20 "$OUT/eval_$method.log" | tee -a "$SUMMARY"
        status=6
    fi
done
note "gpu_smoke.sh finished with status $status; summary in $SUMMARY"
exit $status
