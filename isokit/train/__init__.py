"""Training on real data (issue in progress): offline data sets so far.

:func:`load_fashion_mnist` reads Fashion-MNIST from the Debian package ``dataset-fashion-mnist``
through a checked IDX reader (:func:`read_idx`).
"""

from isokit.train.fashion_mnist import DatasetUnavailableError, ImageSet, load_fashion_mnist
from isokit.train.idx import IDXFormatError, read_idx

__all__ = [
    "DatasetUnavailableError",
    "IDXFormatError",
    "ImageSet",
    "load_fashion_mnist",
    "read_idx",
]
