from .cpu_ddp import FaceDistributedDataParallel

__all__ = ['FaceDistributedDataParallel']
