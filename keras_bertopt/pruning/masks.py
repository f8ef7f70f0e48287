"""Pure mask math for magnitude pruning (NumPy, no Keras wiring).

Every function here takes weight arrays and returns 0/1 masks of the same
shape; the callback (`callback.py`) decides when to call them and writes the
result into mask variables.

Exact counts and ties
---------------------
Pruning a tensor of ``size`` elements to sparsity ``s`` zeroes exactly
``num_pruned(size, s) = round(s * size)`` elements (Python's round-half-to-even
on the float64 product). The pruned elements are the ``k`` smallest magnitudes;
elements of equal magnitude are taken in flat (C order) index order, lowest
index first, so the result is deterministic. With ``scope="global"`` the flat
order runs over the variables in selection order, one after the other.

2-D view of kernels
-------------------
Block and n:m patterns work on a 2-D ``(inputs, outputs)`` view of each
kernel, where the rows are the *reduction* (input) axes of the layer:

* ``Dense`` kernel ``(in, out)``: used as is.
* ``EinsumDense`` kernel: the axes that are summed over in the layer's equation
  (kernel letters absent from the output: `keras_bertopt.kernels`) are moved first and
  flattened into rows, the remaining axes into columns. For keras-hub BERT the
  query/key/value kernels ``(hidden, heads, head_dim)`` become
  ``(hidden, heads * head_dim)`` and the attention-output kernel
  ``(heads, head_dim, hidden)`` becomes ``(heads * head_dim, hidden)``.
* any other variable: all axes but the last are rows (the ``Dense``
  convention); a 1-D variable is a single column ``(size, 1)``.

The n:m pattern groups ``m`` consecutive rows of one column, i.e. ``m``
consecutive input weights feeding one output unit: the axis TFLite (its
``[out, in]`` FULLY_CONNECTED weight, innermost axis) and NVIDIA sparse tensor
cores use.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

# The one rule for EinsumDense input axes, kept here under the name this module had.
from keras_bertopt.kernels import einsum_reduce_axes as einsum_reduction_axes  # noqa: F401


def num_pruned(size: int, sparsity: float) -> int:
    """Number of elements pruned out of `size` at `sparsity`: ``round(sparsity * size)``."""
    return int(round(float(sparsity) * int(size)))


def lowest_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Boolean array, True at the `k` lowest entries of the 1-D `scores`.

    Ties at the k-th value are broken by index (lower index pruned first), so
    exactly `k` entries are True. Runs in linear time (`np.partition`).
    """
    scores = np.asarray(scores).reshape(-1)
    prune = np.zeros(scores.shape, dtype=bool)
    if k <= 0:
        return prune
    if k >= scores.size:
        prune[:] = True
        return prune
    threshold = np.partition(scores, k - 1)[k - 1]
    below = scores < threshold
    prune |= below
    need = k - int(below.sum())
    ties = np.flatnonzero(scores == threshold)[:need]
    prune[ties] = True
    return prune


@dataclasses.dataclass(frozen=True)
class KernelView:
    """How a kernel of `shape` is seen as a 2-D ``(rows, cols)`` matrix.

    `perm` moves the reduction (input) axes first; `rows` is the product of
    their sizes and `cols` the product of the others.
    """

    shape: tuple[int, ...]
    perm: tuple[int, ...]
    rows: int
    cols: int

    def to_2d(self, x: np.ndarray) -> np.ndarray:
        return np.transpose(np.asarray(x).reshape(self.shape), self.perm).reshape(
            self.rows, self.cols
        )

    def from_2d(self, x2d: np.ndarray) -> np.ndarray:
        permuted_shape = tuple(self.shape[i] for i in self.perm)
        return np.transpose(x2d.reshape(permuted_shape), np.argsort(self.perm))


def kernel_view(shape: Sequence[int], reduction_axes: Sequence[int] | None = None) -> KernelView:
    """The `KernelView` of a kernel with `shape`.

    Args:
        shape: the variable's shape.
        reduction_axes: the axes summed over by the layer (its inputs); None
            means every axis but the last (the `Dense` convention).
    """
    shape = tuple(int(d) for d in shape)
    rank = len(shape)
    if rank == 0:
        return KernelView(shape, (), 1, 1)
    if rank == 1:
        return KernelView(shape, (0,), shape[0], 1)
    if reduction_axes is None:
        reduction_axes = tuple(range(rank - 1))
    reduction_axes = tuple(sorted(int(a) % rank for a in reduction_axes))
    others = tuple(a for a in range(rank) if a not in reduction_axes)
    rows = int(np.prod([shape[a] for a in reduction_axes])) if reduction_axes else 1
    cols = int(np.prod([shape[a] for a in others])) if others else 1
    return KernelView(shape, reduction_axes + others, rows, cols)


def check_block_shape(view: KernelView, block_shape: tuple[int, int], name: str) -> None:
    """Raise ValueError naming `name` when `block_shape` does not tile `view`."""
    br, bc = block_shape
    if view.rows % br or view.cols % bc:
        raise ValueError(
            f"`block_shape`={tuple(block_shape)} must divide the 2-D (inputs, outputs) view "
            f"{(view.rows, view.cols)} of variable {name!r} (shape {view.shape})"
        )


