"""Every use of Keras and keras-hub internals, in one place, so an upgrade is one file to read.

Keras 3 has public APIs for most of what this package does; these helpers
cover the rest. Each says which private attribute it reads and why no public
API serves (checked against Keras 3.15 and keras-hub 0.32). Nothing here
imports Keras at module import time.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator


def learning_rate_schedule(optimizer: Any) -> Any:
    """The optimizer's learning rate as given: a `LearningRateSchedule` (or a number/variable).

    ``optimizer.learning_rate`` evaluates a schedule at the current step and
    returns a tensor; the schedule object itself is only ``_learning_rate``.
    """
    schedule = getattr(optimizer, "_learning_rate", None)
    return optimizer.learning_rate if schedule is None else schedule


def flatten_layers(layer: Any, include_self: bool = False) -> list[Any]:
    """Every layer inside `layer`, recursively (nested models and sublayers included).

    ``Model.layers`` lists only the top level; keras-hub tasks keep the
    backbone's transformer blocks and their dense layers deeper, reachable only
    through ``_flatten_layers``.

    Raises:
        ValueError: `layer` is not a Keras layer or model.
    """
    flatten = getattr(layer, "_flatten_layers", None)
    if flatten is None:
        raise ValueError(f"`model` must be a Keras model; got {type(layer).__name__}")
    return list(flatten(include_self=include_self, recursive=True))


@contextlib.contextmanager
def unlocked_tracker(layer: Any) -> Iterator[None]:
    """Allow setting a new tracked attribute (variable, layer, state) on a built layer.

    Keras locks a layer's ``_tracker`` once it is built, and refuses new
    variables after that; there is no public way to add state to a built layer.
    """
    tracker = getattr(layer, "_tracker", None)
    relock = tracker is not None and getattr(tracker, "locked", False)
    if relock:
        tracker.unlock()
    try:
        yield
    finally:
        if relock:
            tracker.lock()


def untrack(layer: Any, value: Any) -> None:
    """Stop tracking `value` (its variables leave ``layer.weights``)."""
    tracker = getattr(layer, "_tracker", None)
    if tracker is not None:
        tracker.untrack(value)


def einsum_kernel(layer: Any) -> Any:
    """The kernel variable of an `EinsumDense` (``_kernel``), or None.

    The public ``kernel`` property may return a computed tensor (LoRA, int8
    dequantization) rather than the variable the optimizer updates.
    """
    return getattr(layer, "_kernel", None)


def set_keras_mask(outputs: Any, mask: Any) -> None:
    """Attach a Keras mask to `outputs`, as `keras.layers.Embedding` does for its own outputs.

    Keras exports no public setter (``keras.src.backend.set_keras_mask``).
    """
    from keras.src.backend import set_keras_mask as _set

    _set(outputs, mask)


def attention_dropout_layer(layer: Any) -> Any:
    """The `Dropout` a `MultiHeadAttention` applies to its attention probabilities, or None.

    Its rate is the constructor's ``dropout`` and is kept only privately
    (``_dropout``, ``_dropout_layer``).
    """
    return getattr(layer, "_dropout_layer", None)


def attention_parts(layer: Any) -> Any:
    """What `keras.layers.MultiHeadAttention` computes attention with, kept only privately.

    The equations, the key-dim scale, the attention axes, the masked softmax and the
    dropout its private ``_compute_attention`` uses; fully-integer QAT re-runs that
    computation with fake quantization between the ops (Keras has no hook for it).
    """
    import types

    return types.SimpleNamespace(
        inverse_sqrt_key_dim=_private(layer, "_inverse_sqrt_key_dim"),
        dot_product_equation=_private(layer, "_dot_product_equation"),
        combine_equation=_private(layer, "_combine_equation"),
        attention_axes=_private(layer, "_attention_axes"),
        softmax=_private(layer, "_softmax"),
        dropout=float(getattr(layer, "_dropout", 0.0) or 0.0),
        dropout_layer=attention_dropout_layer(layer),
    )


def call_context_training(layer: Any) -> bool:
    """The training flag of the Keras call `layer` runs in (``_get_call_context``).

    Layers whose ``call`` takes no ``training`` argument (LayerNormalization, Add) are
    not passed one; the enclosing call's context holds the resolved value.
    """
    context = _private(layer, "_get_call_context")()
    return bool(getattr(context, "training", None) or False)


def set_attention_dropout(layer: Any, rate: float) -> Any:
    """Record `rate` as a `MultiHeadAttention`'s dropout (``_dropout``, so `get_config`
    reports it); return its `Dropout` layer, whose rate the caller sets."""
    layer._dropout = rate
    return layer._dropout_layer


def encoder_sublayers(block: Any) -> dict[str, Any]:
    """The sublayers of a keras-hub `TransformerEncoder`, which keeps them as private attributes.

    Keys: ``attention`` (MultiHeadAttention), ``attention_norm``,
    ``intermediate`` (Dense), ``output`` (Dense), ``output_norm``.
    """
    return {
        "attention": block._self_attention_layer,
        "attention_norm": block._self_attention_layer_norm,
        "intermediate": block._feedforward_intermediate_dense,
        "output": block._feedforward_output_dense,
        "output_norm": block._feedforward_layer_norm,
    }


class _LazyCustomObjects(dict):
    """Keras's registry of custom objects, asking `loader(name)` for a name it lacks."""

    def __init__(self, entries: dict, loader: Any) -> None:
        super().__init__(entries)
        self.loader = loader

    def _load(self, name: Any) -> None:
        if not dict.__contains__(self, name):
            self.loader(name)

    def __contains__(self, name: Any) -> bool:
        self._load(name)
        return dict.__contains__(self, name)

    def __getitem__(self, name: Any) -> Any:
        self._load(name)
        return dict.__getitem__(self, name)

    def get(self, name: Any, default: Any = None) -> Any:
        self._load(name)
        return dict.get(self, name, default)


