# Runtime of the LVIS reproduction: mmdet's default_runtime plus cytolt's registrations.
# cytolt.mm registers cytolt's losses, samplers, hooks and transforms and restores np.float for lvis-api 0.5.3;
# cytolt.mm.lvis adds RoISigmoidLoss, NorCalShared2FCBBoxHead and ClassAwareMixDataset.
default_scope = "mmdet"
custom_imports = dict(imports=["cytolt.mm", "cytolt.mm.lvis"], allow_failed_imports=False)
default_hooks = dict(
    timer=dict(type="IterTimerHook"),
    logger=dict(type="LoggerHook", interval=50),
    param_scheduler=dict(type="ParamSchedulerHook"),
    checkpoint=dict(type="CheckpointHook", interval=1, max_keep_ckpts=3),
    sampler_seed=dict(type="DistSamplerSeedHook"),
    visualization=dict(type="DetVisualizationHook"),
)
env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method="fork", opencv_num_threads=0),
    dist_cfg=dict(backend="nccl"),
)
vis_backends = [dict(type="LocalVisBackend")]
visualizer = dict(type="DetLocalVisualizer", vis_backends=vis_backends, name="visualizer")
log_processor = dict(type="LogProcessor", window_size=50, by_epoch=True)
log_level = "INFO"
load_from = None
resume = False
