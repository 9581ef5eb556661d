r"""``python -m dataset_converters --format {mmgcn,metammf,mmssl,mmrec} --src DIR --dst DIR --name NAME``.

Exit codes: 0 written; 2 the input, an option or DST is wrong — the message names the file, the row
or field (or what happened to the file) and what was expected, and nothing is written or changed in DST.
"""

import argparse
import logging
import sys
import textwrap

from dataset_converters import writer
from dataset_converters.conversion import convert
from dataset_converters.converted import ConversionError
from dataset_converters.formats import FORMATS, describe

# RecBole's log line: "Wed 01 Jan 2020 12:00:00 INFO  message"
LOG_FORMAT = "%(asctime)-15s %(levelname)s  %(message)s"
LOG_DATEFMT = "%a %d %b %Y %H:%M:%S"


def formats_text():
    r"""The ``formats:`` paragraph of ``--help``: one entry per row of :data:`FORMATS`."""
    width = max(map(len, FORMATS)) + 4
    return "formats:\n" + "\n".join(
        textwrap.fill(describe(name), 79, initial_indent=f"  {name:<{width - 2}}", subsequent_indent=" " * width)
        for name in FORMATS
    ) + "\n\n"


EPILOG = """\
formats, options and examples: README.md, section "Your own data" (in this repository).

exit codes: 0 written; 2 the input, an option or DST is wrong: one line
  error: <file>: <row or field>: <what was expected>   (bad data)
  error: <file>: <what happened>                       (DST not writable, a file, ...)
and nothing is written or changed in DST.

ids: user and item ids are 0-based and dense (every id up to the largest needs an
  interaction), so an id >= the number of interactions is refused, naming the file,
  row and id, before anything is allocated; --item-offset must be 0..the smallest item id.
re-conversion: DST/NAME is replaced as a whole, atomically, only when it holds nothing
  but the files an earlier conversion wrote (NAME.inter, NAME.train/valid/test.inter,
  NAME.item, and NAME.yaml with the converter's first line); a file of yours in it
  (e.g. NAME.notes) stops the conversion with nothing changed.
users with no training interactions (a fixed split giving a user only validation or
  test ones) are kept and reported in a warning with their count and first ids; a user
  or item with no interaction at all is an error.
pickles (.pkl, object .npy) are read with an allow-list: scipy sparse matrices, numpy
  arrays and scalars (from numpy 1.16 on, any pickle protocol), plain containers.
"""


def build_parser():
    p = argparse.ArgumentParser(
        prog="python -m dataset_converters",
        description="Convert a multimodal recommendation release to RecBole atomic files "
        "(DST/NAME/NAME[.train|.valid|.test].inter, NAME.item with v_feat/a_feat/t_feat, NAME.yaml).",
        epilog=formats_text() + EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--format", required=True, choices=FORMATS,
                   help="the release's layout (formats: below)")
    p.add_argument("--src", required=True, help="folder holding the release's files")
    p.add_argument("--dst", required=True, help="folder to write NAME/ into (e.g. dataset)")
    p.add_argument("--name", required=True, help="dataset name: RecBole's --dataset")
    p.add_argument(
        "--modality-files",
        metavar="v=FILE,a=FILE,t=FILE",
        help="modality feature files (relative to SRC), overriding the format's usual names; 'none' drops one",
    )
    p.add_argument(
        "--item-offset",
        default="auto",
        metavar="auto|N",
        help="subtract N >= 0 from item ids (mmgcn/metammf; auto: the user count when every item id is >= it)",
    )
    p.add_argument(
        "--resplit",
        metavar="TRAIN,VALID,TEST",
        help="merge a fixed split into NAME.inter and let RecBole split at random with these ratios",
    )
    p.add_argument(
        "--precision",
        type=int,
        metavar="N",
        help="significant digits of feature values (default: the shortest that reads back to the same value)",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    return p


def run_command(action, quiet):
    r"""A converter command line's ``action()`` with RecBole-style log lines (warnings only and no progress
    bars when ``quiet``): exit code 0 when it returns, 2 with one ``error:`` line and no traceback when it
    raises :class:`ConversionError`."""
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO, format=LOG_FORMAT, datefmt=LOG_DATEFMT)
    if quiet:
        writer.PROGRESS = False
    try:
        action()
    except ConversionError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def main(argv=None):
    args = build_parser().parse_args(argv)
    return run_command(
        lambda: convert(
            args.format,
            args.src,
            args.dst,
            args.name,
            modality_files=args.modality_files,
            item_offset=args.item_offset,
            resplit=args.resplit,
            precision=args.precision,
        ),
        args.quiet,
    )


if __name__ == "__main__":
    sys.exit(main())
