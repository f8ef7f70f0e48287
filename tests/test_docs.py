"""README.md and docs/: every Python block runs as written, and the results tables are true.

The blocks of one page run in order in one namespace (a page reads top to bottom, like a
notebook), in a fresh temporary folder, so a block may use what an earlier block on its page
made, never anything else. A page whose blocks train for more than a few seconds says so with
``<!-- docs-test: slow -->`` (its test is marked slow). A block that needs what a test machine
does not have (network, the MiniLM checkpoint, SST-2, a GPU or TPU, several machines) is
preceded by ``<!-- docs-test: not-run <reason> -->``; the reason must name that need. A block
for the JAX backend (Keras fixes its backend at import) is preceded by
``<!-- docs-test: jax -->`` and runs by itself in a fresh Python process with
``KERAS_BACKEND=jax`` and four virtual CPU devices, as tests_jax does. Training examples state
the accuracy they reach with an ``assert`` in the block itself, so a reader sees the claim and
this test checks it.
"""

import datetime
import glob
import json
import linecache
import os
import re
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGES = ["README.md"] + sorted(
    os.path.relpath(p, REPO) for p in glob.glob(os.path.join(REPO, "docs", "**", "*.md"),
                                                recursive=True))
BLOCK = re.compile(r"(?:<!-- docs-test: (?P<marker>[^>]*?) -->\n)?```(?P<lang>[\w-]*)[^\n]*\n"
                   r"(?P<code>.*?)^```", re.S | re.M)
#: What a not-run block may be waiting for: what a test machine lacks.
NOT_RUN_NEEDS = ("network", "MiniLM", "SST-2", "GPU", "TPU", "several machines")


def _read(page):
    with open(os.path.join(REPO, page), encoding="utf-8") as f:
        return f.read()


def code_blocks(page):
    """(line, marker, code) of every python block of `page`, in order."""
    text = _read(page)
    return [(text[:m.start("code")].count("\n") + 1, m.group("marker") or "", m.group("code"))
            for m in BLOCK.finditer(text) if m.group("lang") in ("python", "py")]


def _page_params():
    params = []
    for page in PAGES:
        blocks = code_blocks(page)
        if any(not marker.startswith("not-run") for _, marker, _ in blocks):
            slow = "<!-- docs-test: slow -->" in _read(page)
            params.append(pytest.param(page, id=page, marks=[pytest.mark.slow] if slow else []))
    return params


@pytest.mark.parametrize("page", _page_params())
def test_python_blocks_run(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "__docs__"}
    for line, marker, code in code_blocks(page):
        if marker.startswith("not-run"):
            continue
        if marker == "jax":
            _run_on_jax(f"{page}:{line}", code, tmp_path)
            continue
        name = f"{page}:{line}"
        # Padded to the block's line, so a traceback names the page's own line numbers.
        source = "\n" * (line - 1) + code
        linecache.cache[name] = (len(source), None, source.splitlines(True), name)
        exec(compile(source, name, "exec"), namespace)  # noqa: S102


