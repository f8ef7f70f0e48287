"""keras_bertopt.compress: target parsing, candidate shapes, paired timing and the search."""

import json
import os

import numpy as np
import pytest

from keras_bertopt.compress import (
    Candidate,
    RecoverySettings,
    candidate_shapes,
    compress_to_target,
    next_candidate,
    parse_target,
    trial_order,
)

# ---------------------------------------------------------------------------- target


def test_parse_target_ratio_ms_and_device():
    t = parse_target({"latency": 0.05, "max_accuracy_drop": 1.0})
    assert (t.latency, t.latency_unit, t.max_accuracy_drop, t.device) == (0.05, "ratio", 1.0, "cpu")
    assert t.quantization == "dynamic"
    assert t.meets(0.05, 99.0, 1.0) and not t.meets(0.051, 0.1, 0.0)
    assert not t.meets(0.01, 1.0, 1.01)
    ms = parse_target({"latency": "2.5 ms", "max_accuracy_drop": 0, "device": "int8"})
    assert (ms.latency, ms.latency_unit, ms.quantization) == (2.5, "ms", "int8")
    assert ms.meets_latency(0.9, 2.5) and not ms.meets_latency(0.001, 2.6)
    assert parse_target(ms.to_dict()) == ms


@pytest.mark.parametrize("value, key", [
    ({"latency": 0, "max_accuracy_drop": 1}, "target.latency"),
    ({"latency": -0.1, "max_accuracy_drop": 1}, "target.latency"),
    ({"latency": 1.5, "max_accuracy_drop": 1}, "target.latency"),
    ({"latency": "0 ms", "max_accuracy_drop": 1}, "target.latency"),
    ({"latency": "fast", "max_accuracy_drop": 1}, "target.latency"),
    ({"latency": True, "max_accuracy_drop": 1}, "target.latency"),
    ({"latency": 0.1, "max_accuracy_drop": -0.5}, "target.max_accuracy_drop"),
    ({"latency": 0.1, "max_accuracy_drop": "1"}, "target.max_accuracy_drop"),
    ({"latency": 0.1}, "target.max_accuracy_drop"),
    ({"latency": 0.1, "max_accuracy_drop": 1, "device": "gpu"}, "target.device"),
    ({"latency": 0.1, "max_accuracy_drop": 1, "speed": 2}, "target.speed"),
])
def test_bad_target_is_refused_naming_the_key(value, key):
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        parse_target(value)


# ---------------------------------------------------------------------------- candidates


def test_candidate_shapes_grid_sorted_by_encoder_weights(tiny_classifier):
    shapes = candidate_shapes(tiny_classifier, head_fractions=(1.0, 0.5), ffn_fractions=(1.0, 0.5))
    # tiny: 2 layers, 2 heads, FFN 64 -> 2 x 2 x 2 shapes.
    assert len(shapes) == 8 and shapes[0] == Candidate(2, 2, 64)
    assert shapes[-1] == Candidate(1, 1, 32)
    hidden, key_dim = 32, 16
    sizes = [c.encoder_parameters(hidden, key_dim) for c in shapes]
    assert sizes == sorted(sizes, reverse=True)
    # by hand: one layer, 2 heads x 16 dims, 4 attention kernels + 2 FFN kernels of width 64.
    assert Candidate(1, 2, 64).encoder_parameters(32, 16) == 4 * 32 * 32 + 2 * 32 * 64
    assert Candidate(1, 1, 32).prune_arguments(tiny_classifier) == {
        "layers": 1, "heads": 1, "intermediate": 32}
    with pytest.raises(ValueError, match="`layers`"):
        candidate_shapes(tiny_classifier, layers=[3])
    with pytest.raises(ValueError, match="`head_fractions`"):
        candidate_shapes(tiny_classifier, head_fractions=[0])


