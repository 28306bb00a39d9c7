"""What the benchmarks share: the datasets, the machine's description, peak memory, tables.

The datasets are gzipped TSV files of ``label<TAB>text`` lines outside the
repository, in ``<workspace>/shared/data/<name>/`` (``r8``, ``20ng``, ``tweets``...,
each with ``train.tsv.gz`` and ``test.tsv.gz``).
"""

import gzip
import platform
import resource
import sys
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


def peak_rss_mib():
    """Peak resident set size of this process so far, in MiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB on Linux


def cpu_model():
    """The CPU's model name, from /proc/cpuinfo where there is one."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def format_table(columns, cells, markdown, text_columns=(0,)):
    """Aligned plain-text table, or a markdown table; ``text_columns`` are left-aligned, the rest right."""
    left = {i % len(columns) for i in text_columns}
    if markdown:
        rule = [":---" if i in left else "---:" for i in range(len(columns))]
        return "\n".join("| " + " | ".join(values) + " |" for values in [columns, rule, *cells])
    widths = [max(len(values[i]) for values in [columns, *cells]) for i in range(len(columns))]

    def line(values):
        return "  ".join(
            value.ljust(width) if i in left else value.rjust(width)
            for i, (value, width) in enumerate(zip(values, widths))
        ).rstrip()

    return "\n".join([line(columns), line(["-" * w for w in widths]), *(line(values) for values in cells)])
