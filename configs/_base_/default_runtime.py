default_scope = 'mmfacekd'

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50),
    param_scheduler=dict(type='ParamSchedulerHook'),
    # atomic writes (temp file + rename): a full disk or a kill mid-save
    # leaves the previous checkpoints intact (mmfacekd/engine)
    checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=3,
                    save_best='mean/accuracy', rule='greater',
                    backend_args=dict(backend='atomic_local')),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    # weights_only checkpoint loading/saving for Runners built from Python
    # (the tools also call mmfacekd.utils.register_safe_globals themselves)
    safe_checkpoint=dict(type='SafeCheckpointHook'),
    # stop at the first NaN/inf loss term, before it can be checkpointed
    nonfinite_loss=dict(type='NonFiniteLossHook'),
    # records skipped by a dataset with on_corrupt='skip': logged per epoch,
    # saved to <work_dir>/corrupt_records.json, bounded
    corrupt_records=dict(type='CorruptRecordHook', max_fraction=0.001),
    # global RNG states in checkpoints: a resumed run replays exactly
    rng_state=dict(type='RNGStateHook'),
    # full PartialFC heads (+ momentum) in checkpoints, resharded on load:
    # resume on another world size (a no-op without a sharded head)
    sharded_head=dict(type='ShardedHeadCheckpointHook'),
)

env_cfg = dict(
    cudnn_benchmark=True,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='nccl'),
)

# Works on GPUs (as MMDistributedDataParallel) and on CPU with gloo.
model_wrapper_cfg = dict(
    # scoped: looked up in MMEngine's root registry
    type='mmfacekd.FaceDistributedDataParallel',
    broadcast_buffers=False,
    find_unused_parameters=False)

vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='Visualizer', vis_backends=vis_backends)
log_processor = dict(by_epoch=True, window_size=50)
log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=0, deterministic=False)
