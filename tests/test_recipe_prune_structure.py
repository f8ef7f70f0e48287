"""The recipe's `prune_structure` stage: scores, removes, recovers, and later stages use it."""

import json
import os

import pytest

from keras_bertopt import recipe

CONFIG = {
    "model": {"sequence_length": 16,
              "tiny": {"num_layers": 2, "num_heads": 2, "hidden_dim": 16, "intermediate_dim": 32}},
    "data": {"batch_size": 16, "train_limit": 128, "eval_limit": 32},
    "finetune": {"epochs": 1, "steps_per_epoch": 4},
    "prune_structure": {"enabled": True, "heads": 0.5, "intermediate": 0.5, "layers": 1,
                        "importance": "taylor", "score_batches": 2, "steps_per_epoch": 4},
    "prune": {"enabled": False},
    "qat": {"enabled": True, "epochs": 1, "steps_per_epoch": 2},
    "export": {"enabled": False},
    "evaluate": {"splits": ["validation"]},
}


@pytest.mark.parametrize(
    "section, message",
    [
        ({"heads": 1.0}, "'prune_structure.heads': expected a number in [0, 1)"),
        ({"layers": 2}, "'prune_structure.layers'"),
        ({"heads": 0.0, "intermediate": 0.0, "layers": 0}, "something to remove"),
        ({"importance": "random"}, "'prune_structure.importance'"),
    ],
)
def test_bad_prune_structure_config_names_the_key(section, message):
    raw = {**CONFIG, "prune_structure": {**CONFIG["prune_structure"], **section}}
    with pytest.raises(ValueError) as info:
        recipe.load_config(raw)
    assert message in str(info.value)


@pytest.mark.slow
def test_prune_structure_stage_runs_and_later_stages_use_the_smaller_model(tmp_path):
    import keras

    out = str(tmp_path / "run")
    result = recipe.run(CONFIG, output_dir=out, fit_verbose=0)
    assert result["completed"] == ["finetune", "prune_structure", "qat", "evaluate"]
    state = json.loads(open(os.path.join(out, "state.json")).read())
    stage = state["stages"]["prune_structure"]
    assert stage["num_layers"] == 1 and stage["num_heads"] == [1]
    assert stage["intermediate_dim"] == [16]
    assert stage["params_after"] < stage["params_before"]
    assert len(stage["importance"]["heads"]) == 2 and stage["importance"]["method"] == "taylor"
    model = keras.saving.load_model(os.path.join(out, "prune_structure", "model.keras"),
                                    safe_mode=True, compile=False)
    assert model.backbone.num_heads == [1] and model.count_params() == stage["params_after"]
    # QAT, the stage after, started from the smaller model: one layer of one head.
    qat = keras.saving.load_model(os.path.join(out, "qat", "model.keras"), safe_mode=True,
                                  compile=False)
    assert qat.backbone.num_layers == 1 and qat.backbone.num_heads == [1]
    assert qat.backbone.count_params() == model.backbone.count_params()
    evaluated = {m["stage"] for m in result["models"]}
    assert {"prune_structure", "qat"} <= evaluated
