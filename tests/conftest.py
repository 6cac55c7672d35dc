import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


@pytest.fixture(scope='session', autouse=True)
def _register_modules():
    import torch
    torch.set_num_threads(2)
    from mmfacekd.utils import register_all_modules
    register_all_modules(init_default_scope=True)
