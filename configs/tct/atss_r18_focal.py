# ATSS R18 (narrow, CPU) on synthetic TCT patches with sigmoid focal loss (the one-stage baseline).
_base_ = [
    "_base_/models/atss_r18.py",
    "_base_/datasets/tct_patches.py",
    "_base_/schedules/cpu_1k.py",
    "_base_/default_runtime.py",
]
