"""MediaPipe metadata: files MediaPipe Tasks' `TextClassifier` runs on raw text as they are.

`attach_metadata(content, preprocessor, labels)` embeds, with MediaPipe's own
writer (`mediapipe.tasks.python.metadata.metadata_writers.text_classifier.
MetadataWriter.create_for_bert_model`), the WordPiece vocabulary of the model's
keras-hub tokenizer, a BERT tokenizer process unit and the label names. On
Android, iOS and the web, MediaPipe then tokenizes natively: no Python
preprocessor is needed. `mediapipe_labels(path, texts)` runs MediaPipe's
`TextClassifier` on the host (what `to_tflite` uses to verify the file).

What MediaPipe cannot express is refused before conversion
(`check_tokenizer`): MediaPipe's BERT tokenizer lowercases its input, so a
cased tokenizer (``lowercase=False``) would silently become a different model.

`mediapipe` is imported here only (an optional extra: ``pip install
keras-bertopt[mediapipe]``). Its 1.2.x Linux wheels lack the compiled module
``mediapipe.tasks.cc.metadata.python._pywrap_metadata_version`` that the writer
imports to stamp the metadata's minimum parser version; `_metadata_writer`
registers a small stand-in for it when the real one is missing (0.10.x wheels
have it and use their own).

Example:

```python
report = keras_bertopt.export.to_tflite(model, "sst2.tflite", metadata=True,
                                        labels=["negative", "positive"])
report.mediapipe_agreement     # 1.0: MediaPipe's labels equal TFLiteClassifier's
```
"""

from __future__ import annotations

import gc
import os
import sys
import tempfile
import types
from typing import Any, Sequence

#: Minimum metadata parser version MediaPipe's own 0.10.14 writer stamps on the
#: metadata `attach_metadata` writes (BERT tokenizer process unit, vocabulary and
#: label files); what the stand-in version module returns.
MIN_PARSER_VERSION = "1.1.0"

_VERSION_MODULE = "mediapipe.tasks.cc.metadata.python._pywrap_metadata_version"


def _install_version_module() -> None:
    """Register the stand-in for the version module the 1.2.x wheels lack."""
    parts = _VERSION_MODULE.split(".")
    for i in range(3, len(parts) + 1):
        name = ".".join(parts[:i])
        if name not in sys.modules:
            module = types.ModuleType(name)
            module.__path__ = []  # a package, so the next part imports from it
            sys.modules[name] = module
            if i > 3:
                setattr(sys.modules[".".join(parts[:i - 1])], parts[i - 1], module)
    sys.modules[_VERSION_MODULE].GetMinimumMetadataParserVersion = (
        lambda metadata_buf: MIN_PARSER_VERSION
    )


def _metadata_writer() -> Any:
    """`mediapipe...metadata_writers.text_classifier` and `metadata_writer`, imported lazily."""
    try:
        import mediapipe  # noqa: F401
    except ImportError:
        raise ImportError(
            "metadata=True needs MediaPipe: pip install 'keras-bertopt[mediapipe]' "
            "(or pip install mediapipe)"
        ) from None
    try:
        from mediapipe.tasks.cc.metadata.python import _pywrap_metadata_version  # noqa: F401
    except ImportError:
        _install_version_module()
    from mediapipe.tasks.python.metadata.metadata_writers import metadata_writer, text_classifier

    return text_classifier, metadata_writer


def _tokenizer(preprocessor: Any) -> Any:
    tokenizer = getattr(preprocessor, "tokenizer", None)
    if tokenizer is None or not hasattr(tokenizer, "get_vocabulary"):
        raise ValueError(
            "metadata=True needs the model's keras-hub preprocessor with a WordPiece tokenizer "
            f"(model.preprocessor.tokenizer); got {type(preprocessor).__name__}"
        )
    return tokenizer


