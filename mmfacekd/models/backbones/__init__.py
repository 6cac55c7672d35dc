from .face_vit import FaceViT
from .iresnet import IResNet
from .mobilefacenet import MobileFaceNet
from .prompted_swin import PromptedSwinTransformer

__all__ = ['FaceViT', 'IResNet', 'MobileFaceNet', 'PromptedSwinTransformer']
