"""keras-bertopt: prune, quantize and export keras-hub BERT classifiers to TFLite."""

from setuptools import find_packages, setup

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
    install_requires=[
        "tensorflow>=2.16",
        "keras>=3.13",
        "keras-hub",
        "tensorflow-datasets",
        # tfds imports it to download/prepare datasets (GLUE) but does not declare it.
        "importlib-resources",
        "ai-edge-litert",
        "safetensors",
        "numpy",
        "pyyaml",
        "matplotlib",
    ],
    extras_require={
        "tfmot": ["tensorflow-model-optimization", "tf-keras"],
        # to_tflite(metadata=True): MediaPipe's metadata writer and TextClassifier.
        "mediapipe": ["mediapipe"],
        "test": ["pytest", "pytest-xdist", "ruff"],
    },
    entry_points={"console_scripts": ["keras-bertopt=keras_bertopt.cli:main"]},
    classifiers=["Programming Language :: Python :: 3", "Framework :: Keras"],
)
