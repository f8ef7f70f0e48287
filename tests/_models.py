"""The tiny test classifier and the compile settings tests give it, in one place (used by
conftest too)."""

import keras

from keras_bertopt.recipe.training import compile_classifier as _compile_for_labels


def compile_classifier(model, learning_rate=1e-3, optimizer=None):
    """`model` compiled as the recipe compiles a classifier (integer labels, logits,
    ``accuracy``) with AdamW(`learning_rate`) (or `optimizer`, a Keras optimizer class).
    Returns it."""
    _compile_for_labels(model, (optimizer or keras.optimizers.AdamW)(learning_rate))
    return model


def tiny_classifier_model():
    """A fresh 2-layer BERT classifier on the demo vocabulary (TinyConfig(), seed 0, 2 classes,
    sequence length 32): conftest's `tiny_classifier`, for fixtures of a wider scope."""
    from keras_bertopt.models import TinyConfig, build_classifier

    return build_classifier(TinyConfig(), num_classes=2, sequence_length=32)
