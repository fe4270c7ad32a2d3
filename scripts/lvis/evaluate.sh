#!/usr/bin/env bash
# Evaluate a checkpoint on LVIS v1 val:  scripts/lvis/evaluate.sh METHOD CHECKPOINT
#
# 1. `cytolt eval` runs the METHOD's config on val; mmdet's LVISMetric prints lvis-api's AP and dumps the
#    detections (outfile_prefix) to OUT/results.bbox.json (and .segm.json for Mask R-CNN).
# 2. lvis_tools.py score reads those files and reports, through cytolt.evaluate (lvis-api underneath),
#    standard LVIS AP (300 detections per image) and fixed AP (Dave et al. 2021: no per-image cap, the top
#    10,000 detections per class), each with AP50/AP75/APs/APm/APl/APr/APc/APf; OUT/scores.json keeps them.
# Fixed AP can only use the detections the model emitted: set DETS_PER_IMG above 300 (e.g. 1000, with the
# bbox-only ATSS configs; masks for 1000 detections per image make very large files) to approach Dave et al.'s
# protocol; standard AP stays exact since lvis-api keeps each image's top 300.
# Environment: LVIS_ROOT, WORK_DIRS, MINI_LVIS as in train.sh; OUT (default WORK_DIRS/METHOD/eval_<ckpt>);
# DETS_PER_IMG (default: the config's 300); NORCAL_GAMMA (norcal only; default: the gamma norcal_sweep.py wrote
# next to the checkpoint, norcal_gamma.json, else the config's 0.6). Runs in one process (no launcher).
# Example: scripts/lvis/evaluate.sh norcal work_dirs/lvis/rfs/epoch_12.pth
set -euo pipefail
source "$(dirname "$0")/_common.sh"
cd "$ROOT"

METHOD=${1:-}
CHECKPOINT=${2:-}
CONFIG=$(lvis_config "$METHOD")
if [[ ! -f $CHECKPOINT ]]; then
    echo "CHECKPOINT not found: '$CHECKPOINT' (usage: evaluate.sh METHOD CHECKPOINT)" >&2
    exit 2
fi
OUT=${OUT:-$WORK_DIRS/$METHOD/eval_$(basename "$CHECKPOINT" .pth)}
mkdir -p "$OUT"
RUN_CONFIG=$OUT/$(basename "$CONFIG")
extra=()
[[ -n ${DETS_PER_IMG:-} ]] && extra=(--dets-per-img "$DETS_PER_IMG")
write_run_config "$CONFIG" "$RUN_CONFIG" "${extra[@]}"

# cytolt eval reads weights without unpickling; a training checkpoint's state dict is extracted first.
WEIGHTS=$OUT/model.safetensors
"$PY" "$ROOT/scripts/lvis/lvis_tools.py" weights "$CHECKPOINT" --out "$WEIGHTS"
options=(--cfg-options "test_evaluator.outfile_prefix=$OUT/results")
if [[ $METHOD == norcal ]]; then
    GAMMA=${NORCAL_GAMMA:-$("$PY" "$ROOT/scripts/lvis/norcal_sweep.py" chosen "$CHECKPOINT")}
    if [[ -n $GAMMA ]]; then
        options+=(--cfg-options "model.roi_head.bbox_head.gamma=$GAMMA")
        echo "NorCal gamma: $GAMMA"
    else
        echo "NorCal gamma: the config's (untuned; run scripts/lvis/norcal_sweep.py sweep $CHECKPOINT)" >&2
    fi
fi
"$PY" -m cytolt eval "$RUN_CONFIG" "$WEIGHTS" --out "$OUT/mmdet_metrics.json" "${options[@]}"
GT=$("$PY" -c "from mmengine.config import Config; print(Config.fromfile('$RUN_CONFIG').test_evaluator.ann_file)")
"$PY" "$ROOT/scripts/lvis/lvis_tools.py" score "$GT" "$OUT/results" --out "$OUT/scores.json"
