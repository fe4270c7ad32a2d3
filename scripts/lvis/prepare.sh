#!/usr/bin/env bash
# Check an LVIS v1 data root and write CDB's held-out split:  scripts/lvis/prepare.sh [DATA_ROOT] [--cdb-heldout N]
#
# Nothing is downloaded. Put the files here (mmdet's LVISV1Dataset layout; DATA_ROOT defaults to data/lvis_v1):
#
#   DATA_ROOT/annotations/lvis_v1_train.json   from lvis_v1_train.json.zip (lvisdataset.org, "LVIS v1.0")
#   DATA_ROOT/annotations/lvis_v1_val.json     from lvis_v1_val.json.zip
#   DATA_ROOT/train2017/                       COCO 2017 train images (cocodataset.org, train2017.zip)
#   DATA_ROOT/val2017/                         COCO 2017 val images (val2017.zip)
#
# LVIS v1 uses the COCO 2017 images: each image's coco_url names its folder (val holds images of both), so
# symlinks to an existing COCO copy work:  ln -s /data/coco/train2017 data/lvis_v1/train2017
#
# The check reports the counts and sizes of both json files, every image a coco_url points to that is missing
# or empty (errors), and counts that differ from the LVIS v1 / COCO 2017 release (warnings).
# --cdb-heldout N writes lvis_v1_train_cdb.json (train minus N random images, seed 0) and
# lvis_v1_cdb_heldout.json (those N images) for the cdb config; 5000 (5 % of train) is the suggested N.
# Paths are relative to the current folder.
set -euo pipefail
source "$(dirname "$0")/_common.sh"

DATA_ROOT=$LVIS_ROOT
HELDOUT=
while (($#)); do
    case $1 in
        --cdb-heldout) HELDOUT=${2:?--cdb-heldout needs a number of images}; shift 2 ;;
        -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
        -*) echo "unknown option $1 (options: --cdb-heldout N)" >&2; exit 2 ;;
        *) DATA_ROOT=$1; shift ;;
    esac
done
if [[ ! -d $DATA_ROOT ]]; then
    echo "$DATA_ROOT does not exist; create it with the layout in $0" >&2
    exit 1
fi
"$PY" "$ROOT/scripts/lvis/lvis_tools.py" check "$DATA_ROOT"
if [[ -n $HELDOUT ]]; then
    "$PY" "$ROOT/scripts/lvis/lvis_tools.py" split-heldout "$DATA_ROOT" --num "$HELDOUT"
fi
