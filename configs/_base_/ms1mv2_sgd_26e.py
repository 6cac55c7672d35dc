# The GKD Table 5 training setting without a model: MS1MV2 training data, the
# five .bin verification sets for validation and test, SGD for 26 epochs and
# the default runtime. A config adds a FaceRecognizer or a FaceDistiller.
_base_ = [
    './datasets/ms1mv2.py', './datasets/verification.py',
    './schedules/sgd_26e.py', './default_runtime.py'
]
