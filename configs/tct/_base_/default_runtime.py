default_scope = "mmdet"
default_hooks = dict(
    timer=dict(type="IterTimerHook"),
    logger=dict(type="LoggerHook", interval=50),
    param_scheduler=dict(type="ParamSchedulerHook"),
    checkpoint=dict(type="CheckpointHook", interval=500, by_epoch=False, max_keep_ckpts=2, save_last=True),
    # DistSamplerSeedHook + cytolt samplers made endless in iteration loops (no 2 s stall between passes)
    sampler_seed=dict(type="SamplerSeedHook"),
    visualization=dict(type="DetVisualizationHook"),
)
env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method="fork", opencv_num_threads=0),
    dist_cfg=dict(backend="nccl"),
)
vis_backends = [dict(type="LocalVisBackend")]
visualizer = dict(type="DetLocalVisualizer", vis_backends=vis_backends, name="visualizer")
log_processor = dict(type="LogProcessor", window_size=50, by_epoch=False)
log_level = "INFO"
# No pretrained weights are downloaded. To start from local ones: load_from = "/path/to/checkpoint.pth"
# (a state dict), or set model.backbone.init_cfg=dict(type="Pretrained", checkpoint="/path/resnet18.pth").
load_from = None
resume = False
randomness = dict(seed=0, deterministic=False)
