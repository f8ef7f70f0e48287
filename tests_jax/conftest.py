"""The JAX-backend tests run in their own pytest process: `python -m pytest -q tests_jax`.

Keras fixes its backend at import, so this folder is kept apart from `tests/` (which runs on
TensorFlow) and forces JAX before anything imports Keras.
"""

import os

os.environ["KERAS_BACKEND"] = "jax"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
