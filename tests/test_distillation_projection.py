"""A narrower student distilled with learned hidden-state projections (TinyBERT) in `fit`."""

import keras
import numpy as np
import pytest

import keras_bertopt as kb
from keras_bertopt.distillation import Distiller
from keras_bertopt.models import TinyConfig, build_classifier


def _hidden_loss_by_hand(teacher, student, projection, texts):
    """Masked MSE between the teacher's last layer and the student's last layer projected to
    the teacher's width: keras-hub's `sequence_output`s, the projection and the mean in numpy."""
    x = teacher.preprocessor(texts)
    t = np.asarray(teacher.backbone(x)["sequence_output"], np.float64)
    s = np.asarray(student.backbone(x)["sequence_output"], np.float64)
    kernel, bias = (np.asarray(w, np.float64) for w in projection)
    per_token = np.mean(np.square(s @ kernel + bias - t), axis=-1)
    mask = np.asarray(x["padding_mask"], np.float64)
    return float(np.sum(per_token * mask) / np.sum(mask))


@pytest.mark.slow
def test_narrow_student_trains_its_projection_in_fit(trained_tiny):
    teacher = trained_tiny()  # hidden 32, 2 layers, 2 heads
    student = build_classifier(TinyConfig(num_layers=1, hidden_dim=16, num_heads=1,
                                          intermediate_dim=32, seed=3), 2, sequence_length=32)
    distiller = Distiller(teacher, student, alpha=0.5, hidden_weight=1.0, layer_map=[1])
    (projection,) = distiller.projections
    assert tuple(projection.kernel.shape) == (16, 32)
    teacher_before = [np.array(w) for w in teacher.weights]
    texts, labels = kb.data.demo_examples("validation", 64)
    before = _hidden_loss_by_hand(teacher, student, projection.weights, texts)

    distiller.compile(optimizer=keras.optimizers.Adam(3e-3),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    distiller.fit(kb.data.demo_dataset("train", 32, size=512), epochs=2, verbose=0)

    # The loss Keras reports is the one defined above, on the trained student and projection.
    logged = distiller.evaluate(kb.data.from_examples(texts, labels, batch_size=64),
                                verbose=0, return_dict=True)["hidden_state_loss"]
    after = _hidden_loss_by_hand(teacher, student, projection.weights, texts)
    assert logged == pytest.approx(after, rel=1e-4)
    assert after < 0.5 * before  # the student's states (through the projection) moved closer
    # Only the student and the projection trained; the teacher is frozen.
    for old, new in zip(teacher_before, teacher.weights, strict=True):
        np.testing.assert_array_equal(old, np.asarray(new))
