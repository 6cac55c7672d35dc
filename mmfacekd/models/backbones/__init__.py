from .iresnet import IResNet
from .mobilefacenet import MobileFaceNet

__all__ = ['IResNet', 'MobileFaceNet']
