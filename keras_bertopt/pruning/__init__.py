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

Structured pruning (heads, feed-forward neurons, layers) that makes the model
smaller and faster:

```python
small = keras_bertopt.pruning.prune_structure(model, heads=0.25, layers=2,
                                              importance="taylor", data=train.take(8))
# or gradually inside fit, then physically:
model.fit(train, callbacks=[keras_bertopt.pruning.StructuredPruning(schedule)])
small = keras_bertopt.pruning.strip_structure(model)
```

Modules: `schedules` (when and how much), `masks` (pure mask math),
`callback` (the Keras wiring), `state` (`PruningState`, `MaskConstraint`: the
masks the model carries), `arguments` (pattern checks), `strip` (finish and report); `importance`
(head / neuron / layer scores), `structure` (physical removal), `backbone`
(`PrunedBertBackbone` with per-layer sizes), `structured_callback`
(`StructuredPruning`, `strip_structure`).
"""

from keras_bertopt.pruning import masks
from keras_bertopt.pruning.backbone import PrunedBertBackbone, PrunedTransformerEncoder
from keras_bertopt.pruning.callback import (
    MagnitudePruning,
    MaskConstraint,
    PruningState,
    get_state,
)
from keras_bertopt.pruning.importance import ImportanceScores, importance_scores
from keras_bertopt.pruning.schedules import ConstantSparsity, PolynomialSparsity, PruningSchedule
from keras_bertopt.pruning.strip import (
    SparsityReport,
    VariableSparsity,
    sparsity_report,
    strip_pruning,
)
from keras_bertopt.pruning.structure import StructurePlan, plan_structure, prune_structure
from keras_bertopt.pruning.structured_callback import (
    StructuredPruning,
    StructureState,
    UnitMaskConstraint,
    removed_units,
    strip_structure,
)

__all__ = [
    "ConstantSparsity",
    "ImportanceScores",
    "PrunedBertBackbone",
    "PrunedTransformerEncoder",
    "StructurePlan",
    "StructureState",
    "StructuredPruning",
    "UnitMaskConstraint",
    "importance_scores",
    "plan_structure",
    "prune_structure",
    "removed_units",
    "strip_structure",
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
