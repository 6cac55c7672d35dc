# IJB-B 1:1 template verification (set definition and layout: ijb.py).
# Metric keys (%): ijbb/tpr@fpr1e-6 ... ijbb/tpr@fpr1e-1.
_base_ = ['./ijb.py', './test_loader.py']
test_dataloader = dict(dataset={{_base_.ijb_datasets.ijbb}})
test_evaluator = {{_base_.ijb_evaluators.ijbb}}
