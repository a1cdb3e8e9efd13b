import os
import tempfile

import pytest

# Tests never touch the user's latency cache; set before any Ray worker starts (they inherit it).
os.environ.setdefault("NAS_CACHE_DIR", tempfile.mkdtemp(prefix="nas-test-cache-"))


@pytest.fixture(scope="session", autouse=True)
def _shutdown_ray():
    yield
    import sys

    if "ray" in sys.modules:
        import ray

        if ray.is_initialized():
            ray.shutdown()
