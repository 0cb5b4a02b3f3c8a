"""isokit: initialization schemes, Jacobian-spectrum probes and reports for dynamical isometry."""

from isokit import init, models, probe, theory
from isokit._atomic import write_atomic
from isokit.structure import ResidualBranch

__version__ = "0.1.0"

__all__ = [
    "ResidualBranch",
    "__version__",
    "init",
    "models",
    "probe",
    "theory",
    "write_atomic",
]
