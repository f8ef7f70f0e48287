"""Shared test set-up: TensorFlow backend, quiet logs, the tiny model fixture."""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402


@pytest.fixture
def tiny_classifier():
    """A fresh 2-layer BERT classifier on the demo vocabulary (sequence length 32)."""
    from keras_bertopt.models import TinyConfig, build_classifier

    return build_classifier(TinyConfig(), num_classes=2, sequence_length=32)
