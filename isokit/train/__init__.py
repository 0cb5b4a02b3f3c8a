"""Training on real data: :func:`train` an initialized model and get a :class:`TrainResult`.

Data sets (:func:`load_data`): Fashion-MNIST from the Debian package ``dataset-fashion-mnist``
(read by a checked IDX reader, :func:`read_idx`), scikit-learn's digits, a teacher–student
regression and the linear toy with target ``−I``. :class:`TrainOptions` holds every option of a
run; the result carries the loss and accuracy curves, the gradient norms per tap, the divergence
step and the probe's Profiles at checkpoints (``docs/training.md §1``).
"""

from isokit.train.data import DATASETS, DataError, Split, TrainData, load_data
from isokit.train.fashion_mnist import DatasetUnavailableError, ImageSet, load_fashion_mnist
from isokit.train.idx import IDXFormatError, read_idx
from isokit.train.loop import train
from isokit.train.options import OPTIMIZERS, SCHEDULES, TrainOptionError, TrainOptions
from isokit.train.result import TrainResult, TrainResultFormatError

__all__ = [
    "DATASETS",
    "OPTIMIZERS",
    "SCHEDULES",
    "DataError",
    "DatasetUnavailableError",
    "IDXFormatError",
    "ImageSet",
    "Split",
    "TrainData",
    "TrainOptionError",
    "TrainOptions",
    "TrainResult",
    "TrainResultFormatError",
    "load_data",
    "load_fashion_mnist",
    "read_idx",
    "train",
]
