"""keras_bertopt.texts: the one reader of "texts or text pairs" inputs."""

import numpy as np
import pytest

from keras_bertopt import texts


def test_every_accepted_shape_reads_to_the_same_columns():
    single = [["a b", "c"]]
    assert texts.text_columns(["a b", "c"]) == single
    assert texts.text_columns([b"a b", b"c"]) == single
    assert texts.text_columns(np.array(["a b", "c"])) == single
    assert texts.text_columns(np.array([b"a b", b"c"], dtype=object)) == single
    pairs = [["q1", "q2"], ["a1", "a2"]]
    assert texts.text_columns((["q1", "q2"], ["a1", "a2"])) == pairs
    assert texts.text_columns([("q1", "a1"), ("q2", "a2")]) == pairs
    assert texts.texts_or_pairs([("q1", "a1"), ("q2", "a2")]) == (["q1", "q2"], ["a1", "a2"])
    assert texts.texts_or_pairs(["x"]) == ["x"]


def test_a_dataset_of_text_label_batches_drops_the_labels():
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices(((["a", "b", "c"], ["x", "y", "z"]), [0, 1, 0]))
    assert texts.text_columns(ds.batch(2), "data") == [["a", "b", "c"], ["x", "y", "z"]]


@pytest.mark.parametrize(
    "value, message",
    [
        ("one string", "`data` must be a list of texts, not one string"),
        ([], "`data` is empty"),
        ([1, 2], "`data` must hold strings"),
        ((["a", "b"], ["c"]), "`data`: the two text lists differ in length"),
        (np.array([1.0, 2.0]), "`data` must hold strings"),
    ],
)
def test_bad_inputs_name_the_argument(value, message):
    with pytest.raises(ValueError) as info:
        texts.text_columns(value, "data")
    assert message in str(info.value)


def test_as_strings_names_what_it_got():
    assert texts.as_strings(b"x") == ["x"]
    assert texts.as_strings(np.array([[b"a"], [b"b"]], dtype=object)) == ["a", "b"]
    with pytest.raises(ValueError, match="`texts` holds an array of float64"):
        texts.as_strings(np.array([1.0]))
    with pytest.raises(ValueError, match="`texts` holds int"):
        texts.as_strings(3)


def test_is_text_list():
    assert texts.is_text_list(["a", b"b"]) and texts.is_text_list(np.array(["a"]))
    assert not texts.is_text_list("a") and not texts.is_text_list([1])
    assert not texts.is_text_list(np.array([["a"]]))
