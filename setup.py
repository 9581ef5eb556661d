r"""recbole-metammf: MetaMMF (Liu et al., ACM TOIS 2023) as a RecBole plugin.

Every dependency pin of the project lives here (README, "Why these pins", says why each one exists).
"""

import os
import shutil

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

# properties/ and the bundled dataset/tiktok stay at the top of the repository (where RecBole users look
# for them) and are copied into the package as recbole_metammf/_data/ when a wheel or a plain install is
# built; recbole_metammf.utils finds them there when the repository is not beside the package.
PACKAGE_DATA = {"properties": "properties", os.path.join("dataset", "tiktok"): os.path.join("dataset", "tiktok")}

INSTALL_REQUIRES = [
    "torch==2.13.0",  # CPU wheel on these machines; GPU users install the CUDA build of 2.13.0 first
    "recbole==1.2.1",  # data pipeline, trainer, BPR sampler, full-ranking evaluator, model zoo
    "torch-geometric==2.8.1",  # SAGEConv (MetaMMF_GCN and the *Fusion_GCN baselines), segment softmax (GRCN)
    "ray[tune]==2.6.3",  # recbole 1.2.1 requires ray<=2.6.3; Ray Tune runs the sweeps
    "numpy==1.26.4",  # ray 2.6.3 uses numpy.bool8, gone in numpy 2
    "scipy==1.11.4",  # scipy>=1.12 removed dok_matrix._update, which RecBole's LightGCN/NGCF use
    "pandas==2.2.3",  # pandas>=2.3 breaks RecBole's fillna(inplace=True)
    "pyarrow==14.0.2",  # newer pyarrow needs numpy 2 (Ray Tune trials import it)
    "scikit-learn==1.9.1",  # t-SNE and silhouette of the analysis plots (recbole brings it unpinned)
    "tqdm==4.70.1",  # progress bars of the converters and the benchmark (recbole brings it unpinned)
    "matplotlib==3.11.2",  # run_benchmark.py plots (Fig. 4-6); tested with numpy 1.26.4; needs Python>=3.11
    "setuptools>=77.0.3,<81",  # ray 2.6.3 imports pkg_resources; torch 2.13 needs >=77.0.3
]

TEST_REQUIRES = ["pytest==9.0.3"]

class BuildWithData(build_py):
    def run(self):
        if not getattr(self, "editable_mode", False):  # a module removed from the source must not linger in build/
            for package in ("recbole_metammf", "dataset_converters"):
                shutil.rmtree(os.path.join(self.build_lib, package), ignore_errors=True)
        super().run()
        if getattr(self, "editable_mode", False):  # an editable install reads the repository's folders
            return
        here = os.path.dirname(os.path.abspath(__file__))
        for source, target in PACKAGE_DATA.items():
            destination = os.path.join(self.build_lib, "recbole_metammf", "_data", target)
            shutil.rmtree(destination, ignore_errors=True)
            shutil.copytree(os.path.join(here, source), destination, ignore=shutil.ignore_patterns("*.tmp-*"))


setup(
    name="recbole-metammf",
    version="0.1.0",
    description="MetaMMF: dynamic multimodal fusion via meta-learning, as a RecBole plugin",
    packages=find_packages(include=["recbole_metammf", "recbole_metammf.*", "dataset_converters", "dataset_converters.*"]),
    python_requires=">=3.11",
    install_requires=INSTALL_REQUIRES,
    extras_require={"test": TEST_REQUIRES},
    entry_points={"console_scripts": ["recbole-metammf = recbole_metammf.cli:main"]},
    cmdclass={"build_py": BuildWithData},
)
