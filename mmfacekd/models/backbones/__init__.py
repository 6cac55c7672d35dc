from .iresnet import IResNet
from .mobilefacenet import MobileFaceNet
from .prompted_swin import PromptedSwinTransformer

__all__ = ['IResNet', 'MobileFaceNet', 'PromptedSwinTransformer']
