"""Config errors as users read them: one line per problem, each naming its dotted key.

`describe(error, model)` turns a pydantic `ValidationError` into a `ValueError`
whose lines read ``config key 'prune.target_sparsity': expected a number < 1,
got 1.0``; an unknown key suggests the closest known one.

```python
try:
    RecipeConfig.model_validate({"prune": {"sparsity": 0.5}})
except pydantic.ValidationError as err:
    raise describe(err, RecipeConfig) from None   # unknown config key 'prune.sparsity' ...
```
"""

from __future__ import annotations

import difflib
from typing import Any

from pydantic import BaseModel, ValidationError

from keras_bertopt.recipe.sections import RuleError

#: pydantic's union-member tags in an error's location, as the type they stand for.
_TAGS = {"int": "an integer", "float": "a number", "str": "a string", "bool": "true or false",
         "list[str]": "a list of strings", "list[int]": "a list of integers", "none": "null"}

_EXPECTED = {
    "int_type": "an integer", "int_parsing": "an integer", "int_from_float": "an integer",
    "float_type": "a number", "float_parsing": "a number", "bool_type": "true or false",
    "bool_parsing": "true or false", "string_type": "a string", "list_type": "a list",
    "dict_type": "a mapping", "model_type": "a mapping", "model_attributes_type": "a mapping",
    "none_required": "null",
}

_BOUNDS = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<",
           "less_than_equal": "<="}


def _is_tag(part: Any) -> bool:
    return isinstance(part, str) and (part in _TAGS or not part.replace("_", "a").isalnum())


def _key(loc: tuple[Any, ...]) -> tuple[str, str | None]:
    """(dotted key, the union tag it stopped at or None) of an error location."""
    key = ""
    for part in loc:
        if _is_tag(part):
            return key, str(part)
        key += f"[{part}]" if isinstance(part, int) else (f".{part}" if key else str(part))
    return key, None


def _join(key: str, sub: str) -> str:
    return f"{key}.{sub}" if key and sub else (key or sub)


def _got(value: Any) -> str:
    if value is None:
        return "null"
    return f"{type(value).__name__} {value!r}"


def _section(annotation: Any) -> type[BaseModel] | None:
    """The section model in a field's annotation (``Optional[Section]`` included)."""
    for a in getattr(annotation, "__args__", ()) or (annotation,):
        if isinstance(a, type) and issubclass(a, BaseModel):
            return a
    return None


def _field(model: type[BaseModel], key: str) -> tuple[dict[str, Any], Any]:
    """(fields of the section holding dotted `key`, the field itself or None)."""
    fields: dict[str, Any] = dict(model.model_fields)
    parts = [p for p in key.replace("[", ".[").split(".") if p and not p.startswith("[")]
    for part in parts[:-1]:
        sub = _section(fields[part].annotation) if part in fields else None
        if sub is None:
            return {}, None
        fields = dict(sub.model_fields)
    return fields, fields.get(parts[-1]) if parts else None


def _range(field: Any, is_int: bool) -> str | None:
    """``a number in (0, 1)`` / ``an integer >= 1`` from a field's bounds."""
    low = high = None
    for m in getattr(field, "metadata", []):
        for attr, text in (("gt", "("), ("ge", "[")):
            if getattr(m, attr, None) is not None:
                low = (text, getattr(m, attr))
        for attr, text in (("lt", ")"), ("le", "]")):
            if getattr(m, attr, None) is not None:
                high = (text, getattr(m, attr))
    kind = "an integer" if is_int else "a number"
    if low and high:
        return f"{kind} in {low[0]}{low[1]:g}, {high[1]:g}{high[0]}"
    if low:
        return f"{kind} {'>' if low[0] == '(' else '>='} {low[1]:g}"
    if high:
        return f"{kind} {'<' if high[0] == ')' else '<='} {high[1]:g}"
    return None


def _unknown(model: type[BaseModel], key: str) -> str:
    names = list(_field(model, key)[0])
    last = key.rsplit(".", 1)[-1]
    close = difflib.get_close_matches(last, names, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown config key {key!r}{hint}; known keys there: {', '.join(names)}"


def _line(item: dict[str, Any], model: type[BaseModel]) -> tuple[str, str]:
    """(key, message) of one pydantic error item."""
    key, tag = _key(item["loc"])
    kind, value, ctx = item["type"], item.get("input"), item.get("ctx") or {}
    error = ctx.get("error")
    if isinstance(error, RuleError):
        key = _join(key, error.key)
        return key, f"config key {key!r}: expected {error.expected}, got {error.value!r}"
    if isinstance(error, ValueError):  # a rule that wrote its own message, key included
        return key, str(error)
    if kind == "extra_forbidden":
        return key, _unknown(model, key)
    if tag is not None:
        return key, ""  # a union: the caller lists what each member expected
    if kind in _BOUNDS:
        field = _field(model, key)[1]
        is_int = int in (getattr(field, "annotation", None), *getattr(
            getattr(field, "annotation", None), "__args__", ()))
        kind_name = "an integer" if is_int else "a number"
        expected = (_range(field, is_int)
                    or f"{kind_name} {_BOUNDS[kind]} {next(iter(ctx.values()))}")
    elif kind == "literal_error":
        expected = f"one of [{str(ctx.get('expected', '')).replace(' or ', ', ')}]"
    elif kind in _EXPECTED:
        expected = _EXPECTED[kind]
        if kind == "float_type" and isinstance(value, str) and _is_number(value):
            return key, (f"config key {key!r}: expected a number, got str {value!r} "
                         "(YAML reads 1e-3 as text: write 1.0e-3)")
    else:
        expected = item["msg"]
    return key, f"config key {key or '<config>'!r}: expected {expected}, got {_got(value)}"


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _union_message(key: str, items: list[dict[str, Any]]) -> str:
    expected: list[str] = []
    for item in items:
        _, tag = _key(item["loc"])
        if tag is None:
            continue
        if tag.startswith("literal["):
            text = tag[len("literal["):-1]
            name = f"one of [{text}]" if "," in text else text
        else:
            name = _TAGS.get(tag, tag)
        if name not in expected:
            expected.append(name)
    value = items[0].get("input")
    return f"config key {key!r}: expected {' or '.join(expected)}, got {_got(value)}"


def describe(error: ValidationError, model: type[BaseModel]) -> ValueError:
    """A `ValueError` with one ``config key 'a.b': ...`` line per problem in `error`."""
    lines: list[str] = []
    unions: dict[str, list[dict[str, Any]]] = {}
    for item in error.errors():
        key, text = _line(item, model)
        if text:
            lines.append(text)
        else:
            unions.setdefault(key, []).append(item)
    lines += [_union_message(key, items) for key, items in unions.items()]
    return ValueError("\n".join(dict.fromkeys(lines)))