def test_trial_order_keeps_the_front_smallest_first():
    rows = [
        {"name": "L2-H2-F64", "layers": 2, "heads": 2, "intermediate": 64, "ratio": 0.6,
         "median_ms": 6, "meets_latency": False},
        {"name": "L1-H2-F64", "layers": 1, "heads": 2, "intermediate": 64, "ratio": 0.4,
         "median_ms": 4, "meets_latency": True},
        {"name": "L1-H1-F64", "layers": 1, "heads": 1, "intermediate": 64, "ratio": 0.45,
         "median_ms": 4.5, "meets_latency": True},  # slower and smaller than L1-H2-F64
        {"name": "L1-H1-F32", "layers": 1, "heads": 1, "intermediate": 32, "ratio": 0.3,
         "median_ms": 3, "meets_latency": True},
    ]
    order = [r["name"] for r in trial_order(rows, 32, 16)]
    assert order == ["L1-H1-F32", "L1-H2-F64"]
    # A deeper shape stays on the front though a shallower one is faster and has more weights.
    # Encoder weights at hidden 32, key_dim 16: layers x (4*32*heads*16 + 2*32*FFN), so
    # L1-H2-F64 has 4096 + 4096 = 8192 and L2-H1-F32 2 x (2048 + 2048) = 8192: a tie in size,
    # more layers, slower. L2-H1-F16 (2 x (2048 + 1024) = 6144) is beaten by L2-H1-F32 only
    # when that one is at least as fast; here it is faster, so it stays as well.
    deeper = rows + [
        {"name": "L2-H1-F32", "layers": 2, "heads": 1, "intermediate": 32, "ratio": 0.5,
         "median_ms": 5, "meets_latency": True},
        {"name": "L2-H1-F16", "layers": 2, "heads": 1, "intermediate": 16, "ratio": 0.48,
         "median_ms": 4.8, "meets_latency": True},
        {"name": "L2-H2-F16", "layers": 2, "heads": 2, "intermediate": 16, "ratio": 0.55,
         "median_ms": 5.5, "meets_latency": True},  # 2 x (4096 + 1024) = 10240: kept too
    ]
    order = [r["name"] for r in trial_order(deeper, 32, 16)]
    # Fewest layers first, then fewest weights: the order the bisection assumes accuracy rises.
    assert order == ["L1-H1-F32", "L1-H2-F64", "L2-H1-F16", "L2-H1-F32", "L2-H2-F16"]
    slower_smaller = deeper + [
        {"name": "L2-H1-F8", "layers": 2, "heads": 1, "intermediate": 8, "ratio": 0.6,
         "median_ms": 6, "meets_latency": True}]  # slower than L2-H1-F16 and smaller: beaten
    assert "L2-H1-F8" not in [r["name"] for r in trial_order(slower_smaller, 32, 16)]
    none = [dict(r, meets_latency=False) for r in rows]
    assert [r["name"] for r in trial_order(sorted(none, key=lambda r: r["ratio"]), 32, 16)] == [
        "L1-H1-F32"]


def _trial(name, drop):
    return {"name": name, "accuracy_drop": drop}


def test_next_candidate_tries_the_smallest_then_bisects_the_front():
    front = [{"name": f"c{i}"} for i in range(7)]  # smallest first

    def following(*trials):
        row = next_candidate(front, list(trials), 1.0)
        return None if row is None else row["name"]

    assert following() == "c0"
    assert following(_trial("c0", 0.5)) is None  # the smallest kept the accuracy: done
    # c0 lost too much: the middle of c1..c6 is c4 ((1 + 7) // 2).
    assert following(_trial("c0", 2.0)) == "c4"
    # c4 kept it: c5, c6 are ruled out, the middle of c1..c3 is c2.
    assert following(_trial("c0", 2.0), _trial("c4", 1.0)) == "c2"
    # c4 lost too much as well: the middle of c5..c6 is c6.
    assert following(_trial("c0", 2.0), _trial("c4", 1.5)) == "c6"
    assert following(_trial("c0", 2.0), _trial("c4", 0.9), _trial("c2", 1.2),
                     _trial("c3", 0.1)) is None  # c3 is the smallest that keeps it
    assert next_candidate([], [], 1.0) is None


def test_report_png_plots_every_candidate_and_the_recovered_front(tmp_path):
    import matplotlib.image
    import matplotlib.pyplot as plt

    from keras_bertopt.compress.report import front_figure, write_png

    state = {"candidates": [
        {"name": "L1-H1-F32", "ratio": 0.3, "meets_latency": True},
        {"name": "L1-H2-F64", "ratio": 0.4, "meets_latency": True},
        {"name": "L2-H2-F64", "ratio": 0.6, "meets_latency": False}],
        "trials": [{"name": "L1-H1-F32", "ratio": 0.28, "accuracy": 0.71},
                   {"name": "L1-H2-F64", "ratio": 0.41, "accuracy": 0.83}],
        "outcome": {"met": True, "name": "L1-H2-F64", "ratio": 0.41, "accuracy": 0.83},
        "baseline_accuracy": 0.84}
    path = str(tmp_path / "report.png")
    assert write_png(state, path) == path and os.listdir(tmp_path) == ["report.png"]
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert matplotlib.image.imread(path).shape[:2] == (500, 1300)  # decodes at 13 x 5 in

    figure = front_figure(state)
    left, right = figure.axes
    plotted = [sorted(map(tuple, np.concatenate([c.get_offsets() for c in ax.collections])))
               for ax in (left, right)]
    plt.close(figure)
    # Left: one point per candidate (latency ratio, row); right: the two recovered candidates
    # and the shipped one again (starred), at their measured (ratio, accuracy).
    assert plotted[0] == [(0.3, 0.0), (0.4, 1.0), (0.6, 2.0)]
    assert plotted[1] == [(0.28, 0.71), (0.41, 0.83), (0.41, 0.83)]


