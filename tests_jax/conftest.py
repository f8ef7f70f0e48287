"""The JAX-backend tests run in their own pytest process: `python -m pytest -q tests_jax`.

Keras fixes its backend at import, so this folder is kept apart from `tests/` (which runs on
TensorFlow) and forces JAX before anything imports Keras.
"""

import importlib.util
import os

os.environ["KERAS_BACKEND"] = "jax"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Four virtual CPU devices for the `keras.distribution.DataParallel` tests (set before JAX
# starts; computations without a distribution still run on the first device).
if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                               + " --xla_force_host_platform_device_count=4").strip()

# The same network guards as tests/ (see tests/_offline.py).
_spec = importlib.util.spec_from_file_location(
    "_offline", os.path.join(os.path.dirname(__file__), os.pardir, "tests", "_offline.py"))
_offline = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_offline)
os.environ.update(_offline.OFFLINE_ENV)

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
    """Every test: a Python connection or name lookup to another host fails at once."""
    _offline.block_outbound(monkeypatch)
