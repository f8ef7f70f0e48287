"""Hardware targets through `tf.distribute`: one call picks the strategy.

```python
import keras, keras_bertopt as kb

strategy = kb.distribute.get_strategy("auto")      # TPU, else several GPUs, else default
sizes = kb.distribute.batch_sizes(64, strategy)     # global 64 -> per-replica size
with strategy.scope():
    model = kb.models.build_classifier(kb.models.TinyConfig(), 2, 32)
    model.compile(optimizer=keras.optimizers.AdamW(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
model.fit(kb.data.demo_dataset("train", sizes.global_batch_size), epochs=1)
```

Batch sizes are always global: the dataset is batched with the global size and
each of the `num_replicas_in_sync` replicas gets `global // replicas` examples.

The boolean `padding_mask` failure. `fit` of a keras-hub task built inside a
stock `tf.distribute.MirroredStrategy` scope fails with
``Value for attr 'T' of bool is not in the list of allowed values ... {{node
AddN}}``. The cause is in Keras (``keras/src/backend/tensorflow/trainer.py``,
`TensorFlowTrainer._maybe_symbolic_build`): before training (and evaluating),
whenever the model was created under a strategy, Keras takes the first
distributed batch and `strategy.reduce("MEAN", batch)`s it across replicas to
get one example batch to build the model from. The preprocessor's
``padding_mask`` is `tf.bool`, and the cross-replica reduction sums with `AddN`,
which has no bool kernel. Training itself never reduces the batch. The same
call fails differently under `MultiWorkerMirroredStrategy`, whose `reduce` does
not accept a nest at all (``Attempt to convert a value ({'token_ids': ...}) ...
to a Tensor``), whatever the dtypes; and there Keras then reduces the scalar
metrics of every train step with ``reduce("MEAN", value, axis=0)``
(`reduce_per_replica`), which fails with ``Invalid reduction dimension 0 for
input with 0 dimensions``. The strategies returned here (`MirroredStrategy`,
`MultiWorkerMirroredStrategy`, `TPUStrategy` below, plain subclasses of
TensorFlow's that override only `reduce`) reduce a nest leaf by leaf, a boolean
leaf by casting it to int32 per replica, reducing and casting the result back,
and a scalar across replicas only (no axis to reduce), so the model, the
preprocessor and the data stay exactly as they were and nothing else is asked
of the user. Pass one of them where you would pass TensorFlow's (for example
``kb.distribute.MirroredStrategy(["/gpu:0", "/gpu:1"])``).
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Sequence

KINDS = ("auto", "cpu", "mirrored", "multi_worker", "tpu")

# Environment variables that say a TPU is attached (Colab, GKE, Cloud TPU VMs).
_TPU_HINT_ENV = (
    "TPU_NAME",
    "COLAB_TPU_ADDR",
    "KUBE_GOOGLE_CLOUD_TPU_ENDPOINTS",
    "TPU_ACCELERATOR_TYPE",
)


class TPUNotFoundError(RuntimeError):
    """`get_strategy("tpu")` could not resolve or initialise a TPU."""


def _bool_safe_reduce(
    strategy: Any, base_reduce: Any, reduce_op: Any, value: Any, axis: Any
) -> Any:
    """`base_reduce(reduce_op, value, axis)` leaf by leaf, accepting boolean leaves.

    A nest (Keras passes the whole ``(features_dict, labels)`` batch) is reduced
    one leaf at a time, as `MirroredStrategy` already does and
    `MultiWorkerMirroredStrategy` does not (it tries to convert the dict to one
    tensor). Boolean leaves are cast to int32 on each replica, reduced, and cast
    back (nonzero -> True).
    """
    import tensorflow as tf

    leaves = tf.nest.flatten(value)

    def leaf_dtype(v: Any) -> Any:
        results = strategy.experimental_local_results(v)
        return getattr(results[0], "dtype", None) if results else None

    def leaf_axis(v: Any) -> Any:
        # Keras reduces scalar metrics with axis=0 under MultiWorkerMirroredStrategy
        # (`reduce_per_replica`, reduction "mean"); a scalar has no axis 0, so
        # reduce it across replicas only.
        if axis is None:
            return None
        results = strategy.experimental_local_results(v)
        shape = getattr(results[0], "shape", None) if results else None
        return None if shape is not None and shape.rank == 0 else axis

    if len(leaves) == 1 and leaf_dtype(leaves[0]) != tf.bool:
        return base_reduce(reduce_op, value, leaf_axis(leaves[0]))

    def to_int(t: Any) -> Any:
        return tf.cast(t, tf.int32)

    reduced = []
    for leaf in leaves:
        if leaf_dtype(leaf) == tf.bool:
            as_int = strategy.run(tf.function(to_int), args=(leaf,))
            reduced.append(tf.cast(base_reduce(reduce_op, as_int, leaf_axis(leaf)), tf.bool))
        else:
            reduced.append(base_reduce(reduce_op, leaf, leaf_axis(leaf)))
    return tf.nest.pack_sequence_as(value, reduced)


def _strategy_classes() -> dict[str, type]:
    """The bool-safe subclasses, built on first use so importing this module is cheap."""
    global _CLASSES
    if _CLASSES:
        return _CLASSES
    import tensorflow as tf

    def make_reduce(base: type) -> Any:
        def reduce(self: Any, reduce_op: Any, value: Any, axis: Any) -> Any:
            def base_reduce(op: Any, v: Any, ax: Any) -> Any:
                return base.reduce(self, op, v, ax)

            return _bool_safe_reduce(self, base_reduce, reduce_op, value, axis)

        return reduce

    doc = (
        "`tf.distribute.{0}` whose `reduce` also accepts boolean values (such as "
        "keras-hub's `padding_mask`), so Keras can build a model created in its scope. "
        "See `keras_bertopt.distribute`."
    )
    for name, base in (
        ("MirroredStrategy", tf.distribute.MirroredStrategy),
        ("MultiWorkerMirroredStrategy", tf.distribute.MultiWorkerMirroredStrategy),
        ("TPUStrategy", tf.distribute.TPUStrategy),
    ):
        # Same class name as TensorFlow's: some code recognises strategies by name.
        _CLASSES[name] = type(
            name,
            (base,),
            {"reduce": make_reduce(base), "__doc__": doc.format(name), "__module__": __name__},
        )
    return _CLASSES


_CLASSES: dict[str, type] = {}


def __getattr__(name: str) -> Any:
    if name in ("MirroredStrategy", "MultiWorkerMirroredStrategy", "TPUStrategy"):
        return _strategy_classes()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclasses.dataclass(frozen=True)
class BatchSizes:
    """Global and per-replica batch sizes under a strategy."""

    global_batch_size: int
    per_replica_batch_size: int
    num_replicas: int

    def __str__(self) -> str:
        return (
            f"global batch {self.global_batch_size} = {self.num_replicas} replica(s) x "
            f"{self.per_replica_batch_size}"
        )


def batch_sizes(global_batch_size: int, strategy: Any = None) -> BatchSizes:
    """Split a global batch size over the replicas of `strategy` (default: current).

    Raises:
        ValueError: `global_batch_size` is not a positive multiple of the number
            of replicas.
    """
    if not isinstance(global_batch_size, int) or global_batch_size < 1:
        raise ValueError(
            f"`global_batch_size` must be a positive integer, got {global_batch_size!r}"
        )
    if strategy is None:
        import tensorflow as tf

        strategy = tf.distribute.get_strategy()
    replicas = int(strategy.num_replicas_in_sync)
    if global_batch_size % replicas:
        raise ValueError(
            f"`global_batch_size`={global_batch_size} must be a multiple of the "
            f"{replicas} replicas of {type(strategy).__name__}"
        )
    return BatchSizes(global_batch_size, global_batch_size // replicas, replicas)


def read_tf_config(environ: Any = None) -> dict[str, Any]:
    """The parsed `TF_CONFIG` (cluster + task) for multi-worker training.

    Raises:
        ValueError: `TF_CONFIG` is missing, not JSON, or lacks `cluster` /
            `task` entries naming this worker.
    """
    environ = os.environ if environ is None else environ
    raw = environ.get("TF_CONFIG")
    if not raw:
        raise ValueError(
            "get_strategy('multi_worker') needs the TF_CONFIG environment variable, e.g. "
            '{"cluster": {"worker": ["host0:12345", "host1:12345"]}, '
            '"task": {"type": "worker", "index": 0}}; it is not set'
        )
    try:
        config = json.loads(raw)
    except json.JSONDecodeError as err:
        raise ValueError(f"TF_CONFIG must be JSON; could not parse it: {err}") from None
    cluster = config.get("cluster") if isinstance(config, dict) else None
    task = config.get("task") if isinstance(config, dict) else None
    if not isinstance(cluster, dict) or not cluster.get("worker"):
        raise ValueError(f"TF_CONFIG must have cluster.worker (a list of host:port); got {raw}")
    if not isinstance(task, dict) or "type" not in task or "index" not in task:
        raise ValueError(f"TF_CONFIG must have task.type and task.index; got {raw}")
    members = cluster.get(task["type"])
    if not isinstance(members, list) or not 0 <= int(task["index"]) < len(members):
        raise ValueError(
            f"TF_CONFIG task {task} does not name a member of cluster {cluster}"
        )
    return config


def _tpu_hint() -> str | None:
    """Why we think a TPU may be attached, or None (cheap: no network, no TF init)."""
    for name in _TPU_HINT_ENV:
        if os.environ.get(name):
            return f"${name}={os.environ[name]!r}"
    for path in ("/dev/accel0", "/dev/vfio/0"):
        if os.path.exists(path):
            return f"device file {path}"
    return None


def _tpu_strategy(tpu: Any, zone: Any, project: Any) -> Any:
    import tensorflow as tf

    tried = (
        f"tf.distribute.cluster_resolver.TPUClusterResolver(tpu={tpu!r}, zone={zone!r}, "
        f"project={project!r})"
    )
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(
            tpu=tpu, zone=zone, project=project
        )
    except Exception as err:  # noqa: BLE001 - every failure means "no TPU here"
        raise TPUNotFoundError(
            f"get_strategy('tpu') found no TPU: {tried} failed with "
            f"{type(err).__name__}: {err}. On a Cloud TPU VM pass tpu='local'; on a TPU "
            "node pass its name (and zone/project), or set $TPU_NAME."
        ) from err
    try:
        if tpu not in ("local", ""):
            tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except Exception as err:  # noqa: BLE001
        try:
            master = repr(resolver.master())
        except Exception:  # noqa: BLE001
            master = "(unresolvable)"
        raise TPUNotFoundError(
            f"get_strategy('tpu') could not initialise a TPU: {tried} gave master "
            f"{master}, then tf.config.experimental_connect_to_cluster / "
            f"tf.tpu.experimental.initialize_tpu_system failed with "
            f"{type(err).__name__}: {err}"
        ) from err
    return _strategy_classes()["TPUStrategy"](resolver)


def _check_arguments(kind: str, devices: Any, communication: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"`kind` must be one of {KINDS}, got {kind!r}")
    if devices is not None and kind != "mirrored":
        raise ValueError(f"`devices` applies to kind='mirrored' only, got kind={kind!r}")
    if communication not in ("auto", "ring", "nccl"):
        raise ValueError(
            f"`communication` must be 'auto', 'ring' or 'nccl', got {communication!r}"
        )
    if devices is not None and (
        isinstance(devices, str) or not all(isinstance(d, str) for d in devices)
    ):
        raise ValueError(f"`devices` must be a list of device names, got {devices!r}")


def get_strategy(
    kind: str = "auto",
    *,
    tpu: str | None = None,
    zone: str | None = None,
    project: str | None = None,
    devices: Sequence[str] | None = None,
    cross_device_ops: Any = None,
    communication: str = "auto",
) -> Any:
    """A `tf.distribute.Strategy` for this machine; build and compile in its `scope()`.

    Args:
        kind: ``"auto"``: a TPU if one resolves (when `tpu` is given or the
            environment points at one), else `MirroredStrategy` over all GPUs
            when there are two or more, else TensorFlow's default strategy.
            ``"cpu"``: `OneDeviceStrategy("/cpu:0")`. ``"mirrored"``:
            `MirroredStrategy` over `devices` (default: all GPUs, or the CPU).
            ``"multi_worker"``: `MultiWorkerMirroredStrategy` from `TF_CONFIG`
            (create it at program start, before other TensorFlow work).
            ``"tpu"``: `TPUStrategy` through `TPUClusterResolver`.
        tpu: passed to `TPUClusterResolver`: ``"local"`` on a Cloud TPU VM, a TPU
            name on a TPU node.
        zone: passed to `TPUClusterResolver`.
        project: passed to `TPUClusterResolver`.
        devices: device names for ``"mirrored"``, e.g. ``["/gpu:0", "/gpu:1"]``.
        cross_device_ops: ``"mirrored"`` only, e.g.
            `tf.distribute.HierarchicalCopyAllReduce()`.
        communication: ``"multi_worker"`` collective implementation: ``"auto"``,
            ``"ring"`` (gRPC) or ``"nccl"``.

    Returns:
        The strategy. Mirrored, multi-worker and TPU strategies are this
        module's bool-safe subclasses of TensorFlow's (see the module doc).

    Raises:
        ValueError: unknown `kind`, or arguments that do not fit it, or a bad
            `TF_CONFIG` for ``"multi_worker"``.
        TPUNotFoundError: ``"tpu"`` and no TPU could be resolved/initialised
            (the message names what was tried).
    """
    _check_arguments(kind, devices, communication)
    if kind == "multi_worker":
        read_tf_config()

    import tensorflow as tf

    if kind == "tpu":
        return _tpu_strategy(tpu, zone, project)
    if kind == "auto":
        hint = "argument tpu" if tpu is not None else _tpu_hint()
        if hint is not None:
            try:
                return _tpu_strategy(tpu, zone, project)
            except TPUNotFoundError:
                pass
        if len(tf.config.list_logical_devices("GPU")) > 1:
            return _strategy_classes()["MirroredStrategy"]()
        return tf.distribute.get_strategy()
    if kind == "cpu":
        return tf.distribute.OneDeviceStrategy("/cpu:0")
    if kind == "mirrored":
        return _strategy_classes()["MirroredStrategy"](
            devices=list(devices) if devices is not None else None,
            cross_device_ops=cross_device_ops,
        )
    implementation = {
        "auto": tf.distribute.experimental.CommunicationImplementation.AUTO,
        "ring": tf.distribute.experimental.CommunicationImplementation.RING,
        "nccl": tf.distribute.experimental.CommunicationImplementation.NCCL,
    }[communication]
    return _strategy_classes()["MultiWorkerMirroredStrategy"](
        communication_options=tf.distribute.experimental.CommunicationOptions(
            implementation=implementation
        )
    )


def describe(strategy: Any, global_batch_size: int | None = None) -> str:
    """One line naming the strategy, its replicas and (optionally) the batch split."""
    line = f"{type(strategy).__name__} with {strategy.num_replicas_in_sync} replica(s)"
    if global_batch_size is not None:
        line += f"; {batch_sizes(global_batch_size, strategy)}"
    return line
