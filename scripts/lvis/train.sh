#!/usr/bin/env bash
# Train one LVIS v1 reproduction run:  scripts/lvis/train.sh METHOD [GPUS] [-- cytolt train options]
#
#   METHOD   random rfs rfs_mmdet eql eqlv2 eqlv2_c seesaw seesaw_mmdet federated cdb copypaste atss efl gradlibra gol
#            iif, cascade cascade_rfs cascade_eql cascade_eqlv2 cascade_federated cascade_seesaw pcb tde crt
#            (norcal: see evaluate.sh; crt is stage 2: train 'random' first, its epoch_12.pth is crt's load_from).
#            *_mmdet are mmdet's own recipes for its published numbers (ClassBalancedDataset).
#   GPUS     processes on this machine (default 1); more than one runs torchrun + `cytolt train --launcher
#            pytorch`. The published numbers used 8 GPUs x 2 images (lr 0.02 / 0.01 for ATSS). At another total
#            batch a full-data run is refused unless LR says what to do; the total batch and lr are printed.
# Environment:
#   LVIS_ROOT   data root checked by prepare.sh (default data/lvis_v1)
#   PRETRAINED  local ImageNet ResNet-50 weights (default checkpoints/resnet50-0676ba61.pth when it exists;
#               torchvision's IMAGENET1K_V1, what the published numbers start from). cytolt train checks its
#               SHA-256 and writes backbone_weights.json into the run folder; without weights a full-data run
#               refuses to start (pass `-- --allow-random-init` to train from a random backbone on purpose).
#   LR          scale | keep, needed when GPUS x 2 != 16 on full data: linear lr rule (auto_scale_lr, base 16)
#               or the config's lr at the other batch
#   WORK_DIRS   run folders go to WORK_DIRS/METHOD (default work_dirs/lvis)
#   AMP=1       mixed precision (default off: the published runs are FP32)
#   MINI_LVIS   a mini set folder (make_mini_lvis.py; created if missing): the same config on it, e.g. on CPU
# Example:  PRETRAINED=checkpoints/resnet50-0676ba61.pth scripts/lvis/train.sh rfs 8
set -euo pipefail
source "$(dirname "$0")/_common.sh"
cd "$ROOT"

METHOD=${1:-}
GPUS=${2:-1}
shift $(($# < 2 ? $# : 2))
[[ ${1:-} == -- ]] && shift
if [[ $METHOD == norcal ]]; then
    echo "norcal is applied at test time: train 'rfs', then scripts/lvis/evaluate.sh norcal $WORK_DIRS/rfs/epoch_12.pth" >&2
    exit 2
fi
CONFIG=$(lvis_config "$METHOD")
if ! [[ $GPUS =~ ^[1-9][0-9]*$ ]]; then
    echo "GPUS must be a positive integer; got '$GPUS'" >&2
    exit 2
fi
WORK=$WORK_DIRS/$METHOD
RUN_CONFIG=$WORK/$(basename "$CONFIG")
lr=()
[[ -n ${LR:-} ]] && lr=(--lr "$LR")
write_run_config "$CONFIG" "$RUN_CONFIG" --gpus "$GPUS" "${lr[@]}"
"$PY" "$ROOT/scripts/lvis/collect.py" record "$WORK" --method "$METHOD" --config "$RUN_CONFIG" --gpus "$GPUS"

AMP_FLAG=--no-amp
[[ ${AMP:-0} == 1 ]] && AMP_FLAG=--amp
if ((GPUS > 1)); then
    "$PY" -m torch.distributed.run --nproc-per-node "$GPUS" -m cytolt train "$RUN_CONFIG" --work-dir "$WORK" \
        --launcher pytorch "$AMP_FLAG" "$@"
else
    "$PY" -m cytolt train "$RUN_CONFIG" --work-dir "$WORK" "$AMP_FLAG" "$@"
fi
echo "evaluate: scripts/lvis/evaluate.sh $METHOD $WORK/epoch_<last>.pth"
