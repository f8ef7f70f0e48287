"""The recipe as a pipeline: registry-made config, dotted-key errors, run state, one-way
imports, logging and the CLI's exit status and stage lookup."""

import ast
import json
import os
import subprocess
import sys
import types

import pytest

from keras_bertopt import cli, recipe
from keras_bertopt.recipe import config as config_module
from keras_bertopt.recipe.registry import STAGES, Stage, seed_of
from keras_bertopt.recipe.sections import StageSection
from keras_bertopt.recipe.state import RunState, comparable, open_run

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ----------------------------------------------------------------------------- config


def test_config_sections_follow_the_registry_in_order():
    fields = list(recipe.RecipeConfig.model_fields)
    assert fields == ["output_dir", "seed", "strategy", "checkpoint_every", "model", "data",
                      *[s.name for s in STAGES]]
    for stage in STAGES:
        assert recipe.RecipeConfig.model_fields[stage.name].annotation is stage.section


def test_a_new_stage_is_one_module_and_one_registry_line():
    """A stage module (section, run, check) added to a registry gets its config section,
    with unknown keys refused under it and its cross-section rule applied."""
    from pydantic import Field

    class CountConfig(StageSection):
        enabled: bool = False
        times: int = Field(1, ge=1)

    def check(config):
        if config.count.enabled and not config.finetune.enabled:
            raise ValueError("config key 'count.enabled': needs finetune")

    module = types.ModuleType("count")
    module.SECTION, module.run, module.check = CountConfig, lambda ctx: {"n": 1}, check
    cls = config_module.config_class((*STAGES, Stage("count", module, seed=99)), "WithCount")
    assert cls().count.times == 1
    assert cls.model_validate({"count": {"enabled": True, "times": 3}}).count.times == 3
    with pytest.raises(Exception, match="count"):
        cls.model_validate({"count": {"enabled": True}, "finetune": {"enabled": False}})
    from keras_bertopt.recipe.errors import describe

    with pytest.raises(Exception) as info:
        cls.model_validate({"count": {"time": 2}})
    message = str(describe(info.value, cls))
    assert "unknown config key 'count.time' (did you mean 'times'?)" in message


def test_every_problem_is_listed_with_its_dotted_key():
    with pytest.raises(ValueError) as info:
        recipe.load_config({"prune": {"target_sparsity": 1.5, "frequency": 0},
                            "finetune": {"optimizer": {"kind": "sgd"}, "epochs": "two"}})
    lines = str(info.value).splitlines()
    assert len(lines) == 4
    text = str(info.value)
    assert "config key 'prune.target_sparsity': expected a number in (0, 1), got float 1.5" \
        in text
    assert "config key 'prune.frequency': expected an integer >= 1, got int 0" in text
    assert "config key 'finetune.optimizer.kind': expected one of ['adamw', 'lamb', 'adam']" \
        in text
    assert "config key 'finetune.epochs': expected an integer, got str 'two'" in text


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"data": {"batch_size": "big"}},
         "config key 'data.batch_size': expected an integer or 'auto', got str 'big'"),
        ({"prune": {"exclude": {"a": 1}}},
         "config key 'prune.exclude': expected a string or a list of strings"),
        ({"finetune": {"schedule": {"warmup_ratio": 1.0}}},
         "config key 'finetune.schedule.warmup_ratio': expected a number in [0, 1)"),
        ({"model": {"tiny": {"hidden_dim": 30, "num_heads": 4}}},
         "config key 'model.tiny.hidden_dim': expected a multiple of model.tiny.num_heads (4)"),
        ({"prune_structure": {"enabled": True}},
         "config key 'prune_structure': expected something to remove"),
        ({"finetune": {"regularization": {"l2": 0.1, "include": "(("}}},
         "config key 'finetune.regularization.include': expected valid regular expressions"),
    ],
)
def test_config_error_names_the_dotted_key(raw, message):
    with pytest.raises(ValueError) as info:
        recipe.load_config(raw)
    assert message in str(info.value)


def test_stage_seeds_are_distinct_and_fixed():
    seeds = [seed_of(s.name) for s in STAGES]
    assert len(set(seeds)) == len(seeds)
    # Before, distill and prune_structure both used offset 3.
    assert seed_of("distill") != seed_of("prune_structure")
    assert (seed_of("finetune"), seed_of("prune"), seed_of("qat")) == (0, 1, 2)


