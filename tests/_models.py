"""The compile settings tests give a tiny classifier, in one place (used by conftest too)."""

import keras

from keras_bertopt.recipe.training import compile_classifier as _compile_for_labels


def compile_classifier(model, learning_rate=1e-3, optimizer=None):
    """`model` compiled as the recipe compiles a classifier (integer labels, logits,
    ``accuracy``) with AdamW(`learning_rate`) (or `optimizer`, a Keras optimizer class).
    Returns it."""
    _compile_for_labels(model, (optimizer or keras.optimizers.AdamW)(learning_rate))
    return model