def test_report_says_above_when_the_shipped_model_beats_the_float_model():
    """A recovered student can score higher than the fine-tuned model it came from (a 4-layer
    MiniLM did, by 0.8 pt); the report then says "above", not "-0.803 pt below"."""
    from keras_bertopt.compress.report import render

    def shipped(drop):
        state = {"target_text": "latency <= 0.1x", "baseline_accuracy": 0.8876,
                 "reference_ms": 30.08, "reference_file_length": 128, "candidates": [],
                 "trials": [], "outcome": {"met": True, "file": "L4.tflite", "name": "L4",
                                           "ratio": 0.0875, "median_ms": 2.564,
                                           "accuracy": 0.8876 - drop / 100,
                                           "accuracy_drop": drop}}
        return render(state).split("\n")[6]

    assert shipped(-0.8028) == ("**Ship `L4.tflite`** (L4): 0.0875x the float32 fixed-length "
                                "time, 2.564 ms, accuracy 0.8956 (0.803 pt above the float "
                                "model).")
    assert shipped(1.0321).endswith("accuracy 0.8773 (1.03 pt below the float model).")
    assert shipped(0.0).endswith("accuracy 0.8876 (the float model's accuracy).")


# ---------------------------------------------------------------------------- timing

@pytest.mark.slow
def test_time_files_pairs_against_the_reference(tiny_classifier, tmp_path, monkeypatch):
    from keras_bertopt.compress import (
        export_candidate,
        export_reference,
        time_files,
        time_in_fresh_process,
        timing,
    )
    from keras_bertopt.data import demo_examples

    def not_here(*args):
        raise AssertionError("files must be timed in a fresh process, not the caller's")

    monkeypatch.setattr(timing, "paired_times", not_here)

    texts, _ = demo_examples("validation", 8)
    ref = export_reference(tiny_classifier, str(tmp_path / "ref.tflite"))
    same = export_reference(tiny_classifier, str(tmp_path / "same.tflite"))
    small = export_candidate(tiny_classifier, str(tmp_path / "dyn.tflite"), "dynamic")
    out = time_files({"same": same, "dyn": small}, ref, tiny_classifier.preprocessor, texts,
                     rounds=2)
    assert set(out) == {"float32_fixed_length", "same", "dyn"}
    assert out["float32_fixed_length"]["ratio"] == 1.0
    assert all(v["median_ms"] > 0 and v["ratio"] > 0 for v in out.values())
    # A reference fixed at 64 tokens while the preprocessor packs 32: each file runs at its
    # own length (a fixed-32 file fed 64-wide rows, or the reverse, is refused by the runner).
    from keras_bertopt.export.interpreter import Signatures, make_interpreter

    long_ref = export_reference(tiny_classifier, str(tmp_path / "ref64.tflite"), 64)
    assert Signatures.load(make_interpreter(long_ref), long_ref).lengths == [64]
    assert tiny_classifier.preprocessor.sequence_length == 32
    longer = time_files({"fixed32": ref}, long_ref, tiny_classifier.preprocessor, texts)
    assert set(longer) == {"float32_fixed_length", "fixed32"}
    assert tiny_classifier.preprocessor.sequence_length == 32
    with pytest.raises(ValueError, match="`texts`"):
        time_files({"dyn": small}, ref, tiny_classifier.preprocessor, [])
    # The fresh process's labels are those the package's runner gives in this process.
    from keras_bertopt.export import TFLiteClassifier, preprocess_texts

    rows = preprocess_texts(tiny_classifier.preprocessor, texts)
    times, labels = time_in_fresh_process({"dyn": small}, {"dyn": rows}, rounds=2)
    here = TFLiteClassifier(small, tiny_classifier.preprocessor).predict_logits(rows)
    assert labels["dyn"].tolist() == np.argmax(here, -1).tolist()
    assert times["dyn"].shape == (2, len(texts))
    with pytest.raises(RuntimeError, match="fresh process failed"):
        time_in_fresh_process({"gone": str(tmp_path / "gone.tflite")}, {"gone": rows})


# ---------------------------------------------------------------------------- search


@pytest.fixture
def demo_data():
    from keras_bertopt.data import demo_examples

    return demo_examples("train", 96), demo_examples("validation", 48)


