r"""recbole-metammf: MetaMMF (Liu et al., ACM TOIS 2023) as a RecBole plugin."""

from recbole_metammf.compat import silence_known_warnings

__version__ = "0.1.0"

silence_known_warnings()