def check_tokenizer(preprocessor: Any) -> None:
    """Raise if MediaPipe's BERT tokenizer cannot run the model's tokenizer.

    Raises:
        ValueError: no keras-hub WordPiece tokenizer; a cased tokenizer
            (MediaPipe lowercases); the vocabulary lacks [CLS]/[SEP]/[UNK].
    """
    tokenizer = _tokenizer(preprocessor)
    name = type(tokenizer).__name__
    if "WordPiece" not in name and "Bert" not in name:
        raise ValueError(
            f"metadata=True supports WordPiece (BERT) tokenizers only; the model's tokenizer is "
            f"{name}"
        )
    if not getattr(tokenizer, "lowercase", False):
        raise ValueError(
            "metadata=True: the model's tokenizer is cased (lowercase=False) but MediaPipe's BERT "
            "tokenizer lowercases its input, so MediaPipe would run a different model; export "
            "an uncased model or leave metadata off"
        )
    vocabulary = tokenizer.get_vocabulary()
    missing = [t for t in ("[CLS]", "[SEP]", "[UNK]") if t not in vocabulary]
    if missing:
        raise ValueError(f"metadata=True: the tokenizer's vocabulary lacks {missing}")


def check_labels(labels: Sequence[str] | None, num_classes: int) -> None:
    """Raise unless `labels` are `num_classes` distinct non-empty names."""
    if labels is None or isinstance(labels, str) or len(labels) != num_classes or any(
            not isinstance(x, str) or not x.strip() for x in labels) or len(set(labels)) != len(
            labels):
        raise ValueError(
            f"`labels` must be {num_classes} distinct non-empty names (one per class) with "
            f"metadata=True, got {labels!r}"
        )


#: DOS date of 1980-01-01 (the earliest a zip entry can carry), time 00:00:00.
_ZIP_DATE, _ZIP_TIME = (0 << 9) | (1 << 5) | 1, 0


def fixed_zip_times(content: bytes) -> bytes:
    """`content` with the modification times of the files zipped at its end (MediaPipe's
    vocab.txt / labels.txt) set to 1980-01-01, so the same model gives the same bytes.

    Walks the zip's central directory from its end record; a file without one is
    returned unchanged.
    """
    import struct

    end = content.rfind(b"PK\x05\x06")
    if end < 0 or len(content) < end + 22:
        return content
    count, size, offset = struct.unpack_from("<HII", content, end + 10)
    base = end - size - offset  # where the archive starts (it follows the flatbuffer)
    out, at = bytearray(content), end - size
    for _ in range(count):
        if out[at:at + 4] != b"PK\x01\x02":
            return content
        name, extra, comment = struct.unpack_from("<HHH", out, at + 28)
        (local,) = struct.unpack_from("<I", out, at + 42)
        struct.pack_into("<HH", out, at + 12, _ZIP_TIME, _ZIP_DATE)
        if out[base + local:base + local + 4] == b"PK\x03\x04":
            struct.pack_into("<HH", out, base + local + 10, _ZIP_TIME, _ZIP_DATE)
        at += 46 + name + extra + comment
    return bytes(out)


def attach_metadata(content: bytes, preprocessor: Any, labels: Sequence[str],
                    names: dict[str, str] | None = None) -> bytes:
    """The file `content` with MediaPipe TextClassifier metadata (vocabulary, labels) embedded.

    Args:
        content: the flatbuffer from the converter.
        preprocessor: the model's keras-hub preprocessor (its tokenizer's
            vocabulary is embedded as vocab.txt).
        labels: one name per class (embedded as labels.txt).
        names: the flatbuffer tensor names of ids / mask / segment ids;
            default: the names the converter gives `to_tflite`'s signature.
    """
    text_classifier, metadata_writer = _metadata_writer()
    names = names or {
        "ids": "serving_default_token_ids:0",
        "mask": "serving_default_padding_mask:0",
        "segment": "serving_default_segment_ids:0",
    }
    vocabulary = _tokenizer(preprocessor).get_vocabulary()
    with tempfile.TemporaryDirectory(prefix="keras_bertopt_metadata_") as folder:
        vocab_path = os.path.join(folder, "vocab.txt")
        with open(vocab_path, "w", encoding="utf-8") as f:
            f.write("\n".join(vocabulary) + "\n")
        writer = text_classifier.MetadataWriter.create_for_bert_model(
            bytearray(content),
            tokenizer=metadata_writer.BertTokenizer(vocab_path),
            labels=metadata_writer.Labels().add(list(labels)),
            ids_name=names["ids"],
            mask_name=names["mask"],
            segment_name=names["segment"],
        )
        with_metadata, _ = writer.populate()
        # MediaPipe's writers form a reference cycle; left to the collector they may live
        # until interpreter exit, where their __del__ fails ("Exception ignored in
        # MetadataWriter.__del__"). Collect them now, while their temp folder can be removed.
        del writer
        gc.collect()
    return fixed_zip_times(bytes(with_metadata))


