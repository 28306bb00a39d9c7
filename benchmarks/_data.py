"""Benchmark datasets: gzipped TSV files of ``label<TAB>text`` lines.

The files live outside the repository, in ``<workspace>/shared/data/<name>/``
(``r8`` and ``20ng``, each with ``train.tsv.gz`` and ``test.tsv.gz``).
"""

import gzip
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data"


def load_tsv(name, split, data_dir=None):
    """Read one split of a dataset.

    Parameters
    ----------
    name : str
        Dataset folder, e.g. ``"r8"`` or ``"20ng"``.
    split : {"train", "test"}
    data_dir : str or pathlib.Path, default=None
        Folder holding the dataset folders; :data:`DATA_DIR` if None.

    Returns
    -------
    texts : list of str
    labels : list of str
    """
    path = Path(data_dir if data_dir is not None else DATA_DIR) / name / f"{split}.tsv.gz"
    if not path.is_file():
        raise FileNotFoundError(f"No dataset file at {path}; pass --data-dir to point elsewhere.")
    texts, labels = [], []
    with gzip.open(path, "rt", encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            label, tab, text = line.rstrip("\n").partition("\t")
            if not tab:
                raise ValueError(f"{path}, line {number}: expected 'label<TAB>text', got {line[:80]!r}.")
            labels.append(label)
            texts.append(text)
    return texts, labels
