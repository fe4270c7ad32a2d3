# Shared by train.sh and evaluate.sh (sourced): the method -> config table and the run-config step.
# shellcheck shell=bash

# METHOD -> configs/lvis/<name>.py. NorCal is test-time only: it evaluates the rfs run's checkpoint.
declare -A LVIS_CONFIGS=(
    [random]=mask_rcnn_r50_fpn_random_1x
    [rfs]=mask_rcnn_r50_fpn_rfs_1x
    [rfs_mmdet]=mask_rcnn_r50_fpn_rfs_1x_mmdet
    [eql]=mask_rcnn_r50_fpn_eql_1x
    [eqlv2]=mask_rcnn_r50_fpn_eqlv2_1x
    [eqlv2_c]=mask_rcnn_r50_fpn_eqlv2_c_1x
    [seesaw]=mask_rcnn_r50_fpn_seesaw_normed_rfs_2x
    [seesaw_mmdet]=mask_rcnn_r50_fpn_seesaw_normed_rfs_2x_mmdet
    [federated]=mask_rcnn_r50_fpn_federated_rfs_1x
    [cdb]=mask_rcnn_r50_fpn_cdb_1x
    [copypaste]=mask_rcnn_r50_fpn_copypaste_rfs_1x
    [norcal]=mask_rcnn_r50_fpn_norcal_rfs_1x
    [atss]=atss_r50_fpn_focal_rfs_2x
    [efl]=atss_r50_fpn_efl_rfs_2x
    [gradlibra]=atss_r50_fpn_gradlibra_rfs_2x
    [gol]=mask_rcnn_r50_fpn_gol_normed_rfs_2x
    [iif]=mask_rcnn_r50_fpn_iif_rfs_2x
    [cascade]=cascade_mask_rcnn_r50_fpn_random_1x
    [cascade_rfs]=cascade_mask_rcnn_r50_fpn_rfs_1x
    [cascade_eql]=cascade_mask_rcnn_r50_fpn_eql_1x
    [cascade_eqlv2]=cascade_mask_rcnn_r50_fpn_eqlv2_1x
    [cascade_federated]=cascade_mask_rcnn_r50_fpn_federated_rfs_1x
    [cascade_seesaw]=cascade_mask_rcnn_r50_fpn_seesaw_normed_rfs_2x
    [pcb]=mask_rcnn_r50_fpn_pcb_rfs_2x
    [tde]=mask_rcnn_r50_fpn_tde_1x
    [crt]=mask_rcnn_r50_fpn_crt_1x
)

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PY=${PYTHON:-$ROOT/.venv/bin/python}
LVIS_ROOT=${LVIS_ROOT:-data/lvis_v1}
WORK_DIRS=${WORK_DIRS:-work_dirs/lvis}

lvis_methods() { printf '%s\n' "${!LVIS_CONFIGS[@]}" | sort | paste -sd' '; }

# lvis_config METHOD -> path of its config, or exit 2 listing the choices.
lvis_config() {
    local name=${LVIS_CONFIGS[${1:-}]:-}
    if [[ -z $name ]]; then
        echo "METHOD must be one of: $(lvis_methods); got '${1:-}'" >&2
        exit 2
    fi
    echo "$ROOT/configs/lvis/$name.py"
}

# write_run_config CONFIG OUT [extra lvis_tools config args]: the config on this run's data (LVIS_ROOT, or
# the mini set MINI_LVIS), with PRETRAINED backbone weights when given (default: checkpoints/resnet50-0676ba61.pth
# when that file exists; cytolt train verifies it and refuses a full-data run without it).
write_run_config() {
    local config=$1 out=$2
    shift 2
    local weights=()
    [[ -z ${PRETRAINED:-} && -f $ROOT/checkpoints/resnet50-0676ba61.pth ]] && PRETRAINED=$ROOT/checkpoints/resnet50-0676ba61.pth
    [[ -n ${PRETRAINED:-} ]] && weights=(--pretrained "$PRETRAINED") && echo "backbone weights: $PRETRAINED"
    if [[ -n ${MINI_LVIS:-} ]]; then
        "$PY" "$ROOT/scripts/lvis/make_mini_lvis.py" "$MINI_LVIS" --config "$config" --config-out "$out"
        "$PY" "$ROOT/scripts/lvis/lvis_tools.py" config "$out" --out "$out" "${weights[@]}" "$@"
    else
        "$PY" "$ROOT/scripts/lvis/lvis_tools.py" config "$config" --out "$out" --data-root "$LVIS_ROOT" \
            "${weights[@]}" "$@"
    fi
}
