"""`MagnitudePruning`'s pattern arguments checked before training, and as its config stores them.

```python
from keras_bertopt.pruning.arguments import parse_pattern
parse_pattern("2:4", block_shape=(1, 4), n_m=(2, 4))   # ("n:m", (1, 4), (2, 4))
```
"""

from __future__ import annotations

from typing import Any, Sequence

from keras_bertopt.selection import Pattern

#: Pruning patterns `MagnitudePruning` accepts (or ``"N:M"`` such as ``"2:4"``).
PATTERNS = ("unstructured", "block", "n:m")
#: How the target sparsity applies: to each variable or across all of them.
SCOPES = ("per_variable", "global")


def parse_pattern(
    pattern: str, block_shape: Sequence[int], n_m: Sequence[int]
) -> tuple[str, tuple[int, int], tuple[int, int]]:
    """``(pattern, block_shape, n_m)`` checked and normalised; ``"2:4"`` means n:m (2, 4)."""
    if not isinstance(pattern, str):
        raise ValueError(
            f"`pattern` must be one of {PATTERNS} or 'N:M' like '2:4', got {pattern!r}"
        )
    p = pattern.strip().lower()
    if p not in PATTERNS:
        parts = p.split(":")
        if len(parts) == 2 and all(s.strip().isdigit() for s in parts):
            n_m = (int(parts[0]), int(parts[1]))
            p = "n:m"
        else:
            raise ValueError(
                f"`pattern` must be one of {PATTERNS} or 'N:M' like '2:4', got {pattern!r}"
            )
    try:
        bs = tuple(int(d) for d in block_shape)
    except (TypeError, ValueError):
        raise ValueError(
            f"`block_shape` must be two positive integers, got {block_shape!r}"
        ) from None
    if len(bs) != 2 or min(bs) < 1:
        raise ValueError(f"`block_shape` must be two positive integers, got {block_shape!r}")
    try:
        n, m = (int(d) for d in n_m)
    except (TypeError, ValueError):
        raise ValueError(f"`n_m` must be two integers (n, m), got {n_m!r}") from None
    if p == "n:m" and not (1 <= n <= m):
        raise ValueError(
            f"n:m pruning keeps n of every m weights and needs 1 <= n <= m; got n={n}, m={m}"
        )
    return p, (bs[0], bs[1]), (n, m)


def pattern_config(pattern: Pattern) -> Any:
    """`include` / `exclude` as the config stores them (regex objects as their strings)."""
    if pattern is None or isinstance(pattern, str):
        return pattern
    if hasattr(pattern, "pattern"):
        return pattern.pattern
    return [p.pattern if hasattr(p, "pattern") else p for p in pattern]
