"""Knowledge distillation for keras-hub BERT classifiers, inside `model.fit`.

* `shrink(model, num_layers=None, keep_layers=None)`: a shallower student with
  the teacher's preprocessor and copied weights (DistilBERT initialisation).
* `Distiller(teacher, student, temperature=2.0, alpha=0.5, ...)`: a
  `keras.distillation.Distiller` whose `fit` takes raw strings; logit KD mixed
  with the hard labels, optional hidden-state / attention-map losses.
* `cache_teacher_logits(teacher, dataset)`: ``(x, (y, teacher_logits))`` data
  that the `Distiller` trains on without running the teacher.

```python
from keras_bertopt.distillation import Distiller, shrink
student = shrink(teacher, num_layers=3)
distiller = Distiller(teacher, student, temperature=2.0, alpha=0.5)
distiller.compile(optimizer="adam", metrics=["sparse_categorical_accuracy"])
distiller.fit(train_ds, epochs=2)
distiller.student.save("student.keras")
```
"""

from keras_bertopt.distillation.cache import cache_teacher_logits
from keras_bertopt.distillation.distiller import Distiller, check_arguments, resolve_layer_map
from keras_bertopt.distillation.features import bert_forward
from keras_bertopt.distillation.losses import (
    attention_loss,
    hidden_state_loss,
    logits_distillation,
)
from keras_bertopt.distillation.students import check_student, evenly_spaced, shrink

__all__ = [
    "Distiller",
    "attention_loss",
    "bert_forward",
    "cache_teacher_logits",
    "check_arguments",
    "check_student",
    "evenly_spaced",
    "hidden_state_loss",
    "logits_distillation",
    "resolve_layer_map",
    "shrink",
]
