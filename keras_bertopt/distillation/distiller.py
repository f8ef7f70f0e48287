"""`Distiller`: train a keras-hub BERT student against a frozen teacher in `model.fit`.

Built on `keras.distillation.Distiller` (Keras >= 3.12): it keeps Keras's
teacher freezing, model checks, `compile`, the ``student_loss`` /
``distillation_loss`` / ``total_loss`` trackers and `LogitsDistillation`. What
it adds for keras-hub BERT tasks (see docs/guides/distillation.md):

* the student's preprocessor runs in the `tf.data` pipeline of `fit`,
  `evaluate` and `predict`, so they take raw strings like the task's own
  `fit` (keras-hub's `PipelineModel` does this for tasks, but it cannot be
  mixed into a subclassed model: its `__init__` resets its shared base class
  from `Functional` to `Model`, which breaks every functional keras-hub task
  already built in the process);
* hidden-state and attention-map losses from one student pass
  (`features.bert_forward`) with a layer map for students with fewer layers and
  learned projections when widths differ;
* teacher logits cached in the data (`cache_teacher_logits`): targets
  ``(labels, teacher_logits)`` skip the teacher's forward pass;
* Hinton's T**2-scaled KL divergence (Keras's default string loss is not it),
  losses scaled for `tf.distribute`, `alpha` = weight of the soft targets.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from keras_bertopt.distillation.arguments import as_loss, check_arguments, resolve_layer_map
from keras_bertopt.distillation.features import bert_forward
from keras_bertopt.distillation.losses import (
    attention_loss,
    hidden_state_loss,
    logits_distillation,
)
from keras_bertopt.distillation.pipeline import (
    as_dataset,
    autotune,
    is_tf_dataset,
    split_targets,
    unpack,
    unscale,
)
from keras_bertopt.distillation.students import bert_backbone, check_student

#: Moved to `arguments` and `pipeline`; still importable from here.
__all__ = ["Distiller", "as_dataset", "check_arguments", "resolve_layer_map"]


@keras.saving.register_keras_serializable(package="keras_bertopt")
class Distiller(keras.distillation.Distiller):
    """Knowledge distillation of a keras-hub BERT classifier, trained with `fit` on raw strings.

    The loss is ``(1 - alpha) * hard + alpha * T**2 * KL(softmax(t/T) || softmax(s/T))
    + hidden_weight * hidden + attention_weight * attention``: the hard-label
    loss given to `compile`, Hinton's soft-target loss, and optionally
    TinyBERT-style hidden-state MSE and MiniLM-style attention KL over
    `layer_map`. The teacher runs in inference mode and is frozen; only the
    student (and the projections) train. Targets ``(labels, teacher_logits)``
    (from `cache_teacher_logits`) replace the teacher's forward pass.

    Example:

    ```python
    student = keras_bertopt.distillation.shrink(teacher, num_layers=3)
    distiller = keras_bertopt.distillation.Distiller(teacher, student, temperature=2.0, alpha=0.5)
    distiller.compile(optimizer=keras.optimizers.AdamW(5e-5), metrics=["accuracy"])
    distiller.fit(keras_bertopt.data.demo_dataset("train"), epochs=2)
    distiller.student.save("student.keras")      # a plain keras-hub classifier
    ```

    Args:
        teacher: a trained keras-hub classifier outputting logits (a BERT one
            for hidden-state / attention distillation).
        student: a keras-hub classifier (e.g. from `shrink`, `build_classifier`,
            `quantize_aware`) with the teacher's vocabulary and classes. Its
            preprocessor prepares the data for both.
        temperature: softmax temperature of the soft targets (> 0).
        alpha: weight of the soft-target loss in [0, 1]; the hard-label loss
            gets ``1 - alpha``. 0 trains on labels only (no teacher pass).
        hidden_weight: weight of the hidden-state loss (>= 0).
        attention_weight: weight of the attention-map loss (>= 0; needs the
            same head count).
        layer_map: student layer -> teacher layer for the feature losses: a
            dict, a list (one teacher layer per student layer) or None (evenly
            spaced, as `shrink` picks them).
        projection: learn a Dense projection per mapped layer when hidden sizes
            differ (else a width mismatch is an error).
        name: the model name.

    Raises:
        ValueError: naming the argument: `temperature` <= 0, `alpha` outside
            [0, 1], negative weights, a bad `layer_map`, or a student that
            cannot take the teacher's signal (vocabulary, classes, widths, heads).
    """

    def __init__(
        self,
        teacher: Any,
        student: Any,
        temperature: float = 2.0,
        alpha: float = 0.5,
        hidden_weight: float = 0.0,
        attention_weight: float = 0.0,
        layer_map: Any = None,
        projection: bool = True,
        name: str = "distiller",
        **kwargs: Any,
    ) -> None:
        temperature, alpha, hidden_weight, attention_weight = check_arguments(
            temperature, alpha, hidden_weight, attention_weight
        )
        features = hidden_weight > 0 or attention_weight > 0
        check_student(
            teacher,
            student,
            hidden_states=hidden_weight > 0,
            attentions=attention_weight > 0,
            projection=bool(projection),
        )
        pairs: list[tuple[int, int]] = []
        if features:
            t_backbone, s_backbone = bert_backbone(teacher), bert_backbone(student)
            pairs = resolve_layer_map(layer_map, s_backbone.num_layers, t_backbone.num_layers)
        kwargs.pop("distillation_losses", None)
        kwargs.pop("distillation_loss_weights", None)
        kwargs.pop("student_loss_weight", None)
        super().__init__(
            teacher=teacher,
            student=student,
            distillation_losses=logits_distillation(temperature),
            student_loss_weight=1.0 - alpha,
            name=name,
            **kwargs,
        )
        self.temperature = temperature
        self.alpha = alpha
        self.hidden_weight = hidden_weight
        self.attention_weight = attention_weight
        self.layer_map = pairs
        self.projection = bool(projection)
        self._features = features
        self.projections = []
        if hidden_weight > 0:
            t_dim, s_dim = bert_backbone(teacher).hidden_dim, bert_backbone(student).hidden_dim
            if t_dim != s_dim:
                for s, _ in pairs:
                    dense = keras.layers.Dense(t_dim, name=f"hidden_projection_{s}")
                    dense.build((None, None, s_dim))
                    self.projections.append(dense)
            self.hidden_state_tracker = keras.metrics.Mean(name="hidden_state_loss")
        if attention_weight > 0:
            self.attention_tracker = keras.metrics.Mean(name="attention_loss")
        # Teacher, student and projections are built: so is the distiller (what
        # keras.callbacks.BackupAndRestore asks before `fit`).
        self.built = True

    @property
    def preprocessor(self) -> Any:
        """The student's preprocessor (what `fit` runs on raw text)."""
        return getattr(self.student, "preprocessor", None)

    # -- data: the student's preprocessor in the tf.data pipeline ------------
    def preprocess_samples(self, x: Any, y: Any = None, sample_weight: Any = None) -> Any:
        """Run the student's preprocessor on a batch (targets pass through)."""
        preprocessor = getattr(self.student, "preprocessor", None)
        if preprocessor is None:
            return keras.utils.pack_x_y_sample_weight(x, y, sample_weight)
        return preprocessor(x, y=y, sample_weight=sample_weight)

    def _pipeline(
        self, x: Any, y: Any = None, sample_weight: Any = None, batch_size: Any = None
    ) -> Any:
        """A tf.data pipeline running the student's preprocessor, or None when not needed.

        A student without preprocessor (token ids in) takes arrays through Keras's own
        data adapters: no TensorFlow needed, as on a JAX-only accelerator machine.
        """
        if self.preprocessor is None and not is_tf_dataset(x):
            return None
        try:
            import tensorflow as tf
        except ImportError:
            raise ImportError(
                "Distiller runs the student's preprocessor (raw text in) in a tf.data "
                "pipeline, which needs TensorFlow: `pip install tensorflow-cpu`; or give the "
                "student `preprocessor=None` and pass its token ids as arrays"
            ) from None
        # Not through autograph: it converted the preprocessor's call into a wrong-arity
        # function in some runs ("tf__preprocessor() takes from -1 to 1 positional
        # arguments"); keras-hub preprocessors are graph-safe as they are.
        fn = tf.autograph.experimental.do_not_convert(self.preprocess_samples)
        return (
            as_dataset(x, y, sample_weight, batch_size)
            .map(fn, num_parallel_calls=autotune())
            .prefetch(autotune())
        )

    def fit(
        self,
        x: Any = None,
        y: Any = None,
        batch_size: Any = None,
        sample_weight: Any = None,
        validation_data: Any = None,
        **kwargs: Any,
    ) -> Any:
        """`keras.Model.fit` on raw text: ``(texts, labels)`` batches or ``(texts, (labels,
        teacher_logits))`` from `cache_teacher_logits`; `validation_data` likewise. A
        student without preprocessor takes token-id arrays as `keras.Model.fit` does."""
        if kwargs.get("validation_split"):
            raise ValueError("`validation_split` is not supported: pass `validation_data`")
        data = self._pipeline(x, y, sample_weight, batch_size)
        if validation_data is not None:
            val = self._pipeline(*unpack(validation_data), batch_size)
            validation_data = validation_data if val is None else val
        if data is None:
            return super().fit(x, y, batch_size=batch_size, sample_weight=sample_weight,
                               validation_data=validation_data, **kwargs)
        return super().fit(data, validation_data=validation_data, **kwargs)

    def evaluate(
        self,
        x: Any = None,
        y: Any = None,
        batch_size: Any = None,
        sample_weight: Any = None,
        **kwargs: Any,
    ) -> Any:
        """`keras.Model.evaluate` on raw text (the distillation loss and the metrics)."""
        if kwargs.pop("_use_cached_eval_dataset", False):  # fit's validation pass
            return super().evaluate(
                x,
                y,
                batch_size=batch_size,
                sample_weight=sample_weight,
                _use_cached_eval_dataset=True,
                **kwargs,
            )
        data = self._pipeline(x, y, sample_weight, batch_size)
        if data is None:
            return super().evaluate(x, y, batch_size=batch_size, sample_weight=sample_weight,
                                    **kwargs)
        return super().evaluate(data, **kwargs)

    def predict(self, x: Any = None, batch_size: Any = None, **kwargs: Any) -> Any:
        """The student's logits for raw text (token-id arrays without a preprocessor)."""
        data = self._pipeline(x, None, None, batch_size)
        if data is None:
            return super().predict(x, batch_size=batch_size, **kwargs)
        return super().predict(data, **kwargs)

    # -- forward ---------------------------------------------------------------
    def call(self, inputs: Any, training: Any = None) -> Any:
        """Student logits; with feature losses a dict with its hidden states / attentions too."""
        if self._features:
            return bert_forward(
                self.student, inputs, training=training, attentions=self.attention_weight > 0
            )
        return self.student(inputs, training=training)

    def predict_step(self, data: Any) -> Any:
        out = super().predict_step(data)
        return out["logits"] if isinstance(out, dict) else out

    def compile(
        self, optimizer: Any = "adam", loss: Any = None, metrics: Any = None, **kwargs: Any
    ) -> None:
        """Like `keras.distillation.Distiller.compile`; `loss` (hard labels) defaults to
        sparse categorical cross-entropy on logits."""
        if loss is None:
            loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        super().compile(optimizer=optimizer, loss=as_loss(loss), metrics=metrics, **kwargs)

    def compute_metrics(self, x: Any, y: Any, y_pred: Any, sample_weight: Any = None) -> Any:
        labels, _ = split_targets(y)
        logits = y_pred["logits"] if isinstance(y_pred, dict) else y_pred
        return super().compute_metrics(x, labels, logits, sample_weight)

    def _teacher_outputs(self, x: Any, cached: Any) -> dict[str, Any]:
        if cached is not None:
            if self._features:
                raise ValueError(
                    "cached teacher logits carry no hidden states or attention maps: set "
                    "`hidden_weight` and `attention_weight` to 0 to train on cached logits"
                )
            return {"logits": cached}
        if self._features:
            out = bert_forward(
                self.teacher, x, training=False, attentions=self.attention_weight > 0
            )
        else:
            out = {"logits": self.teacher(x, training=False)}
        return keras.tree.map_structure(ops.stop_gradient, out)

    def _feature_losses(self, x: Any, teacher: dict, student: dict) -> tuple[Any, Any]:
        mask = x["padding_mask"]
        hidden = attention = ops.zeros((), "float32")
        n = float(len(self.layer_map))
        for k, (s, t) in enumerate(self.layer_map):
            if self.hidden_weight > 0:
                h = student["hidden_states"][s + 1]
                if self.projections:
                    h = self.projections[k](h)
                hidden = hidden + hidden_state_loss(teacher["hidden_states"][t + 1], h, mask) / n
            if self.attention_weight > 0:
                attention = (
                    attention
                    + attention_loss(teacher["attentions"][t], student["attentions"][s], mask) / n
                )
        return hidden, attention

    def compute_loss(
        self,
        x: Any = None,
        y: Any = None,
        y_pred: Any = None,
        sample_weight: Any = None,
        training: bool = True,
    ) -> Any:
        """``(1 - alpha) * hard + alpha * soft + hidden_weight * hidden
        + attention_weight * attention``."""
        if y_pred is None:
            y_pred = self(x, training=training)
        labels, cached = split_targets(y)
        student = y_pred if isinstance(y_pred, dict) else {"logits": y_pred}
        logits = student["logits"]
        zero = ops.zeros((), "float32")
        hard = soft = hidden = attention = zero
        if self.alpha < 1.0 and labels is not None:
            hard = self._student_loss(labels, logits, sample_weight=sample_weight)
        if self.alpha > 0 or self._features:
            teacher = self._teacher_outputs(x, cached)
            if teacher["logits"].shape[-1] != logits.shape[-1]:
                raise ValueError(
                    f"teacher logits have {teacher['logits'].shape[-1]} classes, the student's "
                    f"{logits.shape[-1]}"
                )
            if self.alpha > 0:
                soft = self.distillation_losses[0].compute_loss(
                    ops.cast(teacher["logits"], logits.dtype), logits
                )
            if self._features:
                hidden, attention = self._feature_losses(x, teacher, student)
        total = (
            (1.0 - self.alpha) * hard
            + self.alpha * soft
            + self.hidden_weight * hidden
            + self.attention_weight * attention
        )
        self.student_loss_tracker.update_state(unscale(hard))
        self.distillation_loss_tracker.update_state(unscale(soft))
        self.total_loss_tracker.update_state(unscale(total))
        if self.hidden_weight > 0:
            self.hidden_state_tracker.update_state(unscale(hidden))
        if self.attention_weight > 0:
            self.attention_tracker.update_state(unscale(attention))
        return total

    def reset_metrics(self) -> None:
        super().reset_metrics()
        for name in ("hidden_state_tracker", "attention_tracker"):
            tracker = getattr(self, name, None)
            if tracker is not None:
                tracker.reset_state()

    # -- serialization ---------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "teacher": keras.saving.serialize_keras_object(self.teacher),
            "student": keras.saving.serialize_keras_object(self.student),
            "temperature": self.temperature,
            "alpha": self.alpha,
            "hidden_weight": self.hidden_weight,
            "attention_weight": self.attention_weight,
            "layer_map": [list(p) for p in self.layer_map] or None,
            "projection": self.projection,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Distiller:
        config = dict(config)
        for key in ("teacher", "student"):
            if isinstance(config[key], dict):
                config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)
