"""Pure mask math and schedules of keras_bertopt.pruning (no training)."""

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from keras_bertopt.pruning import ConstantSparsity, PolynomialSparsity
from keras_bertopt.pruning import masks as M


def _weights(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


@pytest.mark.parametrize(
    "size,sparsity", [(1000, 0.5), (999, 0.7), (37, 0.25), (10, 0.05), (8, 0.0)]
)
def test_unstructured_mask_prunes_exactly_round_s_size(size, sparsity):
    w = _weights((size,))
    mask = M.magnitude_mask(w, sparsity)
    k = round(sparsity * size)
    assert int((mask == 0).sum()) == k
    # The pruned ones are the smallest magnitudes.
    if 0 < k < size:
        assert np.abs(w[mask == 0]).max() <= np.abs(w[mask == 1]).min()


def test_ties_are_broken_by_index_deterministically():
    w = np.array([0.5, -0.1, 0.1, 0.1, -0.1, 2.0, 0.1], dtype="float32")
    mask = M.magnitude_mask(w, 3 / 7)  # 3 zeros among five tied 0.1 magnitudes
    np.testing.assert_array_equal(mask, [1, 0, 0, 0, 1, 1, 1])
    assert np.array_equal(mask, M.magnitude_mask(w.copy(), 3 / 7))
    all_equal = np.ones((4, 4), "float32")
    mask = M.magnitude_mask(all_equal, 0.5)
    np.testing.assert_array_equal(mask.reshape(-1), [0] * 8 + [1] * 8)


def test_kernel_view_of_einsum_kernels_round_trips():
    # keras-hub BERT query kernel and attention output kernel.
    q_axes = M.einsum_reduction_axes("abc,cde->abde")
    o_axes = M.einsum_reduction_axes("abcd,cde->abe")
    assert q_axes == (0,) and o_axes == (0, 1)
    q = M.kernel_view((32, 2, 16), q_axes)
    o = M.kernel_view((2, 16, 32), o_axes)
    assert (q.rows, q.cols) == (32, 32) and (o.rows, o.cols) == (32, 32)
    w = _weights((2, 16, 32))
    np.testing.assert_array_equal(o.from_2d(o.to_2d(w)), w)
    # An equation whose summed axis is not first is transposed into rows.
    v = M.kernel_view((5, 6, 3), M.einsum_reduction_axes("abc,dcf->abdf"))
    assert v.perm == (1, 0, 2) and (v.rows, v.cols) == (6, 15)
    w = _weights((5, 6, 3))
    np.testing.assert_array_equal(v.to_2d(w)[:, 0], w[0, :, 0])
    np.testing.assert_array_equal(v.from_2d(v.to_2d(w)), w)
    assert M.kernel_view((7,)).rows == 7 and M.kernel_view((4, 3, 5)).rows == 12


def test_pruning_and_quantization_read_einsum_axes_the_same_way():
    """A kernel axis summed without an input partner ("d" in "ab,bcd->ac") is an input axis
    for both pruning's 2-D view and quantization's per-channel scales (one output axis, c)."""
    from keras_bertopt.quantization import einsum_reduce_axes, weight_scale

    # By hand: a kernel letter absent from the output is summed over.
    expected = {"abc,cde->abde": (0,), "abcd,cde->abe": (0, 1), "ab,bcd->ac": (0, 2)}
    for equation, axes in expected.items():
        assert M.einsum_reduction_axes(equation) == axes
        assert einsum_reduce_axes(equation) == axes
    # Pruning: rows are the 4 x 5 summed entries, columns the 3 output channels.
    view = M.kernel_view((4, 3, 5), M.einsum_reduction_axes("ab,bcd->ac"))
    assert (view.rows, view.cols) == (20, 3)
    w = _weights((4, 3, 5))
    for c in range(3):
        np.testing.assert_array_equal(np.sort(view.to_2d(w)[:, c]), np.sort(w[:, c, :].ravel()))
    # Quantization: one scale per output channel c, max |w[:, c, :]| / 127 (by hand).
    scales = keras.ops.convert_to_numpy(weight_scale(w, einsum_reduce_axes("ab,bcd->ac")))
    np.testing.assert_allclose(scales.reshape(-1), np.abs(w).max(axis=(0, 2)) / 127, rtol=1e-6)


def test_block_mask_zeroes_whole_blocks_on_the_2d_view():
    view = M.kernel_view((2, 16, 32), (0, 1))
    w = _weights((2, 16, 32), seed=1)
    mask = M.block_mask(w, 0.5, (4, 1), view)
    blocks = view.to_2d(mask).reshape(8, 4, 32)  # 4 consecutive rows of one column
    assert set(np.unique(blocks.min(axis=1) == blocks.max(axis=1))) == {True}
    assert int((blocks[:, 0, :] == 0).sum()) == round(0.5 * 8 * 32)
    with pytest.raises(ValueError, match="block_shape.*divide"):
        M.block_mask(w, 0.5, (3, 1), view)


def test_n_m_mask_groups_inputs_of_one_output():
    view = M.kernel_view((2, 16, 32), (0, 1))
    w = _weights((2, 16, 32), seed=2)
    mask = M.n_m_mask(w, 2, 4, view)
    groups = view.to_2d(mask).reshape(8, 4, 32)
    np.testing.assert_array_equal(groups.sum(axis=1), np.full((8, 32), 2.0))
    a = np.abs(view.to_2d(w)).reshape(8, 4, 32)
    kept_min = np.where(groups == 1, a, np.inf).min(axis=1)
    pruned_max = np.where(groups == 0, a, -np.inf).max(axis=1)
    assert (kept_min >= pruned_max).all()
    assert float((M.n_m_mask(_weights((16, 8)), 1, 4) == 0).mean()) == 0.75
    with pytest.raises(ValueError, match="multiple of m"):
        M.n_m_mask(_weights((6, 8)), 2, 4)


def test_global_masks_use_one_threshold():
    small = _weights((40, 10), seed=3) * 0.01
    large = _weights((10, 40), seed=4)
    masks = M.global_masks([small, large], 0.5)
    zeros = [int((m == 0).sum()) for m in masks]
    assert sum(zeros) == 400
    assert zeros[0] > zeros[1]  # the small-magnitude variable loses more
    pruned = np.concatenate([np.abs(w[m == 0]) for w, m in zip([small, large], masks, strict=True)])
    kept = np.concatenate([np.abs(w[m == 1]) for w, m in zip([small, large], masks, strict=True)])
    assert pruned.max() <= kept.min()
    blocks = M.global_masks([small, large], 0.5, (1, 5))
    assert sum(int((m == 0).sum()) for m in blocks) == 5 * round(0.5 * 160)


def test_schedules_values_and_steps():
    poly = PolynomialSparsity(0.0, 0.8, begin_step=0, end_step=100, power=3, frequency=10)
    assert poly(0) == (True, 0.0)
    assert poly(5)[0] is False
    assert poly(50)[1] == pytest.approx(0.8 - 0.8 * 0.5**3)
    assert poly(100) == (True, pytest.approx(0.8))
    assert poly(110) == (False, pytest.approx(0.8))
    const = ConstantSparsity(0.5, begin_step=20, frequency=5)
    assert [const(s)[0] for s in (19, 20, 24, 25, 10_000)] == [False, True, False, True, True]
    assert ConstantSparsity(0.5, 0, end_step=10, frequency=5)(15)[0] is False


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: PolynomialSparsity(0.0, 1.0, 0, 10), "final_sparsity.*\\[0, 1\\)"),
        (lambda: PolynomialSparsity(-0.1, 0.5, 0, 10), "initial_sparsity"),
        (lambda: PolynomialSparsity(0.0, 0.5, 10, 10), "end_step.*greater than.*begin_step"),
        (lambda: ConstantSparsity(0.5, 10, end_step=5), "end_step.*greater than.*begin_step"),
        (lambda: ConstantSparsity(1.5), "target_sparsity"),
        (lambda: ConstantSparsity(0.5, frequency=0), "frequency"),
        (lambda: ConstantSparsity(0.5, begin_step=-1), "begin_step"),
        (lambda: PolynomialSparsity(0.0, 0.5, 0, 10, power=0), "power"),
    ],
)
def test_schedule_bad_input(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_schedules_serialize():
    for schedule in (
        PolynomialSparsity(0.1, 0.9, 5, 500, power=2, frequency=7),
        ConstantSparsity(0.3, 2, 99, 3),
    ):
        config = keras.saving.serialize_keras_object(schedule)
        json.dumps(config)
        with keras.saving.custom_object_scope({}):
            back = keras.saving.deserialize_keras_object(config, safe_mode=True)
        assert back == schedule and back(60) == schedule(60)


PARITY = textwrap.dedent(
    """
    import json, numpy as np
    from keras_bertopt.pruning import ConstantSparsity, PolynomialSparsity, masks as M
    import tensorflow as tf
    import tensorflow_model_optimization as tfmot
    from tensorflow_model_optimization.python.core.sparsity.keras import pruning_impl
    out = {"values": [], "masks": []}
    ours = PolynomialSparsity(0.1, 0.85, begin_step=7, end_step=307, power=3, frequency=20)
    theirs = tfmot.sparsity.keras.PolynomialDecay(0.1, 0.85, 7, 307, power=3, frequency=20)
    c_ours = ConstantSparsity(0.6, 3, -1, 4)
    c_theirs = tfmot.sparsity.keras.ConstantSparsity(0.6, 3, -1, 4)
    for step in range(0, 420):
        a, b = ours(step), theirs(step)
        c, d = c_ours(step), c_theirs(step)
        out["values"].append(
            [a[0], bool(b[0]), a[1], float(b[1]), c[0], bool(d[0]), c[1], float(d[1])])
    rng = np.random.default_rng(0)
    cases = [((64, 48), 0.5, (1, 1)), ((128, 30), 0.8, (1, 1)), ((33, 17), 0.3, (1, 1)),
             ((64, 48), 0.7, (1, 4)), ((64, 48), 0.5, (4, 1))]
    def tfmot_pruning(s, block, m_by_n=None):
        return pruning_impl.Pruning(
            lambda: tf.constant(1, tf.int64), [], tfmot.sparsity.keras.ConstantSparsity(s, 0),
            block_size=block, block_pooling_type="AVG", sparsity_m_by_n=m_by_n)
    for shape, s, block in cases:
        w = rng.normal(size=shape).astype("float32")
        impl = tfmot_pruning(s, block)
        if block == (1, 1):
            _, theirs_mask = impl._update_mask(tf.constant(w))
            ours_mask = M.magnitude_mask(w, s)
        else:
            _, theirs_mask = impl._maybe_update_block_mask(tf.constant(w))
            ours_mask = M.block_mask(w, s, block)
        out["masks"].append(
            [list(shape), s, list(block), ours_mask.tolist(), np.asarray(theirs_mask).tolist()])
    w = rng.normal(size=(64, 24)).astype("float32")
    impl = tfmot_pruning(0.5, (1, 1), (2, 4))
    theirs_nm = impl._update_mask_sparsity_m_by_n(tf.constant(w), (2, 4))
    out["n_m"] = [M.n_m_mask(w, 2, 4).tolist(), np.asarray(theirs_nm).tolist()]
    print("RESULT" + json.dumps(out))
    """
)


@pytest.mark.slow
def test_parity_with_tfmot_schedules_and_masks():
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", KERAS_BACKEND="tensorflow")
    proc = subprocess.run(
        [sys.executable, "-c", PARITY], capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT")][-1]
    out = json.loads(line[len("RESULT") :])
    values = np.array(out["values"], dtype=float)
    np.testing.assert_array_equal(values[:, 0], values[:, 1])
    np.testing.assert_allclose(values[:, 2], values[:, 3], atol=1e-6)
    np.testing.assert_array_equal(values[:, 4], values[:, 5])
    np.testing.assert_allclose(values[:, 6], values[:, 7], atol=1e-6)
    assert values[:, 0].sum() == 16  # steps 7, 27, ..., 307
    for shape, s, block, ours, theirs in out["masks"]:
        ours, theirs = np.array(ours), np.array(theirs)
        np.testing.assert_array_equal(ours, theirs, err_msg=f"{shape} s={s} block={block}")
        units = ours.size // (block[0] * block[1])
        assert int((ours == 0).sum()) == round(s * units) * block[0] * block[1]
    ours, theirs = (np.array(a) for a in out["n_m"])
    np.testing.assert_array_equal(ours, theirs)
