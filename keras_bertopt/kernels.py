"""Kernel layout of `Dense` / `EinsumDense` layers: which axes are inputs, which outputs.

Pruning (block / n:m views) and quantization (one scale per output channel)
both need to know which kernel axes a layer contracts; this is the one rule.
Pure Python, no Keras.
"""

from __future__ import annotations

import string


def einsum_reduce_axes(equation: str) -> tuple[int, ...]:
    """Kernel axes an EinsumDense `equation` sums over (its input axes); the rest are outputs.

    A kernel axis is summed over exactly when its letter is absent from the
    output, whether it pairs with an input axis or not. ``"abc,cde->abde"``
    (query/key/value) -> ``(0,)``; ``"abcd,cde->abe"`` (attention output) ->
    ``(0, 1)``; ``"ab,bcd->ac"`` -> ``(0, 2)``.

    Raises:
        ValueError: `equation` is not of the form ``"in,kernel->out"`` (two
            operands, no ellipsis in the kernel), or sums over no kernel axis.
    """
    if not isinstance(equation, str) or "->" not in equation or "," not in equation:
        raise ValueError(f"`equation` must look like 'ab,bc->ac', got {equation!r}")
    lhs, out = equation.replace(" ", "").split("->")
    _, kernel = lhs.split(",", 1)
    if "." in kernel or not set(kernel) <= set(string.ascii_letters):
        raise ValueError(
            f"`equation` {equation!r}: only two operands and kernels without an ellipsis are "
            "supported"
        )
    axes = tuple(i for i, letter in enumerate(kernel) if letter not in out)
    if not axes:
        raise ValueError(f"`equation` {equation!r} contracts no kernel axis")
    return axes
