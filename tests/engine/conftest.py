"""One intra-op thread: these tests run many tiny ops, and on a shared (oversubscribed)
machine OpenMP barriers between two threads make each op tens of times slower."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
