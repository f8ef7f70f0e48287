"""The recipe's `target` stage, through `recipe.run` and the `keras-bertopt run` command."""

import json
import os

import numpy as np
import pytest
import yaml

from keras_bertopt import cli, recipe

CONFIG = {
    "model": {"sequence_length": 16,
              "tiny": {"num_layers": 2, "num_heads": 2, "hidden_dim": 16, "intermediate_dim": 32}},
    "data": {"batch_size": 16, "train_limit": 96, "eval_limit": 24},
    "finetune": {"epochs": 1, "steps_per_epoch": 4},
    "prune": {"enabled": False},
    "qat": {"enabled": False},
    "target": {"latency": "10000 ms", "max_accuracy_drop": 100.0, "max_trials": 1,
               "layers": [1], "head_fractions": [0.5], "ffn_fractions": [1.0, 0.5],
               "timing_sentences": 8},
    "export": {"enabled": False},
    "evaluate": {"enabled": False},
}


def _with_target(**target):
    return {**CONFIG, "target": {**CONFIG["target"], **target}}


@pytest.mark.parametrize("target, key", [
    ({"latency": 0}, "target.latency"),
    ({"latency": -1.0}, "target.latency"),
    ({"max_accuracy_drop": -0.5}, "target.max_accuracy_drop"),
    ({"device": "gpu"}, "target.device"),
    ({"layers": [3]}, "target.layers"),
    ({"speed": 1}, "target.speed"),
    ({"reference_length": 1}, "target.reference_length"),
])
def test_bad_target_refused_before_any_training(target, key, tmp_path, capsys):
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        recipe.load_config(_with_target(**target))
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(_with_target(**target)))
    out = tmp_path / "out"
    assert cli.main(["run", str(path), "--output", str(out)]) == 2
    assert key in capsys.readouterr().err
    assert not out.exists()


def test_target_section_is_on_when_latency_is_set():
    config = recipe.load_config(CONFIG)
    assert config.target.enabled and config.target.device == "cpu"
    assert not recipe.load_config({**CONFIG, "target": {}}).target.enabled


@pytest.mark.slow
def test_target_stage_ships_a_file_through_the_cli(tmp_path):
    import keras
    import matplotlib.image

    from keras_bertopt.data import demo_examples
    from keras_bertopt.export import TFLiteClassifier
    from keras_bertopt.export.interpreter import Signatures, make_interpreter

    path = tmp_path / "target.yaml"
    path.write_text(yaml.safe_dump(_with_target(reference_length=32)))
    out = tmp_path / "run"
    assert cli.main(["run", str(path), "--output", str(out), "--quiet"]) == 0
    state = json.loads((out / "state.json").read_text())
    stage = state["stages"]["target"]
    search = json.loads((out / "target" / "state.json").read_text())
    # The two candidates (1 layer, 1 head, FFN 32 / 16) were timed; the fastest was shipped.
    assert {c["name"] for c in search["candidates"]} == {"L1-H1-F32", "L1-H1-F16"}
    assert stage["candidate"] == search["candidates"][0]["name"]
    assert stage["file"] == os.path.join("target", f"{stage['candidate']}.tflite")
    assert os.path.isfile(out / stage["file"])
    assert stage["latency_ms"] <= 10000.0
    assert stage["accuracy_drop_pt"] == pytest.approx(
        100 * (stage["baseline_accuracy"] - stage["accuracy"]), abs=1e-3)
    assert f"Ship `{out / stage['file']}`" in (out / "target" / "report.md").read_text()
    assert f"Ship `{stage['file']}` ({stage['candidate']})" in (out / "report.md").read_text()
    # The ratios count against a float32 file fixed at 32 tokens, twice the model's 16.
    reference = str(out / "target" / "reference.tflite")
    assert Signatures.load(make_interpreter(reference), reference).lengths == [32]
    report = (out / "target" / "report.md").read_text()
    assert "the float32 fixed-32 file" in report
    assert all(c["name"] in report for c in search["candidates"])
    assert matplotlib.image.imread(str(out / "target" / "report.png")).ndim == 3  # decodes
    # The accuracies, recomputed here: the fine-tuned Keras model and the shipped file on the
    # recipe's validation sentences (the demo's first 24, `eval_limit`).
    texts, labels = demo_examples("validation", 24)
    finetuned = keras.saving.load_model(str(out / "finetune" / "model.keras"))
    baseline = float(np.mean(np.argmax(finetuned.predict(texts, verbose=0), -1) == labels))
    shipped = TFLiteClassifier(str(out / stage["file"]), finetuned.preprocessor)
    assert stage["baseline_accuracy"] == pytest.approx(baseline)
    assert stage["accuracy"] == pytest.approx(shipped.evaluate(texts, labels)["accuracy"])
    # The recovered Keras model is kept beside its file and computes what the file computes.
    recovered = keras.saving.load_model(search["trials"][0]["model"])
    agree = np.argmax(recovered.predict(texts, verbose=0), -1) == shipped.predict(texts)["labels"]
    assert np.mean(agree) >= 0.9


@pytest.mark.slow
def test_unmeetable_target_exits_nonzero_keeping_the_best_file(tmp_path, capsys):
    path = tmp_path / "target.yaml"
    path.write_text(yaml.safe_dump(_with_target(latency="0.000001 ms")))
    out = tmp_path / "run"
    assert cli.main(["run", str(path), "--output", str(out), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "no candidate meets the latency" in err and "Best file found" in err
    search = json.loads((out / "target" / "state.json").read_text())
    best = search["outcome"]["file"]
    assert os.path.isfile(best) and best in err
    # The best file found is the fastest candidate's, recovered anyway, and the report says so.
    assert best == str(out / "target" / f"{search['candidates'][0]['name']}.tflite")
    assert [t["name"] for t in search["trials"]] == [search["candidates"][0]["name"]]
    assert "Target not met" in (out / "target" / "report.md").read_text()
    # The fine-tune is kept: a rerun resumes at the target stage.
    state = json.loads((out / "state.json").read_text())
    assert "finetune" in state["completed"] and "target" not in state["completed"]
