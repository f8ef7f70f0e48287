"""The mask math of `masks.py` in `keras.ops`, so masks are recomputed where the weights live.

Same rules as the NumPy reference (`masks.py`): exactly ``round(s * size)`` elements
(or blocks) pruned, the lowest magnitudes first, ties broken by flat index (lower index
pruned first), blocks and n:m groups on the 2-D ``(inputs, outputs)`` view of a kernel.
Ties are broken by a stable sort, which JAX's `argsort` is; `MagnitudePruning` uses this
module on JAX and the NumPy reference elsewhere.

```python
mask = device_masks.magnitude_mask(variable.value, 0.8)  # on the device, no host copy
```
"""

from __future__ import annotations

from typing import Any, Sequence

import keras

from keras_bertopt.pruning.masks import KernelView, kernel_view, num_pruned

ops = keras.ops


def keep_all_but_lowest(scores: Any, k: int) -> Any:
    """1-D float 0/1 array: 0 at the `k` lowest entries of the 1-D `scores` (index ties)."""
    size = int(scores.shape[0])
    keep = ops.ones((size,), "float32")
    if k <= 0:
        return keep
    if k >= size:
        return ops.zeros((size,), "float32")
    lowest = ops.argsort(scores)[:k]
    return ops.scatter_update(keep, ops.expand_dims(lowest, -1), ops.zeros((k,), "float32"))


def to_2d(x: Any, view: KernelView) -> Any:
    """`x` seen as the ``(rows, cols)`` matrix of `view` (reduction axes first)."""
    x = ops.reshape(x, view.shape)
    if len(view.perm) > 1:
        x = ops.transpose(x, view.perm)
    return ops.reshape(x, (view.rows, view.cols))


def from_2d(x2d: Any, view: KernelView) -> Any:
    """Inverse of `to_2d`."""
    permuted = tuple(view.shape[i] for i in view.perm)
    x = ops.reshape(x2d, permuted)
    if len(view.perm) > 1:
        inverse = tuple(sorted(range(len(view.perm)), key=lambda a: view.perm[a]))
        x = ops.transpose(x, inverse)
    return x


def _scores(weights: Any, block_shape: tuple[int, int] | None, view: KernelView) -> Any:
    """Flat magnitude scores: per element, or mean |w| per block of the 2-D view."""
    a = ops.abs(ops.cast(weights, "float32"))
    if block_shape is None or tuple(block_shape) == (1, 1):
        return ops.reshape(a, (-1,))
    br, bc = block_shape
    blocks = ops.reshape(to_2d(a, view), (view.rows // br, br, view.cols // bc, bc))
    return ops.reshape(ops.mean(blocks, axis=(1, 3)), (-1,))


def _expand(keep: Any, block_shape: tuple[int, int] | None, view: KernelView,
            dtype: Any) -> Any:
    if block_shape is None or tuple(block_shape) == (1, 1):
        return ops.cast(ops.reshape(keep, view.shape), dtype)
    br, bc = block_shape
    keep = ops.reshape(keep, (view.rows // br, view.cols // bc))
    keep = ops.repeat(ops.repeat(keep, br, axis=0), bc, axis=1)
    return ops.cast(from_2d(keep, view), dtype)


def magnitude_mask(weights: Any, sparsity: float) -> Any:
    """Unstructured mask: 0 at the ``round(sparsity * size)`` smallest |w|."""
    view = kernel_view(weights.shape)
    keep = keep_all_but_lowest(_scores(weights, None, view), num_pruned(view_size(view), sparsity))
    return _expand(keep, None, view, weights.dtype)


def block_mask(weights: Any, sparsity: float, block_shape: tuple[int, int],
               view: KernelView | None = None) -> Any:
    """Block mask: ``round(sparsity * num_blocks)`` blocks of lowest mean |w| zeroed."""
    view = view or kernel_view(weights.shape)
    scores = _scores(weights, block_shape, view)
    keep = keep_all_but_lowest(scores, num_pruned(int(scores.shape[0]), sparsity))
    return _expand(keep, block_shape, view, weights.dtype)


def n_m_mask(weights: Any, n: int, m: int, view: KernelView | None = None) -> Any:
    """n:m mask: in each group of `m` consecutive inputs of one output keep the `n` largest."""
    view = view or kernel_view(weights.shape)
    a = ops.abs(ops.cast(to_2d(weights, view), "float32"))
    groups = ops.reshape(a, (view.rows // m, m, view.cols))
    # Rank inside each group, largest first, lower index first among equals.
    ranks = ops.argsort(ops.argsort(-groups, axis=1), axis=1)
    keep = ops.reshape(ops.cast(ranks < n, "float32"), (view.rows, view.cols))
    return ops.cast(from_2d(keep, view), weights.dtype)


def global_masks(weights: Sequence[Any], sparsity: float,
                 block_shape: tuple[int, int] | None = None,
                 views: Sequence[KernelView] | None = None) -> list[Any]:
    """Masks with one threshold across all `weights` (ties: earlier variable, lower index)."""
    views = list(views) if views is not None else [kernel_view(w.shape) for w in weights]
    scores = [_scores(w, block_shape, v) for w, v in zip(weights, views, strict=True)]
    sizes = [int(s.shape[0]) for s in scores]
    keep = keep_all_but_lowest(ops.concatenate(scores), num_pruned(sum(sizes), sparsity))
    out, start = [], 0
    for w, v, size in zip(weights, views, sizes, strict=True):
        out.append(_expand(keep[start:start + size], block_shape, v, w.dtype))
        start += size
    return out


def view_size(view: KernelView) -> int:
    return view.rows * view.cols
