"""Magnitude pruning for Keras 3 models (keras-hub BERT included) inside `model.fit`.

```python
pruning = keras_bertopt.pruning.MagnitudePruning(
    schedule=keras_bertopt.pruning.PolynomialSparsity(
        initial_sparsity=0.0, final_sparsity=0.8, begin_step=0, end_step=2000, frequency=100),
    include=r"transformer_layer_\\d+/.*/kernel", pattern="unstructured")
model.fit(train, epochs=3, callbacks=[pruning])
plain = keras_bertopt.pruning.strip_pruning(model)
print(keras_bertopt.pruning.sparsity_report(plain))
```

Modules: `schedules` (when and how much), `masks` (pure mask math),
`callback` (the Keras wiring), `strip` (finish and report).
"""

from keras_bertopt.pruning import masks
from keras_bertopt.pruning.callback import (
    MagnitudePruning,
    MaskConstraint,
    PruningState,
    get_state,
)
from keras_bertopt.pruning.schedules import ConstantSparsity, PolynomialSparsity, PruningSchedule
from keras_bertopt.pruning.strip import (
    SparsityReport,
    VariableSparsity,
    sparsity_report,
    strip_pruning,
)

__all__ = [
    "ConstantSparsity",
    "MagnitudePruning",
    "MaskConstraint",
    "PolynomialSparsity",
    "PruningSchedule",
    "PruningState",
    "SparsityReport",
    "VariableSparsity",
    "get_state",
    "masks",
    "sparsity_report",
    "strip_pruning",
]
