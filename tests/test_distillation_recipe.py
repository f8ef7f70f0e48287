"""The recipe's `distill` stage and `distill: {teacher: finetune}` on prune and QAT: bad
configs. A run with both is tests/test_examples.py's reduced MiniLM recipe."""


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
