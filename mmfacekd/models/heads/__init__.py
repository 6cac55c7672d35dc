from .margin_head import (
                          ArcFaceHead,
                          CosFaceHead,
                          MarginHead,
                          combined_margin_cosine,
                          stack_gt_labels,
)

__all__ = ['MarginHead', 'ArcFaceHead', 'CosFaceHead',
           'combined_margin_cosine', 'stack_gt_labels']
