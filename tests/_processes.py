"""Commands for the Python processes tests start, with the test processes' speed settings.

Two settings make the pytest processes (tests/conftest.py) faster without changing a result:

- Grappler off: a process would otherwise spend seconds rewriting each traced function for
  speed before its first run, which buys nothing for a tiny model's few steps.
- The cyclic garbage collector tuned (`GC_TUNED`): TensorFlow, Keras and keras-hub leave
  millions of long-lived objects after import, and every full collection walks all of them
  (a tenth of a test process's time went to it). They are moved to the collector's permanent
  generation (`gc.freeze`), and the young generation is collected every 100,000 allocations
  instead of 700. Garbage is still collected; reference counting frees the rest as before.
  The pytest processes also collect and freeze again as each test file starts, so what
  earlier files left alive (session fixtures, imported modules) is not walked again by the
  full collections TensorFlow's converter asks for on every conversion.

`PROCESS_PRELUDE` is both as a script prelude; `cli_command` runs ``keras-bertopt ARGS`` with
it::

    subprocess.run(cli_command("run", "config.yaml", "--output", "out"), check=True)
"""

from __future__ import annotations

import sys

#: `gc.set_threshold` in test processes: the young generation every 100,000 allocations.
GC_THRESHOLDS = (100_000, 50, 100)

#: Python source: the heavy libraries imported, what they left collected once, the survivors
#: frozen, and the higher young-generation threshold (see the module docstring).
GC_TUNED = ("import gc\nimport keras\nimport keras_hub\n"
            f"gc.collect()\ngc.freeze()\ngc.set_threshold{GC_THRESHOLDS}\n")

PROCESS_PRELUDE = (
    "import tensorflow as tf\n"
    'tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})\n'
    + GC_TUNED)


def tune_garbage_collector() -> None:
    """`GC_TUNED` in the calling process (the pytest processes, from tests/conftest.py)."""
    exec(GC_TUNED, {})  # noqa: S102


#: `PROCESS_PRELUDE`, and each model's first `fit` step traced once (Keras builds the optimizer
#: and metric variables first), as tests/conftest.py sets both in the test processes. The
#: recipe turns the second on by itself, so `cli_command` needs only the first.
TEST_PROCESS_SETTINGS = PROCESS_PRELUDE + (
    "from keras_bertopt._compat import build_before_tracing\nbuild_before_tracing()\n")


def cli_command(*args: str) -> list[str]:
    """The argv of ``keras-bertopt ARGS`` in a fresh Python process with `PROCESS_PRELUDE`."""
    main = "import sys\nfrom keras_bertopt.cli import main\nsys.exit(main(sys.argv[1:]))\n"
    return [sys.executable, "-c", PROCESS_PRELUDE + main, *args]
