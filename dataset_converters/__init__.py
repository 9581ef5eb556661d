r"""Converters from the multimodal-recommendation releases people download to RecBole atomic files.

``python -m dataset_converters --format {mmgcn,metammf,mmssl,mmrec} --src DIR --dst DIR --name NAME``
writes ``DST/NAME/NAME.inter`` (or ``NAME.train.inter`` / ``NAME.valid.inter`` / ``NAME.test.inter``
for a fixed split), ``DST/NAME/NAME.item`` (one ``float_seq`` field per modality: ``v_feat``,
``a_feat``, ``t_feat``) and ``DST/NAME/NAME.yaml`` (the dataset config).

``python -m dataset_converters.synthetic`` generates data of the paper's shapes in the MMGCN format.

The formats and their readers: :data:`dataset_converters.formats.FORMATS`.
"""

from dataset_converters.conversion import convert
from dataset_converters.converted import ConversionError
from dataset_converters.formats import FORMATS

__all__ = ["ConversionError", "FORMATS", "convert"]
