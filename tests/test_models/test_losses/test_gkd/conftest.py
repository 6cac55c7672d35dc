"""Fixtures of the GKD tests."""
import pytest
import torch


@pytest.fixture(autouse=True, scope='module')
def _one_thread():
    """Small tensors: one intra-op thread is faster and load-independent."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(params=['sort', 'band'])
def selection(request):
    """Both exact implementations of eq. 2-3 (``GKDLoss(selection=...)``)."""
    return request.param