def test_a_checked_config_is_not_checked_again(monkeypatch):
    config = recipe.load_config({"finetune": {"epochs": 1}})
    calls = []
    monkeypatch.setattr(recipe.RecipeConfig, "model_validate",
                        classmethod(lambda cls, raw: calls.append(raw)))
    assert recipe.load_config(config) is config and calls == []


# ----------------------------------------------------------------------------- state


def _old_state(config):
    """A state.json as version 1 runs wrote it, from a time before the prune_structure
    section existed, with a key this version does not know."""
    stored = comparable(config)
    del stored["prune_structure"]
    return {
        "version": 1, "config": stored, "completed": ["finetune"],
        "stages": {"finetune": {"steps": 4, "seconds": 1.5, "model": "finetune/model.keras",
                                "history": {"loss": [0.6], "val_accuracy": [0.75]}}},
        "curves": [{"stage": "finetune", "step": 1, "loss": 0.7}],
        "sequence_length": 16, "batch_size": 8, "note": "kept",
    }


def test_state_round_trips_the_file_format(tmp_path):
    raw = _old_state(recipe.demo_config())
    state = RunState.from_dict(raw)
    assert state.completed == ["finetune"] and state.sequence_length == 16
    assert state.extra == {"note": "kept"}
    assert json.loads(json.dumps(state.to_dict())) == raw
    state.record("prune", {"steps": 2, "curves": [{"stage": "prune", "step": 1}]})
    assert state.completed == ["finetune", "prune"] and "curves" not in state.stages["prune"]
    assert [c["stage"] for c in state.curves] == ["finetune", "prune"]


def test_a_state_of_another_version_is_refused_by_name(tmp_path):
    (tmp_path / "state.json").write_text(json.dumps({"version": 0, "config": {}}))
    with pytest.raises(FileExistsError, match="state version 0"):
        open_run(str(tmp_path), recipe.demo_config())


@pytest.mark.slow  # saves and reloads a tiny model, writes the report (~20 s)
def test_an_old_run_folder_resumes(tmp_path, tiny_classifier, package_log):
    config = recipe.load_config({
        "model": {"sequence_length": 32}, "data": {"batch_size": 8},
        "prune": {"enabled": False}, "qat": {"enabled": False},
        "export": {"enabled": False}, "evaluate": {"enabled": False}})
    out = tmp_path / "run"
    (out / "finetune").mkdir(parents=True)
    tiny_classifier.save(str(out / "finetune" / "model.keras"))
    (out / "state.json").write_text(json.dumps(_old_state(config)))
    report = recipe.run(config, output_dir=str(out), fit_verbose=0)
    assert any("finetune: already completed" in m for m in package_log.messages)
    assert report["completed"] == ["finetune"]
    assert report["stages"][0]["seconds"] == 1.5
    state = json.loads((out / "state.json").read_text())
    assert state["note"] == "kept" and state["version"] == 1
    assert os.path.getsize(out / "report.md") > 0


# ----------------------------------------------------------------------------- structure


