# IResNet-100 + ArcFace (s=64, m=0.5), insightface-compatible backbone:
# iresnet50.py with depth 100.
_base_ = './iresnet50.py'
model = dict(backbone=dict(depth=100))
