"""Shared test settings.

The suite runs the `tiny` model and small generated data: its ops are far too small to gain
from threads, and on a busy 2-core machine extra threads only spin. One torch thread for the
whole session also makes byte-for-byte comparisons independent of the machine's core count.
"""

import os
import tempfile

import pytest
import torch

# diffseg's own small caches (class statistics, weight fingerprints) go to a folder of this
# session, not the user's ~/.cache: tests leave nothing behind and never see a stale entry.
os.environ["DIFFSEG_CACHE_DIR"] = tempfile.mkdtemp(prefix="diffseg-test-cache-")


@pytest.fixture(scope="session", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
