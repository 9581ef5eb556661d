r"""The formats ``--format`` takes: each name and the reader of that release's files.

A reader is ``read(src, modality_files=None, item_offset="auto") -> Converted``: it reads the files of
``src`` into a :class:`~dataset_converters.converted.Converted` and leaves the checks and the writing
to :func:`~dataset_converters.conversion.convert`. The first line of its docstring is what
``python -m dataset_converters --help`` says of the format. A new format is a module with a
``read`` and a row here.
"""

from dataset_converters import metammf, mmgcn, mmrec, mmssl

#: Format name -> reader, in the order ``--help`` lists them.
FORMATS = {
    "mmgcn": mmgcn.read,
    "metammf": metammf.read,
    "mmssl": mmssl.read,
    "mmrec": mmrec.read,
}


def describe(name):
    r"""What ``--help`` says of format ``name``: the first line of its reader's docstring."""
    return FORMATS[name].__doc__.strip().splitlines()[0]
