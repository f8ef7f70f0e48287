"""The BERT fine-tuning optimizer recipe as Keras optimizers that work inside `model.fit`.

`create_optimizer` builds AdamW (or LAMB, or Adam) with the BERT recipe: linear
warm-up then linear decay (any `keras_bertopt.schedules` kind), epsilon 1e-6,
global-norm gradient clipping at 1.0, weight decay 0.01 with LayerNorm
gamma/beta and every bias excluded, and optional layer-wise learning-rate decay.

Two things Keras's optimizers do not do are added by the optimizer classes here
(`BertAdamW`, `BertLamb`, `BertAdam`: the Keras optimizer of the same kind plus
these rules), and both are stored as *path patterns* in the optimizer config, so
they survive `model.save` / `keras.saving.load_model` (also in safe mode) and
need no model at construction time:

* **Weight-decay exclusion by `variable.path`.** Keras's
  `optimizer.exclude_from_weight_decay(var_names=[...])` searches its patterns
  in `variable.name`. On the TensorFlow backend the optimizer sees the
  underlying `tf.Variable`, whose name happens to carry the layer path; a Keras 3
  variable's own `.name` is the short name (``gamma``, ``bias``), so the same
  list is not guaranteed on other backends. Here the patterns are matched
  against `variable.path` (through `keras_bertopt.selection`) when the
  optimizer is built, i.e. when it first sees the model's variables, and the
  selected variables are handed to Keras's public
  `exclude_from_weight_decay(var_list=...)`, which keys them by variable
  identity on every backend.
* **Per-variable learning-rate multipliers** (layer-wise LR decay and explicit
  ``(pattern, multiplier)`` pairs). Resolved from variable paths at build time
  and applied in `update_step`, which scales the learning rate each variable's
  Keras update step sees (so Adam's first step moves a variable by about
  ``lr * multiplier``, not just its gradient). Decoupled weight decay is applied
  in the same place with the same scaled rate (as ELECTRA's and Hugging Face's
  layer-wise-decay implementations do), instead of in Keras's separate
  all-variables decay pass.

Example:

```python
model = keras_bertopt.models.build_classifier(TinyConfig(), num_classes=2)
optimizer = keras_bertopt.optimizers.create_optimizer(
    5e-5, total_steps=1000, warmup_ratio=0.1, layerwise_lr_decay=0.9)
model.compile(optimizer=optimizer, loss=..., metrics=["accuracy"])
model.fit(train_ds, epochs=...)
```
"""

from __future__ import annotations

import math
import numbers
import re
from typing import Any, Iterable, Sequence

import keras
from keras import ops

from keras_bertopt import schedules
from keras_bertopt._compat import (
    OPTIMIZER_OVERRIDES,
    check_overrides,
    learning_rate_schedule,
    optimizer_variable_key,
    uses_weight_decay,
)
from keras_bertopt.selection import (
    EMBEDDING_PARTS,
    EMBEDDINGS,
    NO_DECAY,
    TRANSFORMER_LAYER,
    select_variables,
    variable_path,
)

#: Kinds accepted by `create_optimizer`.
KINDS = ("adamw", "lamb", "adam")
#: Path pattern of a transformer block; group 1 is its 0-based index (keras-hub naming).
LAYER_PATTERN = TRANSFORMER_LAYER
#: Path pattern of the embedding part (token/position/segment tables and their LayerNorm).
EMBEDDING_PATTERN = EMBEDDING_PARTS


