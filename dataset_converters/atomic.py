r"""The names the former ``dataset_converters.atomic`` offered, for code that still imports them from here.

The code lives in :mod:`~dataset_converters.converted` (data classes, :class:`ConversionError`),
:mod:`~dataset_converters.safe_unpickle`, :mod:`~dataset_converters.checks`,
:mod:`~dataset_converters.reading`, :mod:`~dataset_converters.floats`, :mod:`~dataset_converters.writer`
and :mod:`~dataset_converters.conversion`; import from those.
"""

from dataset_converters.conversion import convert
from dataset_converters.converted import ALL, MODALITY_FIELDS, SPLITS, ConversionError, Converted, Part
from dataset_converters.floats import format_values
from dataset_converters.safe_unpickle import load_npy, load_pickle
from dataset_converters.writer import YAML_HEADER, check_dst, write_dataset

__all__ = [
    "ALL", "MODALITY_FIELDS", "SPLITS", "YAML_HEADER", "ConversionError", "Converted", "Part", "check_dst",
    "convert", "format_values", "load_npy", "load_pickle", "write_dataset",
]
