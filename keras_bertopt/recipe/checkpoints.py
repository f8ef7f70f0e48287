"""Resume inside a training stage: `StepCheckpoint` saves the training state every N steps,
`resumable_fit` restarts `model.fit` from it as if never stopped.

A checkpoint holds every model variable (weights, pruning masks and steps, QAT
ranges, dropout seed-generator states), every optimizer variable (step, moments,
learning rate), the number of steps done and the logs of finished epochs. It is
one ``.npz`` file written under a temporary name and renamed, so a kill at any
moment leaves the previous checkpoint or the new one. `resumable_fit` then skips
the batches already trained on (the data must be an endless, deterministic
`tf.data.Dataset`, e.g. seeded ``shuffle`` + ``repeat``), runs the rest of the
interrupted epoch and the remaining epochs: the weights equal those of the run
that was never stopped. (The training loss and accuracy logged for the
interrupted epoch cover the steps run after the resume.)

```python
checkpoint = StepCheckpoint("runs/sst2/finetune.ckpt.npz", every=100)
history = resumable_fit(model, lambda: make_train().repeat(), epochs=3, steps_per_epoch=500,
                        checkpoint=checkpoint, validation_data=dev)
checkpoint.remove()   # once the trained model is saved
```
"""

from __future__ import annotations

import json
import os
from typing import Any, Callable, Sequence

import keras
import numpy as np

from keras_bertopt import files

FORMAT = 1


def _variables(model: Any) -> tuple[list[Any], list[Any]]:
    optimizer = getattr(model, "optimizer", None)
    return list(model.variables), list(optimizer.variables) if optimizer is not None else []


def reset_seed_generators(model: Any, seed: int) -> int:
    """Set every seed-generator state of `model` (dropout's random stream) to a value drawn
    from `seed`, so a stage's dropout masks do not depend on what ran before it (a model
    carried over in memory or reloaded from its file). Returns how many were set."""
    states = [v for v in model.variables if v.path.endswith("seed_generator_state")]
    rng = np.random.default_rng(seed)
    for state in states:
        value = np.zeros(state.shape, dtype=state.dtype)
        value.flat[0] = rng.integers(1, 2**31 - 1)
        state.assign(value)
    return len(states)


def _layout(variables: list[Any]) -> list[str]:
    """What must match between a checkpoint and a model: each variable's shape and dtype
    (names carry per-process counters, such as ``dense_3``, so they are not compared)."""
    return [f"{v.dtype}{list(v.shape)}" for v in variables]


def _first_difference(saved: list[str], current: list[str]) -> str:
    width = max(len(saved), len(current))
    padded = zip(saved + [""] * width, current + [""] * width, strict=False)
    for i, (a, b) in enumerate(padded):
        if a != b:
            return f"variable {i}: {a or 'none'} there, {b or 'none'} here"
    return "same layout"