def _imports(path, package):
    """Modules of `package` that the file at `path` imports (inside functions too)."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
    return {m for m in found if m.startswith(package)}


def test_recipe_and_cli_modules_import_each_other_without_cycles():
    root = os.path.join(REPO, "keras_bertopt")
    modules = {"keras_bertopt.cli": os.path.join(root, "cli.py")}
    for folder, _, names in os.walk(os.path.join(root, "recipe")):
        for name in names:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                module = os.path.relpath(path, REPO)[:-3].replace(os.sep, ".")
                modules[module.removesuffix(".__init__")] = path
    graph = {m: _imports(p, "keras_bertopt") & set(modules) - {m} for m, p in modules.items()}

    def reaches(start, target, seen):
        for nxt in graph[start]:
            if nxt == target or (nxt not in seen and reaches(nxt, target, seen | {nxt})):
                return True
        return False

    cycles = [m for m in graph if reaches(m, m, {m})]
    assert not cycles, f"import cycles through {cycles}"
    assert "keras_bertopt.recipe.runner" not in set().union(
        *(graph[m] for m in graph if ".stages." in m)), "a stage imports the runner"


def test_importing_the_recipe_and_checking_a_config_loads_no_tensorflow():
    code = ("import sys\nimport keras_bertopt.recipe as r\n"
            "r.load_config('examples/demo.yaml')\nprint('tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=REPO, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "False"


# ----------------------------------------------------------------------------- CLI


def test_a_failure_after_work_started_exits_1_not_2(tmp_path, tiny_classifier, capsys,
                                                    monkeypatch):
    from keras_bertopt.recipe.stages import evaluate

    model = str(tmp_path / "m.keras")
    tiny_classifier.save(model)

    def broken(*args, **kwargs):
        raise ValueError("simulated failure during the prediction")

    monkeypatch.setattr(evaluate, "keras_labels", broken)
    assert cli.main(["evaluate", model, "--data", "demo", "--limit", "4"]) == 1
    assert "failed: " in capsys.readouterr().err
    # Bad input found before any work is still 2: a file that is not TFLite, a missing file.
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"not a flatbuffer" * 8)
    assert cli.main(["evaluate", str(junk), "--data", "demo", "--preprocessor", "tiny"]) == 2
    assert "is not a TFLite model" in capsys.readouterr().err
    assert cli.main(["evaluate", str(tmp_path / "none.tflite"), "--data", "demo"]) == 2
    # Class names of the wrong count are refused before the export starts: no file.
    target = tmp_path / "x.tflite"
    assert cli.main(["export", model, "--output", str(target), "--labels", "a,b,c"]) == 2
    assert "`labels` must be 2 distinct non-empty names" in capsys.readouterr().err
    assert not target.exists()


@pytest.mark.slow  # one float32 export of a tiny model (~20 s)
def test_evaluate_finds_a_recipe_files_stage_in_state_json(tmp_path, tiny_classifier, capsys):
    """``prune_structure_float32.tflite`` belongs to ``prune_structure``, not ``prune``."""
    from keras_bertopt import export

    run = tmp_path / "run"
    (run / "prune_structure").mkdir(parents=True)
    tiny_classifier.save(str(run / "prune_structure" / "model.keras"))
    tflite = run / "export" / "prune_structure_float32.tflite"
    export.to_tflite(tiny_classifier, str(tflite), metadata=False)
    files = [{"name": "prune_structure_float32", "stage": "prune_structure",
              "file": "export/prune_structure_float32.tflite"}]
    (run / "state.json").write_text(json.dumps(
        {"version": 1, "stages": {"export": {"files": files}}}))
    capsys.readouterr()
    assert cli.main(["evaluate", str(tflite), "--data", "demo", "--limit", "16",
                     "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["examples"] == 16
    # The same predictions as the Keras model the file came from.
    from keras_bertopt.data import demo_examples
    from keras_bertopt.metrics import label_metrics
    from keras_bertopt.recipe.stages.evaluate import keras_labels

    texts, labels = demo_examples("validation")
    expected = label_metrics(labels[:16], keras_labels(tiny_classifier, texts[:16]), 2)
    assert metrics["accuracy"] == pytest.approx(expected["accuracy"])


# ----------------------------------------------------------------------------- packaging


def test_the_version_is_written_once():
    import tomllib

    import keras_bertopt

    with open(os.path.join(REPO, "pyproject.toml"), "rb") as f:
        project = tomllib.load(f)
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {
        "attr": "keras_bertopt.__version__"}
    assert not os.path.exists(os.path.join(REPO, "setup.py"))
    assert keras_bertopt.__version__.count(".") == 2
    assert project["project"]["scripts"]["keras-bertopt"] == "keras_bertopt.cli:main"


def test_no_file_cites_a_design_document_the_repository_lacks():
    if os.path.exists(os.path.join(REPO, "DESIGN.md")):
        return
    cited = []
    for top in ("keras_bertopt", "benchmarks", "examples", "pyproject.toml"):
        base = os.path.join(REPO, top)
        paths = [base] if os.path.isfile(base) else [
            os.path.join(d, n) for d, _, names in os.walk(base) for n in names
            if n.endswith((".py", ".yaml", ".toml")) and "results" not in d]
        for path in paths:
            with open(path, encoding="utf-8") as f:
                if "DESIGN.md" in f.read():
                    cited.append(os.path.relpath(path, REPO))
    assert not cited, f"cite DESIGN.md, which is not in the repository: {cited}"
