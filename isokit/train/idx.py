"""The IDX file format (MNIST, Fashion-MNIST): :func:`read_idx`, checked byte by byte.

An IDX file is a 4-byte magic number ``0 0 T n`` (``T`` the element type, ``n`` the number of
dimensions), ``n`` big-endian 32-bit sizes, then the elements, big-endian, row-major. Files may be
gzip-compressed (as distributed). Anything else (a wrong magic number, an unknown type, a size
that does not match the bytes that follow, a truncated or corrupt gzip stream) raises
:class:`IDXFormatError` naming the file and what is wrong; no partial array is ever returned.

Example:
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "x-idx1-ubyte"
    >>> _ = path.write_bytes(bytes([0, 0, 0x08, 1, 0, 0, 0, 3, 7, 8, 9]))
    >>> read_idx(path).tolist()
    [7, 8, 9]
"""

from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path

import numpy as np

__all__ = ["IDXFormatError", "read_idx"]

#: Element type codes of the format and their big-endian numpy dtypes.
IDX_TYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"


class IDXFormatError(ValueError):
    """A file that is not a complete, well-formed IDX file."""


def _raw_bytes(path: Path) -> bytes:
    data = path.read_bytes()
    if not data.startswith(_GZIP_MAGIC):
        return data
    try:
        return gzip.decompress(data)
    except (EOFError, OSError, zlib.error) as err:  # truncated or corrupt stream
        raise IDXFormatError(f"{path}: the gzip stream is truncated or corrupt ({err})") from err


def read_idx(path: str | Path) -> np.ndarray:
    """The array stored in the IDX file ``path`` (gzip-compressed or not), native byte order.

    Raises:
        FileNotFoundError: no file at ``path``.
        IDXFormatError: the file is not a complete, well-formed IDX file (module docstring).
    """
    path = Path(path)
    data = _raw_bytes(path)
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise IDXFormatError(
            f"{path}: not an IDX file (magic number {data[:4].hex() or 'missing'}, expected "
            "00 00 <type> <ndim>)"
        )
    code, ndim = data[2], data[3]
    if code not in IDX_TYPES:
        known = ", ".join(f"0x{c:02x}" for c in IDX_TYPES)
        raise IDXFormatError(f"{path}: unknown IDX element type 0x{code:02x} (known: {known})")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise IDXFormatError(
            f"{path}: truncated header ({len(data)} bytes, {header} needed for {ndim} sizes)"
        )
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = IDX_TYPES[code]
    want = math.prod(shape) * dtype.itemsize
    got = len(data) - header
    if got != want:
        what = "truncated" if got < want else "longer than its header says"
        raise IDXFormatError(
            f"{path}: {what}: shape {shape} of {dtype.name} needs {want} bytes of data, the file "
            f"holds {got}"
        )
    return (
        np.frombuffer(data, dtype=dtype, offset=header)
        .reshape(shape)
        .astype(dtype.newbyteorder("="))
    )
