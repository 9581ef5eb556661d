r"""What a format's reader hands over: interactions per split with where each came from, features per modality.

A reader (:data:`dataset_converters.formats.FORMATS`) only reads its files into a :class:`Converted`;
everything after that (the checks, duplicate removal, the text written) is done once for all formats
(:mod:`dataset_converters.checks`, :mod:`dataset_converters.writer`). Errors in the input raise
:class:`ConversionError` with a message naming the file, the row or field and what was expected.
"""

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np

#: RecBole field of each modality, in the order they are written (visual, acoustic, textual).
MODALITY_FIELDS = ("v_feat", "a_feat", "t_feat")
#: The short names ``--modality-files`` takes.
MODALITY_KEYS = {"v": "v_feat", "a": "a_feat", "t": "t_feat"}
#: RecBole's ``benchmark_filename`` suffixes of a fixed split, in order.
SPLITS = ("train", "valid", "test")
#: Key of the interactions of a source without a split.
ALL = "all"


class ConversionError(Exception):
    r"""The input cannot be converted; the message names the file, the row or field and what was expected."""


@dataclass
class Part:
    r"""The interactions of one split, with where each came from (for error messages).

    ``rows[k]`` is the row / line / entry of ``source`` that interaction ``k`` came from, called
    ``row_label`` in messages ("line", "row", "entry").
    """

    users: np.ndarray
    items: np.ndarray
    source: str
    rows: Optional[np.ndarray] = None
    row_label: str = "row"

    def where(self, k):
        row = int(self.rows[k]) if self.rows is not None else int(k)
        return f"{self.source}: {self.row_label} {row}"


@dataclass
class Converted:
    r"""What a format module read: counts, interactions per split (or :data:`ALL`) and features per field."""

    n_users: int
    n_items: int
    parts: Dict[str, Part]
    features: Dict[str, Tuple[np.ndarray, str]]  # field -> (matrix, source file)
    sources: List[str] = field(default_factory=list)  # file names read, for the yaml header
    src_name: str = ""  # the source folder's name, for the yaml header
    #: ``n_items`` is only what the interactions show (largest id + 1): the feature files, one row
    #: per item, say how many items there are. False where the source fixes it (matrix shape).
    items_from_features: bool = False

