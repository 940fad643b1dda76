"""Text in the store as every Zarr v3 reader understands it: a `uint8 [N, width]` array, one row per item holding
the UTF-8 bytes of its string, NUL-padded to `width` (the encoding and width are in the array's attributes).

zarr-python's variable-length `string` data type (and its fixed-width `null_terminated_bytes` and
`fixed_length_utf32`) are extensions outside the Zarr v3 core spec: tensorstore's `zarr3` driver, among others,
refuses to open them. `uint8` is core. Stores of schema v1 hold text as zarr-python strings; `decode` reads both.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ganinv.errors import UserError

ENCODING = "utf-8"
_ELLIPSIS = "…".encode(ENCODING)


class TextTooLongError(UserError, ValueError):
    """A string that names an item (its id or path) does not fit the store's fixed width."""


def attributes(width: int) -> dict[str, Any]:
    """What a text array says about itself."""
    return {"text_encoding": ENCODING, "text_width": int(width),
            "text_layout": f"one row per item: the {ENCODING} bytes of its string, NUL-padded to text_width"}


def dimension(name: str) -> str:
    """The byte axis of text array `name` (its own, so arrays of different widths never share a dimension)."""
    return f"{name.rsplit('/', 1)[-1]}_utf8"


def is_fixed(dtype: Any, ndim: int) -> bool:
    """Whether an array of this dtype and rank holds fixed-width text (schema v2), not zarr-python strings (v1)."""
    return np.dtype(dtype) == np.uint8 and ndim == 2


def encode(values: Sequence[str], width: int, *, what: str = "text", truncate: bool = False) -> np.ndarray:
    """`[len(values), width]` uint8. A value longer than `width` bytes is cut at a character boundary and ends in
    '…' with `truncate` (messages), else refused with TextTooLongError naming it (ids, paths). NUL characters
    cannot be stored (they are the padding): refused, or replaced by U+FFFD with `truncate`."""
    out = np.zeros((len(values), width), np.uint8)
    for row, value in enumerate(values):
        text = str(value)
        if "\0" in text:
            if not truncate:
                raise TextTooLongError(f"{what} {text!r} contains a NUL character, which the store cannot keep")
            text = text.replace("\0", "\ufffd")
        raw = text.encode(ENCODING)
        if len(raw) > width:
            if not truncate:
                raise TextTooLongError(f"{what} {text[:80]!r}... is {len(raw)} bytes of {ENCODING}; the store keeps "
                                       f"at most {width}: shorten it (e.g. a shorter folder name)")
            raw = _cut(raw, width - len(_ELLIPSIS)) + _ELLIPSIS
        out[row, :len(raw)] = np.frombuffer(raw, np.uint8)
    return out


def decode(values: Any) -> np.ndarray:
    """Python strings (object array) from a fixed-width `[n, width]` uint8 read, or from zarr-python strings."""
    values = np.asarray(values)
    if not is_fixed(values.dtype, values.ndim):
        return np.array([str(v) for v in values], dtype=object)
    if values.shape[0] == 0:
        return np.zeros(0, dtype=object)
    raw = np.ascontiguousarray(values).view(f"S{values.shape[1]}").ravel()  # numpy drops the trailing NULs
    return np.char.decode(raw, ENCODING, errors="replace").astype(object)


def column(dtype: Any, ndim: int, width: int, values: Sequence[str], *, what: str, truncate: bool = False
           ) -> np.ndarray:
    """`values` in the form an existing text array holds them (fixed-width rows, or zarr-python strings)."""
    if is_fixed(dtype, ndim):
        return encode(values, width, what=what, truncate=truncate)
    return np.asarray(list(values), dtype=str)


def width_of(attrs: Mapping[str, Any], shape: Sequence[int]) -> int:
    return int(attrs.get("text_width", shape[-1] if len(shape) == 2 else 0))


def _cut(raw: bytes, limit: int) -> bytes:
    """The longest prefix of UTF-8 `raw` of at most `limit` bytes that ends on a character boundary."""
    return raw[:limit].decode(ENCODING, errors="ignore").encode(ENCODING)
