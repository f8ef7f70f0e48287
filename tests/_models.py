"""The compile settings tests give a tiny classifier, in one place (used by conftest too)."""

import keras


def compile_classifier(model, learning_rate=1e-3, optimizer=None):
    """`model` compiled for 2-class logits: AdamW(`learning_rate`) (or `optimizer`, a Keras
    optimizer class), sparse categorical cross-entropy from logits, accuracy. Returns it."""
    optimizer = (optimizer or keras.optimizers.AdamW)(learning_rate)
    model.compile(optimizer=optimizer,
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model