def load_custom_objects_on_demand(loader: Any) -> None:
    """Make Keras call `loader(name)` before it looks up a registered name it does not hold.

    Keras keeps the objects of `keras.saving.register_keras_serializable` in the
    module-level dict ``keras.src.saving.object_registration.GLOBAL_CUSTOM_OBJECTS``
    and has no hook for a name that is not registered yet; this replaces that dict
    with one (same entries) that calls `loader` first, so `keras.saving.load_model`
    can import the module that registers a class when a file names it.
    """
    from keras.src.saving import object_registration

    current = object_registration.GLOBAL_CUSTOM_OBJECTS
    if isinstance(current, _LazyCustomObjects):
        current.loader = loader
        return
    object_registration.GLOBAL_CUSTOM_OBJECTS = _LazyCustomObjects(current, loader)


def _private(obj: Any, name: str) -> Any:
    """`obj.<name>`, or an error saying that this Keras moved it (so this module needs work)."""
    value = getattr(obj, name, None)
    if value is None:
        import keras

        raise AttributeError(
            f"{type(obj).__name__}.{name} is not there in Keras {keras.__version__}; "
            "keras_bertopt._compat reads it and needs updating for this version")
    return value


def clone_initializer(initializer: Any) -> Any:
    """A fresh copy of `initializer` (same config, own random state), as keras-hub's BERT
    makes for each sublayer; keras-hub has it only as ``keras_hub.src.utils.keras_utils``."""
    return _hub_utility("clone_initializer")(initializer)


def bert_activation() -> Any:
    """The feed-forward activation keras-hub's `BertBackbone` builds its blocks with (the
    tanh-approximate GELU), the very function object so that saved configs name it alike;
    keras-hub has it only as ``keras_hub.src.utils.keras_utils.gelu_approximate``."""
    return _hub_utility("gelu_approximate")


def _hub_utility(name: str) -> Any:
    try:
        from keras_hub.src.utils import keras_utils
    except ImportError as error:  # pragma: no cover - only on a keras-hub that moved it
        raise ImportError("keras_hub.src.utils.keras_utils is not there in this keras-hub; "
                          "keras_bertopt._compat reads it and needs updating") from error
    return _private(keras_utils, name)


def optimizer_variable_key(optimizer: Any, variable: Any) -> Any:
    """The key a Keras optimizer files `variable` under (``_var_key``): the same for a model
    variable and the backend value `update_step` receives, which no public API maps."""
    return _private(optimizer, "_var_key")(variable)


def uses_weight_decay(optimizer: Any, variable: Any) -> bool:
    """Whether the optimizer decays `variable` after its exclusion rules
    (``_use_weight_decay``; `exclude_from_weight_decay` only sets the rules)."""
    return bool(_private(optimizer, "_use_weight_decay")(variable))


#: Private `keras.optimizers.Optimizer` methods `keras_bertopt.optimizers` overrides: the
#: learning rate under gradient accumulation, and weight decay applied per variable.
OPTIMIZER_OVERRIDES = ("_get_current_learning_rate", "_apply_weight_decay")


