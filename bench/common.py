r"""What every script under ``bench/`` shares: the machine description and docs/BENCHMARKS.md."""

import datetime
import os
import subprocess
import sys
import tempfile
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)
BENCHMARKS_MD = os.path.join(REPO_ROOT, "docs", "BENCHMARKS.md")

from recbole_metammf.files import machine_text  # noqa: E402 - after the path set-up


def machine():
    r"""One line: platform, device, Python and torch (the description run_benchmark.py records)."""
    return machine_text()


def stamp():
    return datetime.datetime.now().strftime("%Y-%m-%d %H:%M")


def add_report_option(parser):
    parser.add_argument("--report", default=BENCHMARKS_MD, help="markdown file the figures are appended to "
                        "(default: docs/BENCHMARKS.md)")


def publish(lines, report=BENCHMARKS_MD):
    r"""Print a section and append it to ``report`` (docs/BENCHMARKS.md)."""
    text = "\n".join(lines)
    print(text)
    os.makedirs(os.path.dirname(os.path.abspath(report)), exist_ok=True)
    header = "" if os.path.exists(report) else "# Benchmarks\n\nAppended by the scripts under `bench/`.\n\n"
    with open(report, "a") as f:
        f.write(header + text + "\n")


PEAK_WRAPPER = (
    "import atexit, resource, runpy, sys\n"
    "out = sys.argv.pop(1)\n"
    "atexit.register(lambda: open(out, 'w').write(str(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)))\n"
    "sys.argv = sys.argv[1:]\n"
    "runpy.run_module(sys.argv[0], run_name='__main__', alter_sys=True)\n"
)


def run_timed(module, args):
    r"""Wall seconds and peak RSS (MB) of ``python -m module args`` in a child process."""
    with tempfile.NamedTemporaryFile("r", suffix=".rss") as rss:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", PEAK_WRAPPER, rss.name, module] + args, check=True, cwd=REPO_ROOT)
        seconds = time.perf_counter() - start
        peak_mb = int(open(rss.name).read()) / 1024  # ru_maxrss is in KB on Linux
    return seconds, peak_mb