def check_n_m(view: KernelView, n: int, m: int, name: str) -> None:
    """Raise ValueError naming `name` when groups of `m` inputs do not tile `view`."""
    if view.rows % m:
        raise ValueError(
            f"n:m pruning with m={m} needs the input size {view.rows} of variable {name!r} "
            f"(shape {view.shape}, 2-D view {(view.rows, view.cols)}) to be a multiple of m"
        )


def block_scores(x2d: np.ndarray, block_shape: tuple[int, int]) -> np.ndarray:
    """Mean |w| of each ``block_shape`` block of the 2-D `x2d`: shape (rows/br, cols/bc)."""
    br, bc = block_shape
    rows, cols = x2d.shape
    blocks = np.abs(x2d).reshape(rows // br, br, cols // bc, bc)
    return blocks.mean(axis=(1, 3), dtype=np.float64)


def expand_blocks(keep_blocks: np.ndarray, block_shape: tuple[int, int]) -> np.ndarray:
    """Repeat a per-block 0/1 array back to element resolution."""
    br, bc = block_shape
    return np.repeat(np.repeat(keep_blocks, br, axis=0), bc, axis=1)


def magnitude_mask(weights: np.ndarray, sparsity: float) -> np.ndarray:
    """Unstructured mask: zero at the ``round(sparsity * size)`` smallest |w|."""
    w = np.asarray(weights)
    prune = lowest_k(np.abs(w).reshape(-1), num_pruned(w.size, sparsity))
    return (~prune).reshape(w.shape).astype(w.dtype if w.dtype.kind == "f" else np.float32)


def block_mask(
    weights: np.ndarray,
    sparsity: float,
    block_shape: tuple[int, int],
    view: KernelView | None = None,
) -> np.ndarray:
    """Block mask: ``round(sparsity * num_blocks)`` blocks of lowest mean |w| are zeroed.

    Blocks tile the 2-D `view` of the kernel (`kernel_view(weights.shape)` when None).
    """
    w = np.asarray(weights)
    view = view or kernel_view(w.shape)
    check_block_shape(view, block_shape, "weights")
    scores = block_scores(view.to_2d(w), block_shape)
    prune = lowest_k(scores.reshape(-1), num_pruned(scores.size, sparsity))
    keep = expand_blocks((~prune).reshape(scores.shape), block_shape)
    return view.from_2d(keep).astype(w.dtype if w.dtype.kind == "f" else np.float32)


def n_m_mask(weights: np.ndarray, n: int, m: int, view: KernelView | None = None) -> np.ndarray:
    """n:m mask: in each group of `m` consecutive inputs of one output keep the `n` largest |w|.

    Ties inside a group keep the lower index. Exactly ``m - n`` zeros per group.
    """
    w = np.asarray(weights)
    view = view or kernel_view(w.shape)
    check_n_m(view, n, m, "weights")
    a = np.abs(view.to_2d(w))  # (rows, cols)
    groups = a.reshape(view.rows // m, m, view.cols)
    # Stable sort on -|w| puts the largest first, lower index first among equals.
    order = np.argsort(-groups, axis=1, kind="stable")
    keep = np.zeros(groups.shape, dtype=bool)
    np.put_along_axis(keep, order[:, :n, :], True, axis=1)
    return view.from_2d(keep.reshape(view.rows, view.cols)).astype(
        w.dtype if w.dtype.kind == "f" else np.float32
    )


def global_masks(
    weights: Sequence[np.ndarray],
    sparsity: float,
    block_shape: tuple[int, int] | None = None,
    views: Sequence[KernelView] | None = None,
) -> list[np.ndarray]:
    """Masks with one magnitude threshold across all `weights` together.

    Unstructured (``block_shape`` None): exactly ``round(sparsity * total_size)``
    elements are zeroed in all. Block: ``round(sparsity * total_blocks)``
    blocks, scored by mean |w|. Ties go to the earlier variable, then the lower index.
    """
    arrays = [np.asarray(w) for w in weights]
    if views is None:
        views = [kernel_view(a.shape) for a in arrays]
    if block_shape is None or tuple(block_shape) == (1, 1):
        scores = [np.abs(a).reshape(-1).astype(np.float64) for a in arrays]
    else:
        scores = [
            block_scores(v.to_2d(a), block_shape).reshape(-1)
            for a, v in zip(arrays, views, strict=True)
        ]
    sizes = [s.size for s in scores]
    flat = np.concatenate(scores) if scores else np.zeros(0)
    prune = lowest_k(flat, num_pruned(flat.size, sparsity))
    masks = []
    start = 0
    for a, v, size in zip(arrays, views, sizes, strict=True):
        keep = ~prune[start : start + size]
        start += size
        dtype = a.dtype if a.dtype.kind == "f" else np.float32
        if block_shape is None or tuple(block_shape) == (1, 1):
            masks.append(keep.reshape(a.shape).astype(dtype))
        else:
            br, bc = block_shape
            keep2d = expand_blocks(keep.reshape(v.rows // br, v.cols // bc), block_shape)
            masks.append(v.from_2d(keep2d).astype(dtype))
    return masks
