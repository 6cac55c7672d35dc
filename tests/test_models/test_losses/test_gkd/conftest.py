"""Fixtures of the GKD tests."""
import pytest


@pytest.fixture(autouse=True, scope='module')
def _one_thread(single_thread):
    """Small tensors: every GKD test module runs on one intra-op thread
    (``single_thread`` of tests/conftest.py)."""


@pytest.fixture(params=['sort', 'band'])
def selection(request):
    """Both exact implementations of eq. 2-3 (``GKDLoss(selection=...)``)."""
    return request.param