def _run_on_jax(name, code, folder):
    """`code` alone in a fresh process on the JAX backend with four virtual CPU devices."""
    from tests._offline import OFFLINE_ENV

    env = dict(os.environ, **OFFLINE_ENV, KERAS_BACKEND="jax", TF_CPP_MIN_LOG_LEVEL="2",
               XLA_FLAGS="--xla_force_host_platform_device_count=4",
               PYTHONPATH=os.pathsep.join([REPO, os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, "-c", code], cwd=folder, env=env, capture_output=True,
                         text=True, timeout=900)
    assert out.returncode == 0, f"{name} on JAX:\n{out.stderr[-3000:]}"


def test_recipe_configs_in_docs_validate(tmp_path):
    # YAML blocks are configs a reader copies: each must pass the recipe's full check.
    import yaml

    from keras_bertopt import recipe
    from keras_bertopt.data import demo_examples

    texts, labels = demo_examples("validation", 16)
    configs = [m.group(1) for page in PAGES
               for m in re.finditer(r"```yaml\n(.*?)^```", _read(page), re.S | re.M)]
    assert configs
    for n, text in enumerate(configs):
        data = (yaml.safe_load(text) or {}).get("data") or {}
        for split in ("train", "validation", "test"):
            if data.get(split):                  # the files a config names, with demo rows
                path = tmp_path / data[split]
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text("sentence\tlabel\n" + "".join(
                    f"{t}\t{y}\n" for t, y in zip(texts, labels, strict=True)), encoding="utf-8")
        path = tmp_path / f"config_{n}.yaml"
        path.write_text(text, encoding="utf-8")
        assert isinstance(recipe.load_config(str(path)), recipe.RecipeConfig)


def test_every_not_run_block_says_what_it_needs():
    markers = [(page, line, marker) for page in PAGES for line, marker, _ in code_blocks(page)
               if marker]
    bad = [(page, line, marker) for page, line, marker in markers if marker != "jax" and (
        not (marker == "not-run" or marker.startswith("not-run "))
        or not any(need.lower() in marker.lower() for need in NOT_RUN_NEEDS))]
    assert not bad, (f"markers must be 'jax' or 'not-run <reason naming one of "
                     f"{NOT_RUN_NEEDS}>': {bad}")


def test_block_parser_reads_markers_and_languages(tmp_path, monkeypatch):
    page = tmp_path / "page.md"
    page.write_text("text\n```python\na = 1\n```\n<!-- docs-test: not-run needs a TPU -->\n"
                    "```python\nb = 2\n```\n```bash\nls\n```\n", encoding="utf-8")
    monkeypatch.setattr(sys.modules[__name__], "REPO", str(tmp_path))
    assert code_blocks("page.md") == [(3, "", "a = 1\n"), (7, "not-run needs a TPU", "b = 2\n")]


def test_readme_test_command_is_the_one_ci_runs():
    readme = _read("README.md")
    command = re.search(r"python -m pytest[^`\n]*", readme).group(0)
    assert command in _read(".ci/run")
    assert len(readme.splitlines()) <= 250


def test_readme_links_lead_to_files():
    # README is read on the repository's front page, outside the docs build that checks links.
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", _read("README.md"))
    assert targets
    missing = [t for t in targets if "://" not in t and not os.path.exists(os.path.join(REPO, t))]
    assert not missing, f"README links to files that do not exist: {missing}"


def _numbers(data):
    """Every number in a JSON document."""
    if isinstance(data, dict):
        return [n for value in data.values() for n in _numbers(value)]
    if isinstance(data, list):
        return [n for value in data for n in _numbers(value)]
    return [data] if isinstance(data, (int, float)) and not isinstance(data, bool) else []


def _found(shown, unit, numbers):
    """Whether a number of the JSON, shown as README shows it (its decimals), reads `shown`."""
    scale = {"x": 1, "%": 100, " MB": 1e-6}[unit]
    decimals = len(shown.split(".")[1]) if "." in shown else 0
    return any(f"{scale * n:.{decimals}f}" == shown for n in numbers)


def test_readme_results_are_those_of_the_json_they_cite():
    rows = re.findall(r"^\| [^|]+ \| ([^|]+) \| (\d{4}-\d\d-\d\d) \| `(\w+)\.json` \|$",
                      _read("README.md"), re.M)
    assert len(rows) >= 5
    for measured, date, name in rows:
        with open(os.path.join(REPO, "benchmarks", "results", f"{name}.json")) as f:
            data = json.load(f)
        assert date == data["machine"]["date_utc"][:10], f"{name}.json is not from {date}"
        numbers = _numbers(data)
        values = re.findall(r"(\d+(?:\.\d+)?)(x| MB|%)", measured)
        assert values, measured
        for shown, unit in values:
            assert _found(shown, unit, numbers), f"README: {shown}{unit} is not in {name}.json"


# -------------------------------------------------------------- the benchmarks page's hook


@pytest.fixture
def hook():
    sys.path.insert(0, os.path.join(REPO, "docs"))
    try:
        import gen_benchmarks

        yield gen_benchmarks
    finally:
        sys.path.remove(os.path.join(REPO, "docs"))


def _result(folder, name, date, tf="2.21.0", **fields):
    machine = {"date_utc": f"{date}T10:00:00+00:00", "tensorflow_version": tf,
               "keras_version": "3.15.1", "keras_hub_version": "0.32.0"}
    (folder / f"{name}.json").write_text(json.dumps({**fields, "machine": machine}))


def test_stale_results_are_marked(hook, tmp_path):
    newest = datetime.date(2026, 12, 10)
    _result(tmp_path, "new", newest.isoformat(), command="python benchmarks/new.py --x 1")
    _result(tmp_path, "week_old", (newest - datetime.timedelta(days=7)).isoformat())
    _result(tmp_path, "old", (newest - datetime.timedelta(days=8)).isoformat())
    _result(tmp_path, "other_tf", newest.isoformat(), tf="2.19.1")
    _result(tmp_path, "new_quick", newest.isoformat())        # smoke runs are left out
    results = hook.load_results(str(tmp_path))
    assert sorted(results) == ["new", "old", "other_tf", "week_old"]
    assert hook.staleness(results) == {
        "new": "", "week_old": "", "old": "8 days older than the newest result",
        "other_tf": "other versions (tensorflow 2.19.1)"}
    table = hook.runs_table(results)
    assert "`python benchmarks/new.py --x 1`" in table
    assert re.search(r"`old\.json` \| 2026-12-02 \|.*\| 8 days older", table)


def test_latency_table_from_json(hook, tmp_path):
    def entry(median, ratio, paired, accuracy, size):
        return {"median_ms": median, "p90_ms": 2 * median, "median_vs_float32_fixed128": ratio,
                "paired_ratios": paired, "accuracy": accuracy, "size_bytes": size}

    files = {"float32/fixed128": entry(40.0, 1.0, {"dynamic/fixed128": 2.5}, 0.9, 90e6),
             "dynamic/fixed128": entry(16.0, 0.4, {}, 0.91, 23e6),
             "dynamic/real_length": entry(4.0, 0.1, {}, 0.91, 25e6),
             "newmode/newlayout": entry(3.0, None, {"dynamic/newlayout": 0.9}, 0.5, 1e6)}
    _result(tmp_path, "latency", "2026-12-03", files=files)
    page = hook.render("before\n<!-- results:latency -->\nafter", str(tmp_path))
    lines = page.splitlines()
    assert lines[0] == "before" and lines[-1] == "after"
    assert "| float32, fixed 128 | 40.00 | 80.00 | 1.000x | 2.50x | 90.00 | 90.0 |" in lines
    assert "| dynamic-range, length buckets | 4.00 | 8.00 | 0.100x | 1.00x | 91.00 | 25.0 |" \
        in lines
    assert "| newmode, newlayout | 3.00 | 6.00 | - | 0.90x | 50.00 | 1.0 |" in lines


def test_layouts_and_mediapipe_tables_from_json(hook, tmp_path):
    files = {"dynamic/default": {"median_ms": 3.0, "p90_ms": 6.0,
                                 "median_vs_float32_fixed128": 0.1, "paired_ratios": {},
                                 "accuracy": 0.85, "size_bytes": 24e6}}
    mediapipe = {"files": {
        "mediapipe_default": {"median_ms": 3.0, "paired_vs_mediapipe_fixed": 0.25,
                              "accuracy": 0.85},
        "mediapipe_fixed": {"median_ms": 12.0, "paired_vs_mediapipe_fixed": 1.0,
                            "accuracy": 0.84}},
        "sentences": 872, "rounds": 3,
        "label_agreement_mediapipe_default_vs_tflite_classifier": 1.0}
    _result(tmp_path, "latency_layouts", "2026-12-05", files=files, mediapipe=mediapipe)
    page = hook.render("<!-- results:latency_layouts -->\n<!-- results:mediapipe -->",
                       str(tmp_path))
    lines = page.splitlines()
    assert ("| dynamic-range, default layout | 3.00 | 6.00 | 0.100x | 1.00x | 85.00 | 24.0 |"
            in lines)
    assert ("| MediaPipe `TextClassifier`, default file (real length) | 3.00 | 0.250x | 85.00 |"
            in lines)
    assert "| MediaPipe `TextClassifier`, fixed-128 metadata file | 12.00 | 1.000x | 84.00 |" \
        in lines
    assert ("Label agreement, MediaPipe (default file) with `TFLiteClassifier`: 1.0000 over 872 "
            "sentences, 3 rounds.") in lines