def mediapipe_labels(path: str, texts: Sequence[str], labels: Sequence[str]) -> list[int]:
    """The class index MediaPipe's `TextClassifier` gives each text (its top category)."""
    from mediapipe.tasks.python.core.base_options import BaseOptions
    from mediapipe.tasks.python.text import text_classifier

    options = text_classifier.TextClassifierOptions(
        base_options=BaseOptions(model_asset_path=os.fspath(path)), max_results=1)
    index = {name: i for i, name in enumerate(labels)}
    out = []
    with text_classifier.TextClassifier.create_from_options(options) as classifier:
        for text in texts:
            top = classifier.classify(text).classifications[0].categories[0]
            out.append(index.get(top.category_name, int(top.index)))
    return out


# ------------------------------------------------------------------ reading a shipped file
#: Names of the files `attach_metadata` embeds (MediaPipe's writer names them after the
#: files it is given): the tokenizer's vocabulary and the class names.
VOCABULARY_FILE = "vocab.txt"
LABELS_FILE = "labels.txt"


def embedded_files(path: str) -> dict[str, bytes]:
    """The files packed into a .tflite file with its metadata; ``{}`` for a file without.

    TFLite metadata keeps its associated files (vocabulary, labels) in a zip
    archive appended to the flatbuffer, so the standard library reads them.
    """
    import zipfile

    if not zipfile.is_zipfile(path):
        return {}
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def _text_lines(data: bytes) -> list[str]:
    """One entry per line (line numbers are token ids: only the final line end is dropped)."""
    lines = [line.rstrip("\r") for line in data.decode("utf-8").split("\n")]
    return lines[:-1] if lines and not lines[-1] else lines


def metadata_labels(path: str) -> list[str] | None:
    """The class names embedded in a file with metadata (``labels.txt``), or None."""
    files = embedded_files(path)
    return _text_lines(files[LABELS_FILE]) if LABELS_FILE in files else None


def metadata_preprocessor(path: str, sequence_length: int | None = None) -> Any:
    """A keras-hub preprocessor built from the vocabulary embedded in a file with metadata.

    The tokenizer is what MediaPipe runs from the same metadata: BERT WordPiece
    on the embedded vocabulary, lowercasing (`check_tokenizer` only lets
    uncased tokenizers into the metadata).

    Args:
        path: a .tflite file written with ``metadata=True``.
        sequence_length: the packing length; default: the file's (its longest
            fixed length; 128 for a dynamic-length file).

    Raises:
        ValueError: the file carries no embedded vocabulary.
    """
    files = embedded_files(path)
    if VOCABULARY_FILE not in files:
        raise ValueError(
            f"{path!r} carries no MediaPipe metadata vocabulary ({VOCABULARY_FILE}): export it "
            "with metadata=True, or pass its preprocessor (a .keras model, a checkpoint folder)"
        )
    if sequence_length is None:
        from keras_bertopt.export.interpreter import Signatures, make_interpreter

        lengths = Signatures.load(make_interpreter(path), repr(path)).lengths
        sequence_length = max(lengths) if lengths else 128
    import keras_hub

    tokenizer = keras_hub.models.BertTokenizer(
        vocabulary=_text_lines(files[VOCABULARY_FILE]), lowercase=True)
    return keras_hub.models.BertTextClassifierPreprocessor(
        tokenizer, sequence_length=int(sequence_length))
