"""Training tests run torch on one thread: their matrices are tiny (at most 2000×64), so a
second thread only adds synchronization, and on a loaded two-core machine it made the linear
toy's 3000 full-batch steps take 72 s instead of 4 s. Results do not depend on it: every test
compares runs made in the same process."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
