from .margin_head import (
                          ArcFaceHead,
                          CosFaceHead,
                          MarginHead,
                          combined_margin_cosine,
                          stack_gt_labels,
)
from .partial_fc_head import PartialFCHead

__all__ = ['MarginHead', 'ArcFaceHead', 'CosFaceHead', 'PartialFCHead',
           'combined_margin_cosine', 'stack_gt_labels']