CANDIDATES = [Candidate(2, 2, 64), Candidate(1, 2, 32), Candidate(1, 1, 16)]
FAST = RecoverySettings(epochs=1, batch_size=16, importance_batches=2)


def _run(model, data, folder, target, **kwargs):
    return compress_to_target(model, target, data[0], data[1], str(folder),
                              candidates=CANDIDATES, recovery=FAST, timing_sentences=12,
                              **kwargs)


@pytest.mark.slow
def test_killed_search_resumes_without_redoing_timing(tiny_classifier, demo_data, tmp_path,
                                                      monkeypatch):
    from keras_bertopt.compress import recover, search, timing

    calls = {"time": 0, "recover": 0}
    real_time, real_recover = timing.time_files, recover.recover_candidate

    def counted_time(*args, **kwargs):
        calls["time"] += 1
        return real_time(*args, **kwargs)

    def dying_recover(*args, **kwargs):
        calls["recover"] += 1
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(timing, "time_files", counted_time)
    monkeypatch.setattr(recover, "recover_candidate", dying_recover)
    target = {"latency": "10000 ms", "max_accuracy_drop": 100.0}
    with pytest.raises(KeyboardInterrupt):
        _run(tiny_classifier, demo_data, tmp_path, target)
    assert calls == {"time": 1, "recover": 1}
    saved = json.loads((tmp_path / "state.json").read_text())
    assert len(saved["candidates"]) == 3 and saved["trials"] == []
    assert saved["recovery_text"] == (f"1 epoch(s) of {len(demo_data[0][0])} sentences, "
                                      "logit distillation (T 2.0, alpha 0.7), "
                                      "at most 3 candidate(s)")
    monkeypatch.setattr(recover, "recover_candidate", real_recover)
    result = _run(tiny_classifier, demo_data, tmp_path, target)
    # Candidates were not timed again (only the recovered file is), the trial ran once.
    assert calls["time"] == 2
    assert result.name == saved["candidates"][0]["name"]
    with pytest.raises(ValueError, match="another target"):
        _run(tiny_classifier, demo_data, tmp_path, {"latency": 0.5, "max_accuracy_drop": 1.0})
    assert search.STATE_FILE == "state.json"


@pytest.mark.slow
def test_shipped_file_retimed_over_the_latency_is_named_in_the_message(
        tiny_classifier, demo_data, tmp_path, monkeypatch):
    from keras_bertopt.compress import TargetNotMet, recover, timing

    real_time = timing.time_files
    calls = []

    def slower_after_recovery(files, *args, **kwargs):
        out = real_time(files, *args, **kwargs)
        calls.append(sorted(files))
        if len(calls) > 1:  # the recovered file's own timing: 20 s per sentence
            out = {k: {**v, "median_ms": 20000.0} if k in files else v for k, v in out.items()}
        return out

    monkeypatch.setattr(timing, "time_files", slower_after_recovery)
    monkeypatch.setattr(recover, "recover_candidate",
                        lambda model, candidate, *a, **k: recover.prune_to(model, candidate))
    with pytest.raises(TargetNotMet) as caught:
        compress_to_target(tiny_classifier, {"latency": "10000 ms", "max_accuracy_drop": 100.0},
                           demo_data[0], demo_data[1], str(tmp_path),
                           candidates=[Candidate(1, 1, 16)], recovery=FAST, timing_sentences=4)
    assert calls == [["L1-H1-F16"], ["L1-H1-F16"]]
    message = str(caught.value)
    assert "L1-H1-F16 keeps the accuracy but its shipped file, timed again after recovery, " \
           "misses the latency (" in message and "20000.00 ms); 1 of at most" in message
    assert caught.value.best_file == str(tmp_path / "L1-H1-F16.tflite")


def test_bad_arguments_refused_before_work(tiny_classifier, demo_data, tmp_path):
    with pytest.raises(ValueError, match="target.latency"):
        _run(tiny_classifier, demo_data, tmp_path, {"latency": 0, "max_accuracy_drop": 1})
    with pytest.raises(ValueError, match="`candidates`"):
        compress_to_target(tiny_classifier, {"latency": 0.5, "max_accuracy_drop": 1},
                           demo_data[0], demo_data[1], str(tmp_path),
                           candidates=[Candidate(3, 2, 64)])
    with pytest.raises(ValueError, match="`reference_length`"):
        _run(tiny_classifier, demo_data, tmp_path, {"latency": 0.5, "max_accuracy_drop": 1},
             reference_length=1)
    with pytest.raises(ValueError, match="`train`"):
        compress_to_target(tiny_classifier, {"latency": 0.5, "max_accuracy_drop": 1},
                           (["a"], [0, 1]), demo_data[1], str(tmp_path))
    assert not os.listdir(tmp_path)
