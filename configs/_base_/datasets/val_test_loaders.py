# test_loader.py's evaluation loader as both the validation and the test
# loader (verification.py, synthetic.py add their `dataset`).
_base_ = './test_loader.py'
val_dataloader = {{_base_.test_dataloader}}
