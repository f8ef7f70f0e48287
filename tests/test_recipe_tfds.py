"""The recipe on a GLUE task through tensorflow_datasets (`data.source: tfds`), mocked offline."""

import os

import numpy as np
import pytest


@pytest.mark.slow  # a short recipe run (~20 s)
def test_recipe_trains_and_evaluates_on_tfds_glue_rows(tmp_path):
    import tensorflow_datasets as tfds

    from keras_bertopt import recipe
    from keras_bertopt.predict import load_model

    config = {
        "model": {"sequence_length": 16,
                  "tiny": {"num_layers": 1, "hidden_dim": 16, "intermediate_dim": 32}},
        "data": {"source": "tfds", "name": "glue/sst2", "download": False, "batch_size": 8},
        "finetune": {"epochs": 1, "steps_per_epoch": 3},
        "prune": {"enabled": False}, "qat": {"enabled": False}, "export": {"enabled": False},
        "evaluate": {"splits": ["validation"]},
    }
    out = tmp_path / "run"
    with tfds.testing.mock_data(num_examples=24, policy=tfds.testing.MockPolicy.USE_CODE):
        report = recipe.run(config, output_dir=str(out), fit_verbose=0)
        # tfds's own rows, read straight from tfds (not through the package's loaders).
        rows = [(e["sentence"].decode(), int(e["label"]))
                for e in tfds.load("glue/sst2", split="validation").as_numpy_iterator()]
    assert report["completed"] == ["finetune", "evaluate"]
    result = next(m for m in report["models"] if m["stage"] == "finetune")
    assert result["metrics"]["validation"]["examples"] == len(rows) == 24
    model = load_model(os.path.join(out, "finetune", "model.keras"))
    texts, labels = zip(*rows, strict=True)
    predicted = np.argmax(model.predict(np.array(texts), verbose=0), axis=-1)
    by_hand = float(np.mean(predicted == np.array(labels)))
    assert result["metrics"]["validation"]["accuracy"] == pytest.approx(by_hand, abs=1e-6)
