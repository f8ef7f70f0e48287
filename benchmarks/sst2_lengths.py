"""Token lengths of SST-2 (train and dev) under MiniLM's WordPiece tokenizer.

Counts [CLS] and [SEP] as the BERT preprocessor does, and reports for each
candidate `sequence_length` the share of sentences it would truncate. About a
minute on 2 cores (tokenizing 68k sentences eagerly).

    python benchmarks/sst2_lengths.py

Writes benchmarks/results/sst2_lengths.json.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402


def main() -> int:
    from keras_bertopt.data import length_report

    preprocessor = common.minilm_preprocessor(64)
    result: dict = {
        "tokenizer": "all-MiniLM-L6-v2 WordPiece (uncased, 30,522 pieces)",
        "data": "SST-2 (GLUE) ../shared/data/sst2",
    }
    all_texts: list[str] = []
    for split in common.SST2_SPLITS:
        texts, _ = common.sst2_examples(split)
        all_texts += texts
        report = length_report(texts, preprocessor)
        print(f"== {split}\n{report}", flush=True)
        result[split] = report.to_dict()
    report = length_report(all_texts, preprocessor)
    print(f"== train+dev\n{report}", flush=True)
    result["train+dev"] = report.to_dict()
    common.write_result("sst2_lengths", result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