def layerwise_multipliers(
    paths: Iterable[str],
    decay: float,
    layer_pattern: str = LAYER_PATTERN,
    embedding_pattern: str = EMBEDDING_PATTERN,
) -> dict[str, float]:
    """Learning-rate multiplier of every path under layer-wise LR decay.

    With ``L`` transformer layers indexed ``k = 0 .. L-1`` as in keras-hub's
    ``transformer_layer_k`` (0 = closest to the embeddings):

    * the classifier head (everything that is neither a transformer layer nor
      an embedding: ``pooled_dense``, ``logits``) gets 1;
    * transformer layer ``k`` gets ``decay ** (L - k)`` (the top layer
      ``decay``, the bottom one ``decay ** L``);
    * the embeddings get ``decay ** (L + 1)``, the lowest.

    This is the scheme of Clark et al. (ELECTRA) / Sun et al. 2019 ("How to
    fine-tune BERT for text classification") as used by BEiT and Hugging Face
    recipes.

    Raises:
        ValueError: when `decay` is not in (0, 1] or no path matches
            `layer_pattern`.
    """
    if isinstance(decay, bool) or not isinstance(decay, numbers.Real) or not 0.0 < decay <= 1.0:
        raise ValueError(f"`layerwise_lr_decay` must be in (0, 1]; got {decay!r}")
    paths = list(paths)
    layer_re, embedding_re = re.compile(layer_pattern), re.compile(embedding_pattern)
    index: dict[str, int] = {}
    for path in paths:
        match = layer_re.search(path)
        if match:
            index[path] = int(match.group(1))
    if not index:
        raise ValueError(
            f"`layerwise_lr_decay` needs transformer layers: no variable path matches "
            f"`layer_pattern`={layer_pattern!r} (paths such as {paths[:4]})"
        )
    num_layers = max(index.values()) + 1
    result = {}
    for path in paths:
        if path in index:
            result[path] = float(decay) ** (num_layers - index[path])
        elif embedding_re.search(path):
            result[path] = float(decay) ** (num_layers + 1)
        else:
            result[path] = 1.0
    return result


def _check_pairs(pairs: Any) -> list[list[Any]]:
    if pairs is None:
        return []
    result = []
    for item in pairs:
        try:
            pattern, multiplier = item
        except (TypeError, ValueError):
            raise ValueError(
                f"`lr_multipliers` must be a list of (regex, multiplier) pairs; got item {item!r}"
            ) from None
        if not isinstance(pattern, str):
            raise ValueError(f"`lr_multipliers` patterns must be strings; got {pattern!r}")
        if (
            isinstance(multiplier, bool)
            or not isinstance(multiplier, numbers.Real)
            or not multiplier >= 0
        ):
            raise ValueError(f"`lr_multipliers` values must be >= 0; got {multiplier!r}")
        try:
            re.compile(pattern)
        except re.error as err:
            raise ValueError(
                f"`lr_multipliers` pattern {pattern!r} is not a regex: {err}"
            ) from None
        result.append([pattern, float(multiplier)])
    return result


class _Untracked:
    """A plain attribute holder that Keras's attribute tracking leaves alone."""

    def __init__(self, **values: Any) -> None:
        self.__dict__.update(values)


check_overrides(keras.optimizers.Optimizer, OPTIMIZER_OVERRIDES)