@keras.saving.register_keras_serializable(package="keras_bertopt")
class StepCheckpoint(keras.callbacks.Callback):
    """Save the whole training state to `path` every `every` steps; restore it when `fit`
    starts again (see the module docstring, and `resumable_fit` to resume mid-epoch).

    Args:
        path: the checkpoint file (``.npz``); its folder is created.
        every: steps between checkpoints (>= 1). The checkpoint after step k is
            written at the begin of batch k + 1, after the callbacks listed before
            it did their batch-begin work; one falling on the last step of an
            epoch is written after the epoch's validation, with its logs.

    Attributes:
        step: training steps done (restored from the file).
        epoch_logs: the logs of every finished epoch (restored from the file).
        extras: JSON-able values saved with each checkpoint (a caller's own
            progress, such as recorded curve points; restored from the file).
    """

    def __init__(self, path: str | os.PathLike[str], every: int = 100) -> None:
        super().__init__()
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"`every` must be an integer >= 1, got {every!r}")
        path = os.fspath(path)
        if not path.endswith(".npz"):
            raise ValueError(f"`path` must end in .npz, got {path!r}")
        self.path, self.every = path, every
        self.step, self.epoch_logs, self.extras = 0, [], {}
        self.meta: dict[str, Any] = {}
        if os.path.isfile(path):
            with np.load(path) as saved:
                self._use_meta(json.loads(str(saved["meta"])))
        self._restored, self._save_next = False, False

    def _use_meta(self, meta: dict[str, Any]) -> None:
        self.meta, self.step, self.epoch_logs = meta, meta["step"], meta["epoch_logs"]
        self.extras.clear()
        self.extras.update(meta.get("extras", {}))

    @property
    def exists(self) -> bool:
        """Whether a checkpoint file is there."""
        return os.path.isfile(self.path)

    def save(self, model: Any | None = None) -> None:
        """Write the checkpoint now (atomically)."""
        model = model or self.model
        weights, slots = _variables(model)
        arrays = {f"m{i}": keras.ops.convert_to_numpy(v) for i, v in enumerate(weights)}
        arrays.update({f"o{i}": keras.ops.convert_to_numpy(v) for i, v in enumerate(slots)})
        self.meta = {"format": FORMAT, "step": self.step, "epoch_logs": self.epoch_logs,
                     "extras": self.extras, "model": _layout(weights),
                     "optimizer": _layout(slots)}
        arrays["meta"] = np.asarray(json.dumps(self.meta))
        with files.atomic_output(self.path) as tmp:
            np.savez(tmp, **arrays)

    def restore(self, model: Any | None = None) -> bool:
        """Load the checkpoint into `model` and its optimizer (built first if needed);
        returns False when there is no checkpoint.

        Raises:
            ValueError: the checkpoint was written for other variables.
        """
        model = model or self.model
        if not self.exists:
            return False
        optimizer = getattr(model, "optimizer", None)
        if optimizer is not None and not optimizer.built:
            optimizer.build(model.trainable_variables)
        weights, slots = _variables(model)
        with np.load(self.path) as saved:
            meta = json.loads(str(saved["meta"]))
            for kind, variables, prefix in (("model", weights, "m"), ("optimizer", slots, "o")):
                layout = _layout(variables)
                if layout != meta[kind]:
                    raise ValueError(
                        f"checkpoint {self.path!r} holds {len(meta[kind])} {kind} variables, "
                        f"this model has {len(layout)} ({_first_difference(meta[kind], layout)})"
                        ": it was written by other training; remove it to start over"
                    )
                for i, variable in enumerate(variables):
                    variable.assign(saved[f"{prefix}{i}"])
        if meta != self.meta:  # written after this object read it
            self._use_meta(meta)
        return True

    def remove(self) -> None:
        """Delete the checkpoint file (when the stage's result is safely saved)."""
        if os.path.exists(self.path):
            os.remove(self.path)

    # ------------------------------------------------------------------ callback hooks
    def on_train_begin(self, logs: dict | None = None) -> None:
        if not self._restored:
            self._restored = True
            self.restore()

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        # Saved here, not at the last batch's end: the callbacks listed before this one
        # have done their work for the steps done (a pruning schedule evaluates step k at
        # the begin of batch k), so a resume neither skips nor repeats it.
        if self._save_next:
            self._save_next = False
            self.save()

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self.step += 1
        last_of_epoch = batch + 1 == (self.params or {}).get("steps")
        self._save_next = self.step % self.every == 0 and not last_of_epoch

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self._save_next = False
        self.epoch_logs.append({k: float(v) for k, v in (logs or {}).items()})
        if self.step % self.every == 0:
            self.save()

    def get_config(self) -> dict[str, Any]:
        return {"path": self.path, "every": self.every}


def history_of(epoch_logs: Sequence[dict[str, float]]) -> dict[str, list[float]]:
    """Per-epoch logs as `History.history` holds them (key -> one value per epoch)."""
    out: dict[str, list[float]] = {}
    for logs in epoch_logs:
        for key, value in logs.items():
            out.setdefault(key, []).append(value)
    return out


def resumable_fit(model: Any, data: Callable[[], Any], *, epochs: int, steps_per_epoch: int,
                  checkpoint: StepCheckpoint | None, callbacks: Sequence[Any] = (),
                  **fit_kwargs: Any) -> dict[str, list[float]]:
    """`model.fit(data, epochs, steps_per_epoch)` that continues from `checkpoint`.

    `data()` must return a new endless, deterministic `tf.data.Dataset` each call
    (seeded ``shuffle`` + ``repeat``; a new one, because a dataset object that
    reshuffles gives each new iterator another order): the batches already
    trained on are skipped. An interrupted epoch is finished by a `fit` of its
    remaining steps, then the other epochs run as usual; the callbacks see both
    calls. Returns the history of every epoch (the earlier ones from the
    checkpoint). `checkpoint=None`: one plain `fit`.

    Raises:
        ValueError: the checkpoint is past this training's length.
    """
    if checkpoint is None:
        history = model.fit(data(), epochs=epochs, steps_per_epoch=steps_per_epoch,
                            callbacks=list(callbacks), **fit_kwargs)
        return {k: [float(v) for v in vs] for k, vs in history.history.items()}
    total = epochs * steps_per_epoch
    done = checkpoint.step
    if done > total:
        raise ValueError(f"checkpoint {checkpoint.path!r} is at step {done}, past this "
                         f"training's {total} steps; remove it to start over")
    if done == total:  # finished; a kill came before the model was saved
        checkpoint.restore(model)
        return history_of(checkpoint.epoch_logs)
    everything = [*callbacks, checkpoint]
    epoch, into = divmod(done, steps_per_epoch)
    if into:
        model.fit(data().skip(done), initial_epoch=epoch, epochs=epoch + 1,
                  steps_per_epoch=steps_per_epoch - into, callbacks=everything, **fit_kwargs)
        epoch += 1
    if epoch < epochs:
        model.fit(data().skip(epoch * steps_per_epoch), initial_epoch=epoch, epochs=epochs,
                  steps_per_epoch=steps_per_epoch, callbacks=everything, **fit_kwargs)
    return history_of(checkpoint.epoch_logs)
