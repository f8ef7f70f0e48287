"""The typed loader: YAML / JSON / mappings -> a validated `RecipeConfig`.

Values are checked against the dataclasses' type hints (`config.py`), so a new
config field or section needs no code here. Errors name the dotted key path
(``finetune.optimizer.kind``) and suggest the closest known key.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import types
import typing
from typing import Any, Literal, Mapping, Union

from keras_bertopt.recipe.config import RecipeConfig
from keras_bertopt.recipe.validate import validate

_UNIONS = (Union, types.UnionType)


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in _UNIONS:
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin is list:
        (item,) = typing.get_args(tp) or (Any,)
        return f"a list of ({_type_name(item)})"
    if tp is type(None):
        return "null"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return getattr(tp, "__name__", str(tp))


def _key(path: str) -> str:
    return path or "<config>"


def _coerce(value: Any, tp: Any, path: str) -> Any:
    """Check `value` against the annotation `tp`; return it converted (ints to floats)."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in _UNIONS:
        args = typing.get_args(tp)
        if value is None:
            if type(None) in args:
                return None
            raise ValueError(f"config key {_key(path)!r}: expected {_type_name(tp)}, got null")
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, path)
            except ValueError:
                continue
        raise ValueError(
            f"config key {_key(path)!r}: expected {_type_name(tp)}, "
            f"got {type(value).__name__} {value!r}"
        )
    if origin is Literal:
        choices = typing.get_args(tp)
        if not isinstance(value, str) or value not in choices:
            raise ValueError(
                f"config key {_key(path)!r}: expected one of {list(choices)}, got {value!r}"
            )
        return value
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise ValueError(
                f"config key {_key(path)!r}: expected {_type_name(tp)}, "
                f"got {type(value).__name__} {value!r}"
            )
        return [_coerce(v, item_tp, f"{path}[{i}]") for i, v in enumerate(value)]
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            value = dataclasses.asdict(value)
        if not isinstance(value, Mapping):
            raise ValueError(
                f"config key {_key(path)!r}: expected a mapping of {tp.__name__} fields, "
                f"got {type(value).__name__} {value!r}"
            )
        return _build(tp, value, path)
    if tp is bool:
        if not isinstance(value, bool):
            raise ValueError(
                f"config key {_key(path)!r}: expected true or false, "
                f"got {type(value).__name__} {value!r}"
            )
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(
                f"config key {_key(path)!r}: expected an integer, "
                f"got {type(value).__name__} {value!r}"
            )
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            hint = ""
            if isinstance(value, str) and _is_float_text(value):
                hint = " (YAML reads 1e-3 as text: write 1.0e-3)"
            raise ValueError(
                f"config key {_key(path)!r}: expected a number, "
                f"got {type(value).__name__} {value!r}{hint}"
            )
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ValueError(
                f"config key {_key(path)!r}: expected a string, "
                f"got {type(value).__name__} {value!r}"
            )
        return value
    raise TypeError(f"unsupported annotation {tp!r} at {path!r}")  # a bug in this module


def _is_float_text(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def parse_overrides(items: Any) -> dict[str, Any]:
    """``["finetune.epochs=1", "prune.include=[a, b]"]`` -> ``{"finetune.epochs": 1, ...}``.

    Values are read as YAML; a number written like ``3e-3`` (text to YAML 1.1)
    becomes a float.

    Raises:
        ValueError: an item without ``KEY=VALUE``.
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
        if isinstance(value, str) and _is_float_text(value) and value.strip().lower() not in (
            "nan", "inf", "-inf", "infinity", "-infinity", "+inf"
        ):
            value = float(value)
        out[key.strip()] = value
    return out


def _build(cls: type, raw: Mapping[str, Any], path: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in raw.items():
        full = f"{path}.{key}" if path else str(key)
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(
                f"unknown config key {full!r}{hint}; known keys"
                f"{' under ' + repr(path) if path else ''}: {', '.join(names)}"
            )
        kwargs[key] = _coerce(value, hints[key], full)
    return cls(**kwargs)


def from_dict(raw: Mapping[str, Any], *, base_dir: str | None = None) -> RecipeConfig:
    """A validated `RecipeConfig` from a (nested) mapping, as read from YAML/JSON.

    Args:
        raw: the mapping; missing keys keep their defaults.
        base_dir: folder that relative data/model paths are resolved against
            (the config file's folder when loading a file).

    Raises:
        ValueError: an unknown key, a value of the wrong type or out of range,
            naming the key path.
        FileNotFoundError: a data file or checkpoint directory that is not there.
    """
    if not isinstance(raw, Mapping):
        raise ValueError(f"a recipe config must be a mapping, got {type(raw).__name__}")
    config = _build(RecipeConfig, raw, "")
    if base_dir is not None:
        config = _resolve_paths(config, base_dir)
    validate(config)
    return config


def load_config(
    source: Union[str, os.PathLike[str], Mapping[str, Any], RecipeConfig],
    overrides: Mapping[str, Any] | None = None,
) -> RecipeConfig:
    """Load and validate a config from a YAML/JSON file, a mapping or a `RecipeConfig`.

    `overrides` maps dotted key paths to values (``{"finetune.epochs": 1}``) and
    is applied before validation, with the same checks.
    """
    base_dir = None
    if isinstance(source, RecipeConfig):
        raw: Any = source.to_dict()
    elif isinstance(source, Mapping):
        raw = dict(source)
    elif isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
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
            raise ValueError(
                f"config file {path!r}: expected a .yaml, .yml or .json file"
            )
        if raw is None:
            raw = {}
        if not isinstance(raw, Mapping):
            raise ValueError(
                f"config file {path!r} must hold a mapping at top level, "
                f"got {type(raw).__name__}"
            )
        base_dir = os.path.dirname(os.path.abspath(path))
    else:
        raise ValueError(
            "`config` must be a path to a YAML/JSON file, a mapping or a RecipeConfig; "
            f"got {type(source).__name__}"
        )
    if overrides:
        raw = _apply_overrides(raw, overrides)
    return from_dict(raw, base_dir=base_dir)


def _apply_overrides(raw: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    out = json.loads(json.dumps(raw))  # deep copy of plain data
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


def _resolve_paths(config: RecipeConfig, base_dir: str) -> RecipeConfig:
    def resolve(p: str | None) -> str | None:
        if p is None or os.path.isabs(p):
            return p
        return os.path.normpath(os.path.join(base_dir, p))

    data = dataclasses.replace(
        config.data,
        train=resolve(config.data.train),
        validation=resolve(config.data.validation),
        test=resolve(config.data.test),
    )
    model = config.model
    src = model.source
    if src != "tiny" and not src.startswith("package:") and (src.startswith(".") or os.sep in src):
        model = dataclasses.replace(model, source=resolve(src))
    out = config.output_dir
    if out is not None and not os.path.isabs(out):
        out = os.path.normpath(os.path.join(base_dir, out))
    return dataclasses.replace(config, data=data, model=model, output_dir=out)
