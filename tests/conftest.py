"""Every test starts from the same global RNG state, so a test's numbers do not depend on
which tests ran before it (an unseeded ``torch.randn`` would otherwise make a bound flaky)."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def _seed_global_rngs():
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
