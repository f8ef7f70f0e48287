"""Commands for the Python processes tests start, with the test processes' TensorFlow settings.

Grappler is off in the pytest processes (tests/conftest.py); a process a test starts would
otherwise spend seconds rewriting each traced function for speed before its first run, which
buys nothing for a tiny model's few steps. `GRAPPLER_OFF` is that setting as a script prelude,
`cli_command` runs ``keras-bertopt ARGS`` with it::

    subprocess.run(cli_command("run", "config.yaml", "--output", "out"), check=True)
"""

from __future__ import annotations

import sys

GRAPPLER_OFF = ("import tensorflow as tf\n"
                'tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})\n')


#: `GRAPPLER_OFF`, and each model's first `fit` step traced once (Keras builds the optimizer and
#: metric variables first), as tests/conftest.py sets both in the test processes. The recipe
#: turns the second on by itself, so `cli_command` needs only the first.
TEST_PROCESS_SETTINGS = GRAPPLER_OFF + ("from keras_bertopt._compat import build_before_tracing\n"
                                        "build_before_tracing()\n")


def cli_command(*args: str) -> list[str]:
    """The argv of ``keras-bertopt ARGS`` in a fresh Python process with Grappler off."""
    main = "import sys\nfrom keras_bertopt.cli import main\nsys.exit(main(sys.argv[1:]))\n"
    return [sys.executable, "-c", GRAPPLER_OFF + main, *args]
