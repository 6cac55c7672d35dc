# The SGD optimizer of the GKD paper (lr 0.1, momentum 0.9, weight decay
# 5e-4), shared by sgd_26e.py and cpu_demo.py; a schedule file adds the
# lr schedule and the loop.
optim_wrapper = dict(
    type='OptimWrapper',
    # only parameters that require grad (a frozen teacher stays out)
    constructor='TrainableParamsOptimWrapperConstructor',
    optimizer=dict(type='SGD', lr=0.1, momentum=0.9, weight_decay=5e-4))
val_cfg = dict()
test_cfg = dict()
