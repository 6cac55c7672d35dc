"""Re-estimate BatchNorm statistics on real crops (for untrained models).

A randomly initialised network has BatchNorm running statistics (0, 1)
that do not match its activations, so its embeddings drift to tiny or huge
scales and an export check on it says little. Re-estimating the statistics
on real crops (train-mode forwards, cumulative average) gives unit-scale
activations like a trained network's, without training.
"""
import numpy as np
import torch
import torch.nn as nn


@torch.no_grad()
def recalibrate_batchnorm(recognizer: nn.Module, crops: np.ndarray,
                          batch_size: int = 64) -> nn.Module:
    """Set every BatchNorm's running mean/var of ``recognizer`` (a
    FaceRecognizer) to the statistics of ``crops`` ((N, H, W, 3) uint8 RGB,
    through its data preprocessor); returns it in eval mode."""
    bns = [m for m in recognizer.modules()
           if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average over the batches
    recognizer.train()
    try:
        for i in range(0, len(crops), batch_size):
            batch = [torch.from_numpy(np.ascontiguousarray(
                c.transpose(2, 0, 1))) for c in crops[i:i + batch_size]]
            data = recognizer.data_preprocessor(dict(inputs=batch), False)
            recognizer.extract_feat(data['inputs'])
    finally:
        for m, momentum in zip(bns, momenta):
            m.momentum = momentum
        recognizer.eval()
    return recognizer
