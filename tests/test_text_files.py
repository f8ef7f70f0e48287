"""`keras_bertopt.text_files`: the one reader of text files (line numbers, formats, errors)."""

import pytest

from keras_bertopt.text_files import iter_texts


def test_txt_skips_blank_lines_and_keeps_line_numbers(tmp_path):
    path = tmp_path / "a.txt"
    path.write_bytes("\ufefffirst text\r\n\n  \nsecond, with \"quotes\"\tand a tab\nthird".encode())
    assert list(iter_texts(path)) == [
        (1, "first text"), (4, 'second, with "quotes"\tand a tab'), (5, "third")]


def test_csv_quoted_newlines_tsv_pairs_and_jsonl_numbers(tmp_path):
    csv_path = tmp_path / "a.csv"
    csv_path.write_text('id,sentence\n1,"two\nlines"\n\n2,plain\n')
    assert list(iter_texts(csv_path)) == [(2, "two\nlines"), (5, "plain")]
    tsv = tmp_path / "p.tsv"
    tsv.write_text('premise\thypothesis\tlabel\n"a\tb"\t1\n')  # quotes are plain characters
    assert list(iter_texts(tsv, ("premise", "hypothesis"))) == [(2, ('"a', 'b"'))]
    jsonl = tmp_path / "a.jsonl"
    jsonl.write_text('{"text": "x"}\n\n{"text": 12}\n')
    assert list(iter_texts(jsonl, "text")) == [(1, "x"), (3, "12")]
    lines = tmp_path / "lines.data"
    lines.write_text("only\n")
    assert list(iter_texts(lines, format="txt")) == [(1, "only")]


@pytest.mark.parametrize(
    "name, content, columns, message",
    [
        ("empty.txt", "\n \n", "sentence", r"empty.txt: the file is empty"),
        ("pairs.txt", "a\n", ("a", "b"), r"a .txt file holds one text per line"),
        ("null.jsonl", '{"sentence": "a"}\n{"sentence": null}\n', "sentence",
         r"null.jsonl, line 2: column 'sentence' is not text"),
        ("list.jsonl", '[1, 2]\n', "sentence", r"list.jsonl, line 1: expected a JSON object"),
        ("cols.csv", "text\nok\n", "sentence", r"cols.csv, line 1: missing column\(s\)"),
        ("fields.tsv", "sentence\tlabel\na\t1\t2\n", "sentence", r"fields.tsv, line 2: expected 2"),
        ("x.xml", "a\n", "sentence", r"cannot tell the format of .*x.xml"),
    ],
)
def test_bad_files_name_the_line(tmp_path, name, content, columns, message):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        list(iter_texts(path, columns))


def test_bad_utf8_and_arguments(tmp_path):
    path = tmp_path / "bin.tsv"
    path.write_bytes(b"sentence\nfine\nbro\xc3ken\n")
    with pytest.raises(ValueError, match=r"bin.tsv, line 3: not valid UTF-8"):
        list(iter_texts(path))
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        iter_texts(tmp_path / "missing.txt")
    with pytest.raises(ValueError, match="`text_columns`"):
        iter_texts(path, ("a", "b", "c"))
    with pytest.raises(ValueError, match="`format`"):
        iter_texts(path, format="xml")
