"""The recipe's `distill` stage and `distill: {teacher: finetune}` on prune and QAT."""

import json
import os

import keras
import pytest

from keras_bertopt import recipe


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"distill": {"enabled": True, "alpha": 1.5}}, "'distill.alpha': expected a number in"),
        ({"distill": {"enabled": True, "temperature": 0}},
         "'distill.temperature': expected a number > 0"),
        ({"distill": {"enabled": True, "keep_layers": [0, 2]}},
         "'distill.keep_layers': expected distinct teacher layer indices in [0, 1]"),
        ({"distill": {"enabled": True, "num_layers": 3}}, "'distill.num_layers': expected an"),
        ({"distill": {"enabled": True, "num_layers": 1, "keep_layers": [0]}},
         "'distill.keep_layers': expected null when distill.num_layers is set"),
        ({"distill": {"enabled": True}, "finetune": {"enabled": False}},
         "'distill.enabled': expected false unless 'finetune.enabled'"),
        ({"prune": {"distill": {"teacher": "finetune", "alpha": -0.1}}},
         "'prune.distill.alpha': expected a number in [0, 1]"),
        ({"qat": {"distill": {"teacher": "finetune", "temperature": -1}}},
         "'qat.distill.temperature': expected a number > 0"),
        ({"prune": {"distill": {"teacher": "qat"}}}, "'prune.distill.teacher'"),
        ({"prune": {"distill": {"teacher": "finetune"}}, "finetune": {"enabled": False}},
         "'prune.distill.teacher': expected a stage that runs"),
        ({"distill": {"layers": 2}}, "unknown config key 'distill.layers'"),
    ],
)
def test_bad_distillation_config_names_the_key(raw, message):
    with pytest.raises(ValueError) as info:
        recipe.load_config(raw)
    assert message in str(info.value), str(info.value)


@pytest.mark.slow
def test_recipe_distills_then_prunes_and_quantizes_with_the_teacher(tmp_path):
    config = {
        "model": {"sequence_length": 16,
                  "tiny": {"num_layers": 2, "hidden_dim": 16, "intermediate_dim": 32}},
        "data": {"batch_size": 16, "train_limit": 128, "eval_limit": 32},
        "finetune": {"epochs": 1, "steps_per_epoch": 4},
        "distill": {"enabled": True, "keep_layers": [1], "steps_per_epoch": 4, "alpha": 0.7},
        "prune": {"steps_per_epoch": 4, "frequency": 1, "target_sparsity": 0.5,
                  "distill": {"teacher": "finetune"}},
        "qat": {"steps_per_epoch": 2, "distill": {"teacher": "finetune", "alpha": 0.9}},
        "export": {"enabled": False},
        "evaluate": {"splits": ["validation"]},
    }
    out = str(tmp_path / "run")
    result = recipe.run(config, output_dir=out, fit_verbose=0)
    assert result["completed"] == ["finetune", "distill", "prune", "qat", "evaluate"]
    student = keras.saving.load_model(os.path.join(out, "distill", "model.keras"))
    assert student.backbone.num_layers == 1  # saved as a plain classifier, not a Distiller
    teacher = keras.saving.load_model(os.path.join(out, "finetune", "model.keras"))
    assert teacher.backbone.num_layers == 2
    pruned = keras.saving.load_model(os.path.join(out, "prune", "model.keras"))
    assert pruned.backbone.num_layers == 1  # prune continued from the distilled student
    rows = {r["stage"]: r for r in result["stages"]}
    assert rows["prune"]["sparsity"] == pytest.approx(0.5, abs=1e-3)
    with open(os.path.join(out, "state.json")) as f:
        stages = json.load(f)["stages"]
    for stage in ("distill", "prune", "qat"):  # trained by a Distiller: KD terms logged
        assert "distillation_loss" in stages[stage]["history"], stage
    assert "distillation_loss" not in stages["finetune"]["history"]
    assert stages["distill"]["student_layers"] == 1
