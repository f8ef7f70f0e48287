"""`Throughput`: examples/s, real and padded tokens/s, and FLOP utilization during `fit`."""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from typing import Any

import keras
import numpy as np

from keras_bertopt import _compat
from keras_bertopt.callbacks._summary import ScalarWriter, check_every
from keras_bertopt.callbacks.flops import TransformerCost

#: Per-batch counts `count_tokens` records, in queue order.
_FIELDS = ("examples", "tokens", "padded_tokens", "squared", "padded_squared")


@keras.saving.register_keras_serializable(package="keras_bertopt")
class Throughput(keras.callbacks.Callback):
    """Logs ``examples_per_second``, ``tokens_per_second`` (real) and padded tokens/s of training.

    Rates are wall-clock over the training steps of each epoch: from the start
    of its first step (or the end of the last skipped step) to the end of its
    last step, so callbacks and input waits between steps count, while the
    epoch's input-pipeline start-up and the validation pass do not. The first
    `warmup_steps` steps of `fit` (tracing and compilation) are left out; how
    many is in `skipped_steps` and printed once.

    Examples are counted exactly from the loss tracker Keras keeps (its count is
    the number of examples seen). Tokens are the real ones: the sum of the
    `padding_mask` the preprocessor produces, not batch x padded length. A
    keras-hub task runs its preprocessor inside the `tf.data` pipeline that
    `fit` builds, out of a callback's sight, so tokens are counted by passing the
    training dataset through `count_tokens` before `fit` (it returns the same
    batches; each batch's token count goes through a queue that the callback
    reads in step order, so prefetching does not skew it). Without it,
    ``tokens_per_second`` is NaN. With it, ``padded_tokens_per_second`` (batch
    x padded length: the work actually done) is logged too, and given
    `peak_flops` (the machine's measured matmul FLOP/s), the model FLOP
    utilization ``mfu_real`` (useful FLOPs: real tokens only) and
    ``mfu_padded`` (FLOPs done on the padded tensors), from the encoder's cost
    (`keras_bertopt.callbacks.flops.TransformerCost`).

    Example:

    ```python
    import keras, keras_bertopt as kb

    model = kb.models.build_classifier(kb.models.TinyConfig(), 2, 32)
    model.compile(optimizer="adamw",
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    throughput = kb.callbacks.Throughput(warmup_steps=3)
    train = throughput.count_tokens(kb.data.demo_dataset("train"), model)
    history = model.fit(train, epochs=2, callbacks=[throughput])
    history.history["tokens_per_second"], history.history["examples_per_second"]
    ```

    Args:
        warmup_steps: steps at the start of `fit` left out of the rates.
        every_n_steps: also log into the batch logs every N steps (rates over
            those N steps; each waits for the device). Without it the callback reads
            nothing from the device between steps, so Keras keeps dispatching them
            asynchronously; it works with ``steps_per_execution > 1``.
        log_dir: optional TensorBoard directory.
        verbose: print how many steps were skipped (once per `fit`).
        mask_key: the feature holding the padding mask.
        peak_flops: FLOP/s to measure utilization against (e.g. a measured
            float32 matmul peak); None logs no utilization.
        cost: the model's `TransformerCost`; by default counted from the
            trained model when `peak_flops` is set.
    """

    def __init__(
        self,
        warmup_steps: int = 3,
        every_n_steps: int | None = None,
        log_dir: str | None = None,
        verbose: int = 1,
        mask_key: str = "padding_mask",
        peak_flops: float | None = None,
        cost: TransformerCost | None = None,
    ) -> None:
        super().__init__()
        if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, int) or warmup_steps < 0:
            raise ValueError(f"`warmup_steps` must be an integer >= 0, got {warmup_steps!r}")
        if not isinstance(mask_key, str) or not mask_key:
            raise ValueError(f"`mask_key` must be a feature name, got {mask_key!r}")
        if peak_flops is not None and (
            isinstance(peak_flops, bool)
            or not isinstance(peak_flops, (int, float))
            or not peak_flops > 0
        ):
            raise ValueError(f"`peak_flops` must be a positive number (FLOP/s), got {peak_flops!r}")
        if cost is not None and not isinstance(cost, TransformerCost):
            raise ValueError(f"`cost` must be a TransformerCost or None, got {cost!r}")
        self.peak_flops = None if peak_flops is None else float(peak_flops)
        self.cost = cost
        self.warmup_steps = warmup_steps
        self.every_n_steps = check_every(every_n_steps, "every_n_steps")
        self._writer = ScalarWriter(log_dir)
        self.log_dir = self._writer.log_dir
        self.verbose = verbose
        self.mask_key = mask_key
        self._queue: Any = None
        self._buffer: list[tuple[int, ...]] = []
        self.skipped_steps = 0
        #: per epoch: the logged rates and the measured steps, examples, tokens, seconds.
        self.epoch_rates: list[dict[str, Any]] = []

    # ---- the token counter in the input pipeline -------------------------------------------
    def count_tokens(self, dataset: Any, preprocessor: Any = None) -> Any:
        """`dataset` unchanged, with each batch's example and real-token count recorded.

        Args:
            dataset: a batched `tf.data.Dataset` of ``(x, y)``, ``(x, y, w)`` or
                ``x`` as passed to `fit`.
            preprocessor: how to get the padding mask when `x` is raw data: a
                keras-hub task (its `preprocessor` is used) or a preprocessor
                layer. Not needed when `x` already is a dict holding `mask_key`.

        Raises:
            ValueError: `dataset` is not a `tf.data.Dataset`, or its features
                hold no `mask_key` and no preprocessor was given.
        """
        import tensorflow as tf

        if not isinstance(dataset, tf.data.Dataset):
            raise ValueError(
                f"`dataset` must be a batched tf.data.Dataset, got {type(dataset).__name__}"
            )
        if preprocessor is not None and not callable(preprocessor):
            raise ValueError(
                "`preprocessor` must be a keras-hub task or preprocessor layer, got "
                f"{type(preprocessor).__name__}"
            )
        layer = getattr(preprocessor, "preprocessor", None) or preprocessor
        if self._queue is None:
            self._queue = tf.queue.FIFOQueue(
                capacity=1 << 20,
                dtypes=[tf.int64] * (1 + len(_FIELDS)),
                shapes=[[]] * (1 + len(_FIELDS)),
            )
        queue = self._queue
        mask_key = self.mask_key

        def count(index: Any, element: Any) -> Any:
            x = element[0] if isinstance(element, tuple) else element
            if isinstance(x, dict) and mask_key in x:
                mask = x[mask_key]
            elif layer is not None:
                features = layer(x)
                if isinstance(features, tuple):
                    features = features[0]
                if not isinstance(features, dict) or mask_key not in features:
                    raise ValueError(
                        f"`preprocessor` output has no {mask_key!r} feature to count tokens from"
                    )
                mask = features[mask_key]
            else:
                raise ValueError(
                    f"`dataset` features have no {mask_key!r}; pass `preprocessor` (the "
                    "keras-hub task or its preprocessor) so tokens can be counted"
                )
            mask = tf.cast(mask, tf.int64)
            lengths = tf.reduce_sum(mask, axis=-1)
            shape = tf.shape(mask, out_type=tf.int64)
            padded = shape[0] * shape[1]
            counts = tf.stack(
                [
                    index,
                    shape[0],
                    tf.reduce_sum(lengths),
                    padded,
                    tf.reduce_sum(lengths * lengths),
                    padded * shape[1],
                ]
            )
            return counts, element

        def record(counts: Any, element: Any) -> Any:
            with tf.control_dependencies([queue.enqueue(tf.unstack(counts))]):
                return tf.nest.map_structure(tf.identity, element)

        # Counting (which may tokenize) runs in parallel; the parallel map keeps
        # its output order, and the cheap enqueue runs sequentially after it, so
        # counts enter the queue in the order the batches reach `fit`.
        return (
            dataset.enumerate()
            .map(count, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
            .map(record)
        )

    def _drain(self, steps: int, epoch_end: bool = False) -> dict[str, int | None]:
        """Counts (`_FIELDS`) of the next `steps` training steps (token counts None if unknown).

        At an epoch's end one step may have no batch: Keras advances ``optimizer.iterations``
        on the step that finds a dataset of unknown length exhausted."""
        if self._queue is None:
            count = self._examples_seen()
            examples = count - self._count_at_drain
            self._count_at_drain = count
            return {"examples": examples, **{k: None for k in _FIELDS[1:]}}
        available = int(self._queue.size())
        if available:
            columns = [np.asarray(t).tolist() for t in self._queue.dequeue_many(available)]
            self._buffer.extend(zip(*columns, strict=True))
            # Index 0 starts a new pass of the dataset (a new iterator): batches
            # still queued from an older pass (e.g. the one Keras reads to build a
            # model under a distribution strategy) were never trained on.
            starts = [i for i, entry in enumerate(self._buffer) if entry[0] == 0]
            if starts:
                self._buffer = self._buffer[starts[-1]:]
        taken, self._buffer = self._buffer[:steps], self._buffer[steps:]
        missing = steps - len(taken) - (1 if epoch_end else 0)
        if missing > 0 and not self._warned_short:
            self._warned_short = True
            warnings.warn(
                "Throughput: fewer counted batches than training steps; was the dataset "
                "passed to fit the one returned by count_tokens()?",
                stacklevel=2,
            )
        return {key: sum(e[1 + i] for e in taken) for i, key in enumerate(_FIELDS)}

    def _examples_seen(self) -> int:
        for metric in self.model.metrics:
            if metric.name == "loss" and hasattr(metric, "count"):
                return int(round(float(keras.ops.convert_to_numpy(metric.count))))
        raise ValueError(
            "Throughput needs a compiled model (it reads the example count from the loss "
            "tracker); call model.compile(loss=...) first"
        )

    # ---- callback hooks ---------------------------------------------------------------------
    # No device value is read between steps unless `every_n_steps` asks for it: the clock
    # stops where Keras itself waits for the device (its epoch-end metric read, before
    # validation and before `on_epoch_end`), and the step count comes from the optimizer's
    # iterations, read once per epoch. So Keras keeps dispatching steps asynchronously.
    @property
    def async_safe(self) -> bool:
        """True without `every_n_steps`: the batch-end hook then does nothing."""
        return self.every_n_steps is None

    def _iterations(self) -> int:
        optimizer = self.model.optimizer
        inner = getattr(optimizer, "inner_optimizer", None) or optimizer
        return int(round(float(keras.ops.convert_to_numpy(inner.iterations))))

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.skipped_steps = 0
        self._steps_before_epoch = 0
        self._warm = self.warmup_steps == 0
        self._reported = False
        self._warned_short = False
        self._buffer = []
        self.epoch_rates = []
        if self.peak_flops is not None and self.cost is None:
            self.cost = TransformerCost.of(self.model)
        if self._queue is not None:
            stale = int(self._queue.size())
            if stale:
                self._queue.dequeue_many(stale)

    @staticmethod
    def _fresh(now: float) -> dict[str, Any]:
        return {"t0": now, "steps": 0, **{key: 0 for key in _FIELDS}}

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        now = time.perf_counter()
        self._count_at_drain = 0  # Keras resets its metrics before each epoch
        self._epoch = self._fresh(now)
        self._window = self._fresh(now)
        self._epoch_iterations = self._iterations()  # fit's state is in the variables here
        self._unmeasured = 0  # this epoch's steps left out (warm-up)
        self._window_end = 0  # steps of this epoch counted into windows so far
        self._end = None
        self._waiting_first_batch = True

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        if self._waiting_first_batch:
            # Start the epoch's clock at its first step, not at on_epoch_begin:
            # creating the epoch's input iterator (pipeline start-up) is not a step.
            self._waiting_first_batch = False
            now = time.perf_counter()
            self._epoch["t0"] = self._window["t0"] = now
        if not self._warm and self._steps_before_epoch + batch >= self.warmup_steps:
            # Wait for the warm-up steps (one host sync per fit), then start the clock.
            _compat.sync_training_state(self.model)
            self._drain(batch)
            self._warm = True
            self._unmeasured = self._window_end = batch
            self.skipped_steps = self._steps_before_epoch + batch
            now = time.perf_counter()
            self._epoch, self._window = self._fresh(now), self._fresh(now)

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        done = batch + 1  # steps of this epoch done (the last of the execution)
        if self.every_n_steps is None or not self._warm:
            return
        if (self._steps_before_epoch + done) // self.every_n_steps <= (
                self._steps_before_epoch + self._window_end) // self.every_n_steps:
            return
        _compat.sync_training_state(self.model)  # waits for the steps: the clock is right
        now = time.perf_counter()
        steps, self._window_end = done - self._window_end, done
        counts = self._drain(steps)
        self._add(counts, steps)
        rates = self._rates(self._window, now)
        if logs is not None:
            logs.update(rates)
        self._writer.write(rates, self._steps_before_epoch + done, "batch_")
        self._window = self._fresh(time.perf_counter())

    def on_test_begin(self, logs: dict | None = None) -> None:
        if self._end is None:  # fit's validation: the training steps are done (Keras waited)
            self._end = time.perf_counter()

    def _add(self, counts: dict[str, int | None], steps: int) -> None:
        for acc in (self._epoch, self._window):
            acc["steps"] += steps
            for key, value in counts.items():
                acc[key] = None if value is None or acc[key] is None else acc[key] + value

    def _rates(self, acc: dict[str, Any], end: float) -> dict[str, float]:
        elapsed = end - acc["t0"]
        keys = ["examples_per_second", "tokens_per_second", "padded_tokens_per_second"]
        if self.peak_flops is not None:
            keys += ["mfu_real", "mfu_padded"]
        rates = dict.fromkeys(keys, math.nan)
        if acc["steps"] == 0 or elapsed <= 0:
            return rates
        rates["examples_per_second"] = acc["examples"] / elapsed
        if acc["tokens"] is None:
            return rates
        rates["tokens_per_second"] = acc["tokens"] / elapsed
        rates["padded_tokens_per_second"] = acc["padded_tokens"] / elapsed
        if self.peak_flops is not None and self.cost is not None:
            budget = self.peak_flops * elapsed
            rates["mfu_real"] = self.cost.training_flops(acc["tokens"], acc["squared"]) / budget
            rates["mfu_padded"] = (
                self.cost.training_flops(acc["padded_tokens"], acc["padded_squared"]) / budget
            )
        return rates

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        end = self._end if self._end is not None else time.perf_counter()
        _compat.sync_training_state(self.model)  # fit already synced: a no-op then
        steps = self._iterations() - self._epoch_iterations
        self._steps_before_epoch += steps
        if not self._warm:
            self.skipped_steps += steps
            self._drain(steps, epoch_end=True)
        elif steps > self._window_end:
            self._add(self._drain(steps - self._window_end, epoch_end=True),
                      steps - self._window_end)
        rates = self._rates(self._epoch, end)
        self.epoch_rates.append(
            {
                **rates,
                "steps": self._epoch["steps"],
                "examples": self._epoch["examples"],
                "tokens": self._epoch["tokens"],
                "padded_tokens": self._epoch["padded_tokens"],
                "seconds": end - self._epoch["t0"],
            }
        )
        if logs is not None:
            logs.update(rates)
        self._writer.write(rates, epoch, "epoch_")
        if self.verbose and not self._reported:
            self._reported = True
            print(
                f"Throughput: skipped the first {self.skipped_steps} training step(s) "
                "(tracing/compilation) in the rates"
            )

    def on_train_end(self, logs: dict | None = None) -> None:
        self._writer.close()

    def get_config(self) -> dict[str, Any]:
        return {
            "warmup_steps": self.warmup_steps,
            "every_n_steps": self.every_n_steps,
            "log_dir": self.log_dir,
            "verbose": self.verbose,
            "mask_key": self.mask_key,
            "peak_flops": self.peak_flops,
            "cost": None if self.cost is None else dataclasses.asdict(self.cost),
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Throughput:
        config = dict(config)
        if isinstance(config.get("cost"), dict):
            config["cost"] = TransformerCost(**config["cost"])
        return cls(**config)
