# The evaluation data loader every test set shares: in order, no shuffling,
# no sample dropped. A set's file inherits it and adds `dataset` (and its own
# batch_size / num_workers where they differ).
test_dataloader = dict(
    batch_size=256,
    num_workers=4,
    persistent_workers=False,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False))
