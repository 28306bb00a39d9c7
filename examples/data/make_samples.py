"""Draw the small corpus samples that the examples ship with.

Rerun with ``python examples/data/make_samples.py /work/shared/data`` (the folder
holding ``tweets/`` and ``zh-reviews/``, each a ``train.tsv.gz`` and a
``test.tsv.gz`` of ``label<TAB>text`` lines). For each corpus it writes
``examples/data/<corpus>/train.tsv.gz`` and ``test.tsv.gz`` in the same format:
a stratified random sample (seed 0) of 1,500 training and 500 test lines, texts
cut to their first 200 characters. The output is the same bytes on every run.
"""

import argparse
import gzip
from pathlib import Path

from sklearn.model_selection import train_test_split

CORPORA = ("tweets", "zh-reviews")
SIZES = {"train": 1500, "test": 500}
MAX_CHARS = 200  # keeps each file under 150 KB (long Chinese reviews dominate)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="folder with <corpus>/{train,test}.tsv.gz")
    args = parser.parse_args()
    for corpus in CORPORA:
        folder = Path(__file__).parent / corpus
        folder.mkdir(exist_ok=True)
        for split, size in SIZES.items():
            with gzip.open(args.source / corpus / f"{split}.tsv.gz", "rt", encoding="utf-8") as file:
                rows = [line.rstrip("\n").split("\t", 1) for line in file if line.strip()]
            labels = [label for label, _ in rows]
            sample, _ = train_test_split(rows, train_size=size, stratify=labels, random_state=0)
            text = "".join(f"{label}\t{words[:MAX_CHARS]}\n" for label, words in sample)
            output = folder / f"{split}.tsv.gz"
            output.write_bytes(gzip.compress(text.encode("utf-8"), mtime=0))
            print(f"{output}: {len(sample)} lines, {output.stat().st_size / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
