"""`QuantizationConfig`: what `quantize_aware` quantizes, and how."""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Sequence, Union

from keras_bertopt.selection import compile_patterns

Patterns = Union[str, Sequence[str], None]

WEIGHT_GRANULARITIES = ("per_channel", "per_tensor")
#: How the exported file quantizes activations: from learned ranges, or at run time.
ACTIVATION_MODES = ("static", "dynamic")


@dataclasses.dataclass
class QuantizationConfig:
    """Settings of 8-bit quantization-aware training.

    Args:
        include: regex (or list) searched in the *kernel* path of each Dense /
            EinsumDense layer (e.g. ``transformer_layer_0/self_attention_layer/
            query/kernel``); None quantizes every Dense and EinsumDense layer
            (q/k/v, attention output, feed-forward, pooler, classifier).
        exclude: regex (or list) of kernel paths left in float, e.g.
            ``r"logits/"`` to keep the classifier head in float.
        weight_granularity: ``"per_channel"`` (default; one symmetric scale per
            output channel, the layout TFLite's int8 FULLY_CONNECTED uses) or
            ``"per_tensor"`` (one symmetric scale per kernel).
        ema_decay: decay of the exponential moving average of activation
            ranges during training (the first training batch initialises them).
        quantize_outputs: also fake-quantize each quantized layer's output
            (before its activation). TFLite's int8 FULLY_CONNECTED needs an
            int8 output range; without it the converter keeps the matmul float.
        quantize_embeddings: also fake-quantize the token / segment / position
            embedding tables (symmetric, per tensor; `exclude` applies to their
            paths too). They become int8 GATHER tables in TFLite: in MiniLM the
            token table is half the parameters, so this is what brings an int8
            file to about a quarter of the float32 size. On by default; pass
            False to keep the tables float32 in the file (see
            docs/guides/quantization.md: the
            file is then much larger).
        quantize_attention_probs: fake-quantize the attention softmax output
            on TFLite's fixed int8 softmax grid (scale 1/256), for files whose
            probabilities x values matmul runs int8 (``keep_float_ops=()`` in
            `to_tflite`); training then sees the same rounding. Off by default:
            by default that matmul runs in float (see `to_tflite`).
        fully_integer: every op between the int32 inputs and the logits runs in
            int8 / int32 (what NPUs and int8-only delegates need): LayerNorm is
            decomposed into int8 MEAN / SUB / MUL / RSQRT / ADD, the attention
            scores, softmax and both attention matmuls, the residual and
            embedding sums are all fake-quantized, and the embeddings are
            quantized (``quantize_embeddings`` is set). Only the final
            DEQUANTIZE of the logits is float. Needs every Dense / EinsumDense
            quantized: `include` / `exclude` must be None and
            `quantize_outputs` True. Each LayerNorm floors its int8 variance at
            one step of its grid before RSQRT (an int8 MAXIMUM in the file): on
            MiniLM-L6 a few outlier tokens set the squared-deviation range so
            wide that ordinary tokens' variance rounds to 0, and RSQRT(0) made
            training diverge to NaN at its first step. With the floor it trains;
            those outlier layers still normalise coarsely (int8 statistics).
        activations: ``"static"`` (default): activations are fake-quantized
            with learned ranges and the ``"int8"`` file runs int8 FULLY_CONNECTED
            ops on int8 activations. ``"dynamic"``: only the weights (and
            embedding tables) are fake-quantized in training, and the model is
            exported with ``to_tflite(..., quantization="dynamic")``: the int8
            weights QAT learned, with activations quantized per row at run time
            by LiteRT's dynamic-range kernels. On x86 CPUs XNNPack's static
            int8 FULLY_CONNECTED is no faster than its dynamic-range one (which
            quantizes its input on the fly), so the static file's extra
            QUANTIZE / DEQUANTIZE ops make it the slower of the two;
            ``"dynamic"`` trains for the fastest CPU file (docs/benchmarks.md). Not with
            `fully_integer` or `quantize_attention_probs`.
        num_bits: bits of weights and activations; only 8 converts to TFLite
            int8, so only 8 is accepted.

    By default (``fully_integer=False``) LayerNorm, softmax and the two
    attention matmuls stay float and every Dense / EinsumDense is an int8
    FULLY_CONNECTED in the exported file.

    Raises:
        ValueError: for a bad value of any argument (named in the message).
    """

    include: Patterns = None
    exclude: Patterns = None
    weight_granularity: str = "per_channel"
    ema_decay: float = 0.99
    quantize_outputs: bool = True
    quantize_embeddings: bool = True
    quantize_attention_probs: bool = False
    fully_integer: bool = False
    activations: str = "static"
    num_bits: int = 8

    def __post_init__(self) -> None:
        self._check_patterns()
        self._check_scalars()
        self._check_mode_conflicts()

    def _check_patterns(self) -> None:
        """`include` / `exclude`: None, a regex string or a list of them (lists kept as lists)."""
        for name in ("include", "exclude"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, (str, re.Pattern, list, tuple)):
                raise ValueError(
                    f"`{name}` must be a regex string or a list of them, "
                    f"got {type(value).__name__}: {value!r}"
                )
            compile_patterns(value, name)
            if isinstance(value, (list, tuple)):
                setattr(self, name, list(value))

    def _check_scalars(self) -> None:
        """Granularity, EMA decay, the boolean switches, activation mode and bit width."""
        if self.weight_granularity not in WEIGHT_GRANULARITIES:
            raise ValueError(
                f"`weight_granularity` must be one of {WEIGHT_GRANULARITIES}, "
                f"got {self.weight_granularity!r}"
            )
        if (
            isinstance(self.ema_decay, bool)
            or not isinstance(self.ema_decay, (int, float))
            or not (0.0 <= float(self.ema_decay) < 1.0)
        ):
            raise ValueError(f"`ema_decay` must be a float in [0, 1), got {self.ema_decay!r}")
        self.ema_decay = float(self.ema_decay)
        for name in ("quantize_outputs", "quantize_attention_probs", "quantize_embeddings",
                     "fully_integer"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"`{name}` must be a bool, got {getattr(self, name)!r}")
        if self.activations not in ACTIVATION_MODES:
            raise ValueError(
                f"`activations` must be one of {ACTIVATION_MODES}, got {self.activations!r}"
            )
        if self.num_bits != 8 or isinstance(self.num_bits, bool):
            raise ValueError(
                f"`num_bits` must be 8 (TFLite int8 is the export target), got {self.num_bits!r}"
            )

    def _check_mode_conflicts(self) -> None:
        """`fully_integer` quantizes everything; dynamic activations learn no ranges."""
        if self.fully_integer:
            conflicts = [
                name
                for name, bad in (
                    ("include", self.include is not None),
                    ("exclude", self.exclude is not None),
                    ("quantize_outputs", not self.quantize_outputs),
                )
                if bad
            ]
            if conflicts:
                raise ValueError(
                    f"`fully_integer=True` quantizes every layer: {conflicts} must keep their "
                    "defaults (include=None, exclude=None, quantize_outputs=True)"
                )
            self.quantize_embeddings = True
        if self.activations == "dynamic":
            conflicts = [name for name in ("fully_integer", "quantize_attention_probs")
                         if getattr(self, name)]
            if conflicts:
                raise ValueError(
                    f"`activations='dynamic'` learns no activation ranges: {conflicts} must "
                    "be False"
                )

    def get_config(self) -> dict[str, Any]:
        """A JSON-serialisable dict; `QuantizationConfig(**config)` rebuilds it."""
        return dataclasses.asdict(self)

    @classmethod
    def from_config(cls, config: dict[str, Any] | None) -> QuantizationConfig:
        return cls(**(config or {}))


def resolve_config(config: Any) -> QuantizationConfig:
    """`None` -> defaults, a dict -> `QuantizationConfig(**dict)`, a config -> itself."""
    if config is None:
        return QuantizationConfig()
    if isinstance(config, QuantizationConfig):
        return config
    if isinstance(config, dict):
        try:
            return QuantizationConfig(**config)
        except TypeError as err:
            raise ValueError(f"`config` has an unknown key: {err}") from None
    raise ValueError(
        "`config` must be None, a QuantizationConfig or a dict of its arguments; "
        f"got {type(config).__name__}"
    )
