r"""``python -m recbole_metammf``: the ``recbole-metammf`` command."""

import sys

from recbole_metammf.cli import main

sys.argv[0] = "python -m recbole_metammf"  # argparse's prog, shown in --help and usage errors
main()
