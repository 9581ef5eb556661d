r"""Reading user-supplied pickles and ``.npy`` files without running code: an allow-list unpickler.

The ``.pkl`` files and object ``.npy`` arrays of the releases are user input; they are read only
through :class:`RestrictedUnpickler` (scipy sparse matrices, numpy arrays and scalars from numpy 1.16
on, plain containers), numeric ``.npy`` files with ``np.load(allow_pickle=False)``.
"""

import codecs
import importlib
import os
import pickle

import numpy as np
import scipy.sparse

from dataset_converters.converted import ConversionError

_SPARSE_CLASSES = {"coo_matrix", "csr_matrix", "csc_matrix", "coo_array", "csr_array", "csc_array"}

#: numpy internals the pickles of arrays and scalars name, by module (without its ``numpy.core.`` /
#: ``numpy._core.`` prefix): numpy 1.16-1.26 wrote ``multiarray`` or ``_multiarray_umath``, numpy 2
#: writes ``numpy._core``. Each is resolved in the numpy installed here; no other module is imported.
_NUMPY_INTERNALS = {
    "multiarray": ("_reconstruct", "scalar"),
    "_multiarray_umath": ("_reconstruct", "scalar"),
    "numeric": ("_frombuffer",),
}


def _numpy_internal(module, name):
    r"""This numpy's object for ``numpy.core.MODULE.NAME`` / ``numpy._core.MODULE.NAME``, or None if not allowed."""
    prefix, _, sub = module.rpartition(".")
    if prefix not in ("numpy.core", "numpy._core") or name not in _NUMPY_INTERNALS.get(sub, ()):
        return None
    # numpy 2 has numpy._core (numpy.core is a deprecated alias); numpy 1.26 has only part of it
    for package in ("numpy._core", "numpy.core"):
        try:
            obj = getattr(importlib.import_module(f"{package}.{sub}"), name, None)
        except ImportError:
            continue
        if obj is not None:
            return obj
    return None


class RestrictedUnpickler(pickle.Unpickler):
    r"""An unpickler that builds only scipy sparse matrices, numpy arrays/scalars and plain containers.

    The ``.pkl`` files and pickled ``.npy`` object arrays of the releases are user input: a plain
    :func:`pickle.load` would run whatever callable they name. This one refuses every global except
    the few those files need, with an error naming the file.
    """

    def __init__(self, file, path):
        # latin1: object arrays written by Python 2 (older MMGCN copies) hold byte strings
        super().__init__(file, encoding="latin1")
        self.path = path

    def _refuse(self, what):
        raise ConversionError(
            f"{self.path}: refusing to unpickle {what}: only scipy sparse matrices, numpy "
            "arrays and plain lists/dicts/sets are allowed in these files"
        )

    def _reconstructor(self, cls, base, state):
        # copyreg._reconstructor: how protocol 0/1 pickles build a plain object (a sparse matrix).
        # With base ``object`` it only allocates (no constructor runs); anything else is refused.
        if cls not in {getattr(scipy.sparse, n, None) for n in _SPARSE_CLASSES} or base is not object or state is not None:
            self._refuse(f"copyreg._reconstructor({getattr(cls, '__name__', cls)!r}, {getattr(base, '__name__', base)!r})")
        return object.__new__(cls)

    def find_class(self, module, name):
        # Python 2 pickles say copy_reg / __builtin__: the stock find_class maps those names, an override sees them raw
        if module.startswith("scipy.sparse") and name in _SPARSE_CLASSES:
            return getattr(scipy.sparse, name)
        if module == "numpy" and name == "dtype":
            return np.dtype
        if module == "numpy" and name == "ndarray":
            return np.ndarray
        obj = _numpy_internal(module, name)
        if obj is not None:
            return obj
        if module in ("copyreg", "copy_reg") and name == "_reconstructor":
            return self._reconstructor
        if module in ("builtins", "__builtin__") and name in ("set", "frozenset", "object"):
            return {"set": set, "frozenset": frozenset, "object": object}[name]  # object: the base above
        if module == "_codecs" and name == "encode":  # bytes in protocol-2 pickles
            return codecs.encode
        self._refuse(f"'{module}.{name}'")


def check_file(path):
    r"""Raise unless ``path`` is a file with something in it."""
    if not os.path.isfile(path):
        raise ConversionError(f"{path}: file not found")
    if os.path.getsize(path) == 0:
        raise ConversionError(f"{path}: empty file")


def load_pickle(path):
    r"""Unpickle ``path`` with :class:`RestrictedUnpickler`."""
    check_file(path)
    with open(path, "rb") as f:
        try:
            return RestrictedUnpickler(f, path).load()
        except ConversionError:
            raise
        except Exception as e:  # truncated, corrupt or not a pickle at all
            raise ConversionError(f"{path}: not a readable pickle ({type(e).__name__}: {e})") from None


def load_npy(path, allow_object=False):
    r"""Load a ``.npy`` file without running code.

    Numeric arrays are read with ``np.load(allow_pickle=False)``. Arrays of Python objects (MMGCN's
    ``val.npy`` / ``test.npy`` / ``user_item_dict.npy``, the MetaMMF ``user_item_dict_sample.npy``) are
    pickles behind an .npy header: with ``allow_object`` they are unpickled by
    :class:`RestrictedUnpickler`, otherwise refused.
    """
    check_file(path)
    with open(path, "rb") as f:
        try:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
            else:
                shape, fortran, dtype = np.lib.format._read_array_header(f, version)
        except Exception as e:
            raise ConversionError(f"{path}: not a .npy file ({e})") from None
        if dtype.hasobject:
            if not allow_object:
                raise ConversionError(
                    f"{path}: holds Python objects (dtype {dtype}); expected a numeric array"
                )
            try:
                arr = RestrictedUnpickler(f, path).load()
            except ConversionError:
                raise
            except Exception as e:
                raise ConversionError(f"{path}: object array not readable ({type(e).__name__}: {e})") from None
            if not isinstance(arr, np.ndarray):
                raise ConversionError(f"{path}: expected a numpy array, found {type(arr).__name__}")
            return arr
    try:
        return np.load(path, allow_pickle=False)
    except Exception as e:
        raise ConversionError(f"{path}: not readable as a numeric array ({e})") from None
