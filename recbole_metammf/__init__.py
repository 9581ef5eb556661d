r"""recbole-metammf: MetaMMF (Liu et al., ACM TOIS 2023) as a RecBole plugin.

Importing the package loads neither torch nor RecBole (the command's ``--help`` answers at once);
:mod:`recbole_metammf.compat` silences RecBole's known warnings when the modules that use RecBole load.
"""

__version__ = "0.1.0"
