"""Pick variables of a model by regular expression on `variable.path`.

This is the one place where keras_bertopt decides which variables a feature
touches: regularizers, weight-decay exclusions, pruning and quantization all call
`select_variables`. Patterns are matched with `re.search`
against the Keras 3 `variable.path` (e.g.
``transformer_layer_0/self_attention_layer/query/kernel``), never against
`variable.name`, which is the short name (``kernel``) on most backends.
"""

from __future__ import annotations

import re
from typing import Any, Iterable, Sequence, Union

Pattern = Union[str, "re.Pattern[str]", Sequence[Union[str, "re.Pattern[str]"]], None]

# The path patterns of a keras-hub BERT's parts, defined once here and used by every module.

#: Transformer kernels of a keras-hub BERT: attention q/k/v/output and feed-forward.
TRANSFORMER_KERNELS = r"transformer_layer_\d+/.*kernel$"
#: A transformer block; group 1 is its 0-based index (keras-hub's ``transformer_layer_k``).
TRANSFORMER_LAYER = r"(?:^|/)transformer_layer_(\d+)/"
#: The embedding part: token/position/segment tables and their LayerNorm (any variable under a
#: layer whose name contains "embedding").
EMBEDDING_PARTS = r"(?:^|/)[^/]*embedding[^/]*/"
#: LayerNorm scale/offset and every bias: the classic "no weight decay" set.
NO_DECAY = (r"layer_norm", r"LayerNorm", r"/bias$", r"^bias$", r"/beta$", r"/gamma$")
#: Embedding tables (token, position, segment).
EMBEDDINGS = r"embeddings$"


def compile_patterns(pattern: Pattern, argument: str = "include") -> list[re.Pattern[str]]:
    """Turn a regex, a compiled regex or a list of them into compiled patterns.

    Raises:
        ValueError: naming `argument` when a pattern is not a valid regex or not
            a string.
    """
    if pattern is None:
        return []
    items: Iterable[Any]
    if isinstance(pattern, (str, re.Pattern)):
        items = [pattern]
    else:
        items = list(pattern)
    compiled = []
    for item in items:
        if isinstance(item, re.Pattern):
            compiled.append(item)
        elif isinstance(item, str):
            try:
                compiled.append(re.compile(item))
            except re.error as err:
                raise ValueError(
                    f"`{argument}` must be a valid regular expression on variable "
                    f"paths; {item!r} is not: {err}"
                ) from None
        else:
            raise ValueError(
                f"`{argument}` must be a regex string, a compiled pattern or a list "
                f"of them; got {type(item).__name__}: {item!r}"
            )
    return compiled


def _variables_of(source: Any, trainable_only: bool) -> list[Any]:
    if hasattr(source, "trainable_weights") and hasattr(source, "weights"):
        variables = source.trainable_weights if trainable_only else source.weights
    else:
        variables = list(source)
        if trainable_only:
            variables = [v for v in variables if getattr(v, "trainable", True)]
    seen: set[int] = set()
    unique = []
    for v in variables:
        if id(v) not in seen:
            seen.add(id(v))
            unique.append(v)
    return unique


def variable_path(variable: Any) -> str:
    """The Keras 3 path of a variable (`.path`), falling back to `.name`."""
    return getattr(variable, "path", None) or variable.name


def select_variables(
    source: Any,
    include: Pattern = None,
    exclude: Pattern = None,
    *,
    trainable_only: bool = True,
    argument: str = "include",
    allow_empty: bool = False,
) -> list[Any]:
    """Variables of `source` (a model, layer or iterable of variables) chosen by path.

    Args:
        source: a Keras model or layer, or an iterable of Keras variables.
        include: regex (or list of regexes) searched in `variable.path`; None
            selects every variable.
        exclude: regex (or list) removing variables that `include` selected.
        trainable_only: only trainable variables (the default).
        argument: the argument name used in error messages.
        allow_empty: return an empty list instead of raising.

    Returns:
        The selected variables, in model order, without duplicates.

    Raises:
        ValueError: when nothing is selected (naming the pattern and showing
            some of the paths that exist), or a pattern is invalid.
    """
    inc = compile_patterns(include, argument)
    exc = compile_patterns(exclude, "exclude")
    variables = _variables_of(source, trainable_only)
    chosen = [
        v
        for v in variables
        if (not inc or any(p.search(variable_path(v)) for p in inc))
        and not any(p.search(variable_path(v)) for p in exc)
    ]
    if not chosen and not allow_empty:
        sample = [variable_path(v) for v in variables[:8]]
        raise ValueError(
            f"`{argument}`={include!r} (exclude={exclude!r}) matched no variable; "
            f"expected a regex found in variable paths such as {sample}"
        )
    return chosen
