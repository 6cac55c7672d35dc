"""DistributedDataParallel wrapper that also works for CPU (gloo) training."""
from typing import Any, Optional

from mmengine.model import MMDistributedDataParallel
from torch.nn.parallel import DistributedDataParallel

from mmfacekd.models.utils.class_shard import is_model_parallel
from mmfacekd.registry import MODEL_WRAPPERS


@MODEL_WRAPPERS.register_module()
class FaceDistributedDataParallel(MMDistributedDataParallel):
    """:class:`MMDistributedDataParallel` that drops ``device_ids`` for CPU
    modules.

    MMEngine 0.10.7 always passes ``device_ids=[LOCAL_RANK]``, which
    ``torch.nn.parallel.DistributedDataParallel`` rejects for a module on the
    CPU. On GPU this wrapper behaves exactly like MMEngine's. Parameters
    flagged ``model_parallel`` (the class shards of ``PartialFCHead``) are
    left out of DDP: each rank keeps its own shard and its exact gradient.
    """

    def __init__(self, module, device_ids: Optional[Any] = None,
                 **kwargs) -> None:
        on_cpu = all(p.device.type == 'cpu' for p in module.parameters())
        if on_cpu:
            device_ids = None
            kwargs.pop('output_device', None)
        # class shards (PartialFCHead) differ per rank: neither broadcast
        # from rank 0 nor averaged
        sharded = [name for name, p in module.named_parameters()
                   if is_model_parallel(p)]
        if sharded:
            DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(
                module, sharded)
        super().__init__(module=module, device_ids=device_ids, **kwargs)