class _PathRules:
    """Mixin: weight-decay exclusion and LR multipliers chosen by `variable.path`.

    Must come before the Keras optimizer class in the bases. See the module
    docstring for how and why.
    """

    #: Adam-style L2 added to the gradient (torch.optim.Adam) instead of decoupled decay.
    _coupled_weight_decay = False

    def __init__(
        self,
        *args: Any,
        exclude_from_weight_decay_paths: Sequence[str] | None = None,
        layerwise_lr_decay: float | None = None,
        lr_multipliers: Sequence[Sequence[Any]] | None = None,
        layer_pattern: str = LAYER_PATTERN,
        embedding_pattern: str = EMBEDDING_PATTERN,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        if isinstance(exclude_from_weight_decay_paths, str):
            exclude_from_weight_decay_paths = [exclude_from_weight_decay_paths]
        self.exclude_from_weight_decay_paths = list(exclude_from_weight_decay_paths or [])
        for pattern in self.exclude_from_weight_decay_paths:
            try:
                re.compile(pattern)
            except (re.error, TypeError) as err:
                raise ValueError(
                    f"`exclude_from_weight_decay_paths` entry {pattern!r} is not a regex: {err}"
                ) from None
        if layerwise_lr_decay is not None:
            if (
                isinstance(layerwise_lr_decay, bool)
                or not isinstance(layerwise_lr_decay, numbers.Real)
                or not 0.0 < layerwise_lr_decay <= 1.0
            ):
                raise ValueError(
                    f"`layerwise_lr_decay` must be in (0, 1] (0.8-0.95 is usual); "
                    f"got {layerwise_lr_decay!r}"
                )
            layerwise_lr_decay = float(layerwise_lr_decay)
        self.layerwise_lr_decay = layerwise_lr_decay
        self.lr_multipliers = _check_pairs(lr_multipliers)
        self.layer_pattern = layer_pattern
        self.embedding_pattern = embedding_pattern
        # Held in a plain object: a list of variables set as an attribute would be
        # tracked by Keras as optimizer variables.
        self._user_exclusions = _Untracked(var_list=[], var_names=None)
        self._multiplier_by_key: dict[Any, float] = {}
        self._multiplier_by_path: dict[str, float] = {}

    # -- the learning rate under gradient accumulation -------------------------------

    def _get_current_learning_rate(self) -> Any:
        # Keras 3.15 evaluates a schedule at `_iterations`, which counts micro-batches
        # when `gradient_accumulation_steps` is set, so warm-up and decay would run
        # `gradient_accumulation_steps` times too fast (and differ from one large
        # batch). The schedule's clock is the optimizer step: `iterations`.
        schedule = learning_rate_schedule(self)
        if self.gradient_accumulation_steps and isinstance(
            schedule, keras.optimizers.schedules.LearningRateSchedule
        ):
            return schedule(self.iterations)
        return super()._get_current_learning_rate()

    # -- weight decay ---------------------------------------------------------------

    def exclude_from_weight_decay(
        self, var_list: Sequence[Any] | None = None, var_names: Sequence[str] | None = None
    ) -> None:
        """Keras's method; what the caller passes is kept and merged at build time."""
        self._user_exclusions = _Untracked(
            var_list=list(var_list or []), var_names=list(var_names) if var_names else None
        )
        super().exclude_from_weight_decay(var_list=var_list, var_names=var_names)

    def _apply_weight_decay(self, variables: Any) -> None:
        # Applied per variable in `update_step` instead, with that variable's rate.
        return None

    # -- build: resolve the path rules ----------------------------------------------

    def build(self, var_list: Sequence[Any]) -> None:
        var_list = list(var_list)
        excluded = []
        if self.exclude_from_weight_decay_paths:
            excluded = select_variables(
                var_list,
                include=self.exclude_from_weight_decay_paths,
                trainable_only=False,
                argument="exclude_from_weight_decay_paths",
                allow_empty=True,
            )
        super().exclude_from_weight_decay(
            var_list=self._user_exclusions.var_list + excluded,
            var_names=self._user_exclusions.var_names,
        )
        paths = [variable_path(v) for v in var_list]
        multipliers = {p: 1.0 for p in paths}
        if self.layerwise_lr_decay is not None:
            multipliers = layerwise_multipliers(
                paths, self.layerwise_lr_decay, self.layer_pattern, self.embedding_pattern
            )
        for pattern, factor in self.lr_multipliers:
            chosen = select_variables(
                var_list, include=pattern, trainable_only=False, argument="lr_multipliers"
            )
            for v in chosen:
                multipliers[variable_path(v)] *= factor
        super().build(var_list)
        self._multiplier_by_path = multipliers
        self._multiplier_by_key = {
            optimizer_variable_key(self, v): multipliers[variable_path(v)] for v in var_list
        }

    def learning_rate_multiplier(self, variable: Any) -> float:
        """The multiplier of `variable` (a model variable, its path, or the backend variable)."""
        if isinstance(variable, str):
            return self._multiplier_by_path.get(variable, 1.0)
        return self._multiplier_by_key.get(optimizer_variable_key(self, variable), 1.0)

    @property
    def learning_rate_multipliers(self) -> dict[str, float]:
        """Path -> learning-rate multiplier, resolved when the optimizer was built."""
        return dict(self._multiplier_by_path)

    def decayed_variable_paths(self, variables: Iterable[Any]) -> list[str]:
        """Paths of `variables` that weight decay applies to (after the optimizer is built)."""
        if not self.weight_decay:
            return []
        return [variable_path(v) for v in variables if uses_weight_decay(self, v)]

    # -- the update -----------------------------------------------------------------

    def update_step(self, gradient: Any, variable: Any, learning_rate: Any) -> None:
        multiplier = self.learning_rate_multiplier(variable)
        lr = ops.cast(learning_rate, variable.dtype)
        if multiplier != 1.0:
            lr = ops.multiply(lr, multiplier)
        if self.weight_decay and uses_weight_decay(self, variable):
            wd = ops.cast(self.weight_decay, variable.dtype)
            if self._coupled_weight_decay:
                gradient = ops.add(
                    ops.convert_to_tensor(gradient, variable.dtype), ops.multiply(variable, wd)
                )
            else:
                self.assign_sub(variable, ops.multiply(variable, ops.multiply(wd, lr)))
        super().update_step(gradient, variable, lr)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            {
                "exclude_from_weight_decay_paths": list(self.exclude_from_weight_decay_paths),
                "layerwise_lr_decay": self.layerwise_lr_decay,
                "lr_multipliers": [list(pair) for pair in self.lr_multipliers],
                "layer_pattern": self.layer_pattern,
                "embedding_pattern": self.embedding_pattern,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="keras_bertopt")
class BertAdamW(_PathRules, keras.optimizers.AdamW):
    """Keras `AdamW` + weight-decay exclusion and LR multipliers by variable path.

    Args:
        exclude_from_weight_decay_paths: regexes searched in `variable.path`;
            matching variables get no weight decay.
        layerwise_lr_decay: factor in (0, 1] for layer-wise LR decay (see
            `layerwise_multipliers`), or None.
        lr_multipliers: extra ``(regex, multiplier)`` pairs; every matching
            variable's rate is multiplied (after layer-wise decay).
        layer_pattern: how layer-wise decay finds the
            transformer layers (group 1: 0-based index) and the embeddings.
        embedding_pattern: as `layer_pattern`.
        **kwargs: `keras.optimizers.AdamW` arguments.
    """


@keras.saving.register_keras_serializable(package="keras_bertopt")
class BertLamb(_PathRules, keras.optimizers.Lamb):
    """Keras `Lamb` + the same path rules as `BertAdamW`.

    Keras's LAMB applies weight decay decoupled, outside the trust ratio (the
    LAMB paper puts it inside); the per-variable multiplier scales both.
    """


@keras.saving.register_keras_serializable(package="keras_bertopt")
class BertAdam(_PathRules, keras.optimizers.Adam):
    """Keras `Adam` + the path rules; `weight_decay` is L2 added to the gradient.

    That is `torch.optim.Adam(weight_decay=...)`'s coupled L2 (Adam rescales it
    per coordinate), not AdamW's decoupled decay; excluded paths get none.
    """

    _coupled_weight_decay = True


_CLASSES = {"adamw": BertAdamW, "lamb": BertLamb, "adam": BertAdam}


def _check_arguments(kind: str, weight_decay: Any, clipnorm: Any, epsilon: Any) -> None:
    if kind not in KINDS:
        raise ValueError(f"`kind` must be one of {KINDS}; got {kind!r}")
    if weight_decay is not None and (
        isinstance(weight_decay, bool)
        or not isinstance(weight_decay, numbers.Real)
        or not weight_decay >= 0
    ):
        raise ValueError(f"`weight_decay` must be >= 0 or None; got {weight_decay!r}")
    if clipnorm is not None and (
        not isinstance(clipnorm, numbers.Real) or not clipnorm > 0 or math.isinf(clipnorm)
    ):
        raise ValueError(f"`clipnorm` must be a positive number or None; got {clipnorm!r}")
    if not isinstance(epsilon, numbers.Real) or not epsilon > 0:
        raise ValueError(f"`epsilon` must be > 0; got {epsilon!r}")


# Over 80 lines only through its docstring (the argument reference); the code is ~65 lines.
def create_optimizer(
    peak_learning_rate: float,
    total_steps: int,
    warmup_steps: int | None = None,
    warmup_ratio: float | None = None,
    *,
    kind: str = "adamw",
    weight_decay: float | None = 0.01,
    clipnorm: float | None = 1.0,
    epsilon: float = 1e-6,
    beta_1: float = 0.9,
    beta_2: float = 0.999,
    end_learning_rate: float = 0.0,
    schedule: str = "linear",
    schedule_options: dict[str, Any] | None = None,
    decay_embeddings: bool = True,
    exclude_from_weight_decay: Sequence[str] | str | None = NO_DECAY,
    layerwise_lr_decay: float | None = None,
    lr_multipliers: Sequence[Sequence[Any]] | None = None,
    model: Any = None,
    **optimizer_kwargs: Any,
) -> keras.optimizers.Optimizer:
    """The BERT fine-tuning optimizer: warm-up + decay, AdamW, no decay on LayerNorm/biases.

    Defaults reproduce Devlin et al. (2019) / TF Model Garden's
    `create_optimizer`: AdamW (beta 0.9/0.999, epsilon 1e-6, weight decay 0.01),
    a linear warm-up over 10% of the steps (when neither `warmup_steps` nor
    `warmup_ratio` is given) then linear decay to 0 at `total_steps`, gradients
    clipped to a global norm of 1.0 (Keras's `global_clipnorm`), and no weight
    decay on LayerNorm gamma/beta or any bias.

    Args:
        peak_learning_rate: rate at the end of warm-up (> 0).
        total_steps: optimizer steps of the whole fine-tune (``epochs *
            steps_per_epoch``); the schedule reaches `end_learning_rate` there.
        warmup_steps: warm-up length in steps.
        warmup_ratio: warm-up length as a fraction of `total_steps` (instead of
            `warmup_steps`).
        kind: ``"adamw"`` (`BertAdamW`), ``"lamb"`` (`BertLamb`, Keras's LAMB,
            for large batches) or ``"adam"`` (`BertAdam`: Adam with
            `weight_decay` as coupled L2, torch-style; pass 0 for plain Adam).
        weight_decay: decay rate (>= 0; 0 or None: none).
        clipnorm: global-norm clipping threshold (None: no clipping).
        epsilon: Adam/LAMB constant.
        beta_1: Adam/LAMB constant.
        beta_2: Adam/LAMB constant.
        end_learning_rate: rate at `total_steps`.
        schedule: a `keras_bertopt.schedules.create` kind.
        schedule_options: extra keywords for that kind (``{"power": 2.0}``...).
        decay_embeddings: False also excludes the embedding tables from decay.
        exclude_from_weight_decay: regexes searched in `variable.path` whose
            variables get no decay (default `selection.NO_DECAY`: LayerNorm
            and biases).
        layerwise_lr_decay: factor in (0, 1] (0.8-0.95 usual): head at the full
            rate, transformer layer k (0-based, as in ``transformer_layer_k``) at
            ``rate * decay ** (L - k)``, embeddings at ``rate * decay ** (L + 1)``.
        lr_multipliers: extra ``(regex, multiplier)`` pairs on variable paths.
        model: optional. The rules above are path patterns resolved when the
            optimizer first sees the model's variables (its `build`), so no model
            is needed; pass one to build the optimizer on
            `model.trainable_variables` now, so a pattern that matches nothing
            (e.g. layer-wise decay on a model without ``transformer_layer_*``)
            raises here rather than at the first training step.
        **optimizer_kwargs: more Keras optimizer arguments (``use_ema``,
            ``gradient_accumulation_steps``, ``name``...).

    Returns:
        A `BertAdamW`, `BertLamb` or `BertAdam` whose learning rate is a
        `keras_bertopt.schedules.WarmUp`.

    Raises:
        ValueError: naming the argument, for an unknown `kind` or `schedule`,
            negative rates, `total_steps` not above the warm-up, a bad
            `layerwise_lr_decay`, or (with `model`) a pattern matching nothing.
    """
    _check_arguments(kind, weight_decay, clipnorm, epsilon)
    if warmup_steps is None and warmup_ratio is None:
        warmup_ratio = 0.1
    learning_rate = schedules.create(
        schedule,
        peak_learning_rate=peak_learning_rate,
        total_steps=total_steps,
        warmup_steps=warmup_steps or 0,
        warmup_ratio=warmup_ratio,
        end_learning_rate=end_learning_rate,
        **(schedule_options or {}),
    )
    if isinstance(exclude_from_weight_decay, str):
        exclude_from_weight_decay = [exclude_from_weight_decay]
    exclude = list(exclude_from_weight_decay or [])
    if not decay_embeddings:
        exclude.append(EMBEDDINGS)
    if "clipnorm" in optimizer_kwargs or "global_clipnorm" in optimizer_kwargs:
        raise ValueError(
            "`clipnorm` is the global-norm threshold here; don't pass "
            "`global_clipnorm`/`clipnorm` in optimizer_kwargs"
        )
    optimizer = _CLASSES[kind](
        learning_rate=learning_rate,
        weight_decay=float(weight_decay or 0.0),
        beta_1=beta_1,
        beta_2=beta_2,
        epsilon=epsilon,
        global_clipnorm=None if clipnorm is None else float(clipnorm),
        exclude_from_weight_decay_paths=exclude,
        layerwise_lr_decay=layerwise_lr_decay,
        lr_multipliers=lr_multipliers,
        **optimizer_kwargs,
    )
    if model is not None:
        if not hasattr(model, "trainable_variables"):
            raise ValueError(
                f"`model` must be a Keras model (or None); got {type(model).__name__}"
            )
        optimizer.build(model.trainable_variables)
    return optimizer