def check_overrides(base: type, names: tuple[str, ...]) -> None:
    """Raise (at import of the overriding module) when Keras no longer has the private
    methods a subclass overrides, instead of silently never calling the override."""
    missing = [name for name in names if not callable(getattr(base, name, None))]
    if missing:
        import keras

        raise ImportError(
            f"{base.__name__} has no {', '.join(missing)} in Keras {keras.__version__}; "
            "keras_bertopt overrides them (see keras_bertopt._compat) and needs updating")


def sync_training_state(model: Any) -> None:
    """Bring JAX `fit`'s state back into the model's variables (no-op on other backends).

    Between steps the JAX trainer keeps weights, optimizer and metric values outside the
    variables (their values purged) and syncs them only at the end of an epoch; its
    ``jax_state_sync`` (not part of the documented API) puts them back so a callback can
    read or assign them mid-epoch, and the next step reads them again. It waits for the
    dispatched steps, so call it only when a value is needed.
    """
    sync = getattr(model, "jax_state_sync", None)
    if sync is not None:
        sync()


def build_before_tracing(enabled: bool = True) -> None:
    """On TensorFlow, `fit` and `evaluate` build the optimizer, loss and metric variables
    before tracing their step (``enabled=True``), as Keras does under a `tf.distribute`
    strategy and on JAX; ``enabled=False`` restores Keras's own behaviour.

    Without a strategy Keras defers that build to the first trace, and a `tf.function` that
    creates variables on its first call is traced twice. With this on, each model's first
    step traces once. The build reads the input signature from the dataset's `element_spec`,
    so no batch is drawn and a shuffled dataset's order stays as it was: the variables, the
    data order and the results are Keras's own. Data that is not a `tf.data.Dataset` keeps
    Keras's deferred build.

    Reads ``TensorFlowTrainer._maybe_symbolic_build``, ``_symbolic_build`` and
    ``_distribute_strategy``: the deferral is a private choice with no public switch.
    """
    from keras.src.backend.tensorflow import trainer

    cls = trainer.TensorFlowTrainer
    deferred = getattr(cls._maybe_symbolic_build, "_kbo_deferred", cls._maybe_symbolic_build)
    if not enabled:
        cls._maybe_symbolic_build = deferred
        return

    def maybe_symbolic_build(self: Any, iterator: Any = None, data_batch: Any = None) -> Any:
        if self._distribute_strategy is not None or _training_state_built(self):
            return deferred(self, iterator=iterator, data_batch=data_batch)
        spec = _input_spec(iterator) if data_batch is None else data_batch
        if spec is not None:
            self._symbolic_build(data_batch=spec)

    maybe_symbolic_build._kbo_deferred = deferred  # type: ignore[attr-defined]
    cls._maybe_symbolic_build = maybe_symbolic_build


def builds_before_tracing() -> bool:
    """Whether `build_before_tracing` is on (TensorFlow's trainer patched by it)."""
    from keras.src.backend.tensorflow import trainer

    return hasattr(trainer.TensorFlowTrainer._maybe_symbolic_build, "_kbo_deferred")


@contextlib.contextmanager
def traced_once() -> Iterator[None]:
    """`build_before_tracing` on inside the block (TensorFlow backend), then as it was before.

    The recipe runs its stages inside this, so each stage's first training and evaluation
    step traces once; a user's own `fit` calls after the run keep whatever they had.
    """
    import keras

    if keras.backend.backend() != "tensorflow":
        yield
        return
    was_on = builds_before_tracing()
    build_before_tracing()
    try:
        yield
    finally:
        build_before_tracing(was_on)


def _input_spec(epoch_iterator: Any) -> Any:
    """The `tf.TensorSpec` structure of the batches `epoch_iterator` will yield, or None."""
    import tensorflow as tf

    adapter = getattr(epoch_iterator, "data_adapter", None)
    dataset = getattr(adapter, "_dataset", None)
    if not isinstance(dataset, tf.data.Dataset):
        return None
    specs = tf.nest.flatten(dataset.element_spec)
    return dataset.element_spec if all(type(s) is tf.TensorSpec for s in specs) else None


def _training_state_built(model: Any) -> bool:
    """True when `model`'s optimizer and compiled loss and metrics hold their variables."""
    parts = (model.optimizer, getattr(model, "_compile_metrics", None),
             getattr(model, "_compile_loss", None))
    return all(part is None or part.built for part in parts)
