"""keras-bertopt: prune, quantize and export keras-hub BERT classifiers to TFLite."""

from setuptools import find_packages, setup

JAX = ["jax>=0.10"]
MEDIAPIPE = ["mediapipe>=1.2.3"]

setup(
    name="keras-bertopt",
    version="0.1.0",
    description=(
        "Learning-rate schedules, regularizers, magnitude pruning, quantization-aware "
        "training and TFLite export for keras-hub BERT models in Keras 3."
    ),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["keras_bertopt", "keras_bertopt.*"]),
    # Lower bounds are the versions DESIGN.md measured; they also keep pip's resolver from
    # backtracking to old TensorFlow / keras-hub releases.
    install_requires=[
        "tensorflow>=2.21",
        "keras>=3.15",
        "keras-hub>=0.32",
        "tensorflow-datasets",
        # tfds imports it to download/prepare datasets (GLUE) but does not declare it.
        "importlib-resources",
        "ai-edge-litert",
        "safetensors",
        "numpy",
        "pyyaml",
        # The recipe's typed config (sections with types, ranges and rules).
        "pydantic>=2.7",
        "matplotlib",
    ],
    extras_require={
        # The Keras 3 JAX backend (everything but TFLite export and tf.distribute).
        "jax": JAX,
        # MediaPipe Tasks metadata for the exported TFLite files (pulls in OpenCV).
        "mediapipe": MEDIAPIPE,
        # tfmot 0.8.1 pins absl-py~=1.2 and mediapipe 1.2.3 pins absl-py~=2.3: pip cannot
        # install both extras together (see README "Set up").
        "tfmot": ["tensorflow-model-optimization>=0.8.1", "tf-keras>=2.21"],
        # Everything the tests import, except tensorflow-model-optimization: the test command
        # installs it with --no-deps (absl-py conflict above); its other dependencies are here.
        "test": ["pytest", "pytest-xdist", "ruff", "tf-keras>=2.21", "dm-tree", "scipy"]
        + JAX
        + MEDIAPIPE,
    },
    entry_points={"console_scripts": ["keras-bertopt=keras_bertopt.cli:main"]},
    classifiers=["Programming Language :: Python :: 3", "Framework :: Keras"],
)
