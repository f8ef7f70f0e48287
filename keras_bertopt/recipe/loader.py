"""YAML / JSON / mappings (and ``--set`` overrides) -> a checked `RecipeConfig`, in one pass.

A file is read once; overrides are applied to the parsed mapping; relative data
and model paths are resolved against the config file's folder; then
`RecipeConfig.model_validate` checks everything, and its errors become one
`ValueError` naming each dotted key (`keras_bertopt.recipe.errors`).

```python
config = load_config("examples/demo.yaml", parse_overrides(["finetune.epochs=1"]))
```
"""

from __future__ import annotations

import copy
import json
import os
from typing import Any, Mapping, Union

from pydantic import ValidationError

from keras_bertopt.recipe.config import RecipeConfig
from keras_bertopt.recipe.errors import describe


def _is_float_text(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return text.strip().lower().lstrip("+-") not in ("nan", "inf", "infinity")


def parse_overrides(items: Any) -> dict[str, Any]:
    """``["finetune.epochs=1", "prune.include=[a, b]"]`` -> ``{"finetune.epochs": 1, ...}``.

    Values are read as YAML; a number written like ``3e-3`` (text to YAML 1.1)
    becomes a float.

    Raises:
        ValueError: an item without ``KEY=VALUE``, or a value that is not YAML.
    """
    import yaml

    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, text = str(item).partition("=")
        if not sep or not key.strip():
            raise ValueError(
                f"an override must be KEY=VALUE (e.g. finetune.epochs=1), got {item!r}"
            )
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise ValueError(f"override {item!r}: the value is not valid YAML: {err}") from None
        if isinstance(value, str) and _is_float_text(value):
            value = float(value)
        out[key.strip()] = value
    return out


def read_file(path: str) -> dict[str, Any]:
    """The mapping in a ``.yaml`` / ``.yml`` / ``.json`` config file (empty file: ``{}``)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"config file {path!r} does not exist")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if path.endswith(".json"):
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"config file {path!r} is not valid JSON: {err}") from None
    elif path.endswith((".yaml", ".yml")):
        import yaml

        try:
            raw = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise ValueError(f"config file {path!r} is not valid YAML: {err}") from None
    else:
        raise ValueError(f"config file {path!r}: expected a .yaml, .yml or .json file")
    raw = {} if raw is None else raw
    if not isinstance(raw, Mapping):
        raise ValueError(
            f"config file {path!r} must hold a mapping at top level, got {type(raw).__name__}")
    return dict(raw)


def apply_overrides(raw: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of `raw` with each dotted key of `overrides` set (missing sections created)."""
    out = copy.deepcopy(dict(raw))
    for dotted, value in overrides.items():
        node = out
        keys = dotted.split(".")
        for key in keys[:-1]:
            child = node.get(key)
            if child is None:
                child = node[key] = {}
            if not isinstance(child, dict):
                raise ValueError(f"override {dotted!r}: {key!r} is not a mapping")
            node = child
        node[keys[-1]] = value
    return out


def resolve_paths(raw: dict[str, Any], base_dir: str) -> dict[str, Any]:
    """`raw` with relative data files, model directory and output_dir under `base_dir`."""

    def resolve(p: Any) -> Any:
        if not isinstance(p, str) or os.path.isabs(p):
            return p
        return os.path.normpath(os.path.join(base_dir, p))

    out = dict(raw)
    if isinstance(out.get("data"), Mapping):
        out["data"] = {k: resolve(v) if k in ("train", "validation", "test") else v
                       for k, v in out["data"].items()}
    model = out.get("model")
    if isinstance(model, Mapping) and isinstance(model.get("source"), str):
        src = model["source"]
        if src != "tiny" and not src.startswith("package:") and (
                src.startswith(".") or os.sep in src):
            out["model"] = dict(model, source=resolve(src))
    if out.get("output_dir") is not None:
        out["output_dir"] = resolve(out["output_dir"])
    return out


def from_dict(raw: Mapping[str, Any], *, base_dir: str | None = None) -> Any:
    """A checked `RecipeConfig` from a (nested) mapping, as read from YAML/JSON.

    Args:
        raw: the mapping; missing keys keep their defaults.
        base_dir: folder that relative data/model paths are resolved against.

    Raises:
        ValueError: unknown keys, wrong types, values out of range (each named by its
            dotted key path).
        FileNotFoundError: a data file or checkpoint directory that is not there.
    """
    if not isinstance(raw, Mapping):
        raise ValueError(f"a recipe config must be a mapping, got {type(raw).__name__}")
    raw = resolve_paths(dict(raw), base_dir) if base_dir is not None else dict(raw)
    try:
        return RecipeConfig.model_validate(raw)
    except ValidationError as err:
        raise describe(err, RecipeConfig) from None


def load_config(
    source: Union[str, os.PathLike[str], Mapping[str, Any], Any],
    overrides: Mapping[str, Any] | None = None,
) -> Any:
    """A checked `RecipeConfig` from a YAML/JSON file, a mapping or a `RecipeConfig`.

    `overrides` maps dotted key paths to values (``{"finetune.epochs": 1}``) and
    is applied before the checks. A `RecipeConfig` without overrides is returned
    as is (it was checked when made).
    """
    if isinstance(source, RecipeConfig):
        if not overrides:
            return source
        raw: dict[str, Any] = source.to_dict()
        base_dir = None
    elif isinstance(source, Mapping):
        raw, base_dir = dict(source), None
    elif isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        raw, base_dir = read_file(path), os.path.dirname(os.path.abspath(path))
    else:
        raise ValueError(
            "`config` must be a path to a YAML/JSON file, a mapping or a RecipeConfig; "
            f"got {type(source).__name__}"
        )
    if overrides:
        raw = apply_overrides(raw, overrides)
    return from_dict(raw, base_dir=base_dir)
