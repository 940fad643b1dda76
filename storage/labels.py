"""The dataset's labels: an optional CSV (UTF-8, or UTF-16 with a byte-order mark) whose first column names the image
(its image_id, file name or file stem) and whose other columns are finite numbers (empty cells are missing); one row
per image and one column per name. The procedural-faces `attributes.csv` is such a file.

`read_labels` is the one parser of that file: the dataset scan (`storage.scan`) labels its items with it, and the
CLI's preflight reads the file with it in its first round, so a malformed file is refused before anything heavy
loads. This module imports neither torch nor zarr (tests/test_cli_fast_refusals.py checks it).
"""

from __future__ import annotations

import codecs
import csv
import io
import math
import posixpath
from collections.abc import Mapping
from typing import Any

import fsspec

from ganinv.errors import UserError


class LabelsError(UserError, ValueError):
    """The labels CSV cannot be read as numeric labels; the message names the file, line and column."""


def read_labels(csv_path: str, *, storage_options: Mapping[str, Any] | None = None) -> dict[str, dict[str, float]]:
    """CSV -> {first-column value: {column: number}}; empty cells are left out. Anything else is a LabelsError that
    names the file and the line, column or ids: a file that cannot be read or is not UTF-8 (UTF-16 with a byte-order
    mark is read), a missing header, duplicate column names or ids, a cell that is not a finite number."""
    header, rows = _label_rows(csv_path, storage_options)
    names = header[1:]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates or "" in names:
        raise LabelsError(f"labels file {csv_path}: " + (f"duplicate column names {duplicates}" if duplicates else
                                                         "a column without a name") + " in the header row")
    table: dict[str, dict[str, float]] = {}
    lines: dict[str, list[int]] = {}
    for line, row in rows:
        image = row[0].strip()
        if not image:
            raise LabelsError(f"labels file {csv_path}, line {line}: the first cell (the image) is empty")
        if len(row) > len(header):
            raise LabelsError(f"labels file {csv_path}, line {line}: {len(row)} cells, the header has {len(header)}")
        lines.setdefault(image, []).append(line)
        table[image] = {name: _label_value(csv_path, line, name, cell)
                        for name, cell in zip(names, row[1:]) if cell.strip()}
    repeated = {image: found for image, found in lines.items() if len(found) > 1}
    if repeated:
        shown = "; ".join(f"{image!r} on lines {found}" for image, found in list(repeated.items())[:5])
        raise LabelsError(f"labels file {csv_path}: {len(repeated)} images have more than one row ({shown}): keep "
                          "one row per image")
    return table


def _label_rows(csv_path: str, storage_options: Mapping[str, Any] | None) -> tuple[list[str], list[tuple[int, list]]]:
    """(header, [(line number, cells)]) of the non-empty rows."""
    try:
        with fsspec.open(csv_path, "rb", **dict(storage_options or {})) as f:
            raw = f.read()
    except OSError as err:
        raise LabelsError(f"labels file {csv_path}: cannot read it ({type(err).__name__}: {err})") from None
    content = _labels_text(raw, csv_path)
    try:
        rows = [(line, row) for line, row in enumerate(csv.reader(io.StringIO(content, newline="")), start=1) if row]
    except csv.Error as err:
        raise LabelsError(f"labels file {csv_path}: not a CSV file ({err})") from None
    if len(rows) < 2 or len(rows[0][1]) < 2:
        raise LabelsError(f"labels file {csv_path}: expected a header row (image id, then label names) and data "
                          "rows")
    return [h.strip() for h in rows[0][1]], rows[1:]


def _labels_text(raw: bytes, csv_path: str) -> str:
    """The file's text: UTF-8 (with or without a byte-order mark) or UTF-16 with one; else a LabelsError."""
    for bom, encoding in ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"),
                          (codecs.BOM_UTF16_BE, "utf-16")):
        if raw.startswith(bom):
            break
    else:
        encoding = "utf-8"
    try:
        content = raw.decode(encoding)
    except UnicodeDecodeError as err:
        raise LabelsError(f"labels file {csv_path}: not {encoding.upper()} text (byte {err.start}: {err.reason}); "
                          "save it as UTF-8 CSV") from None
    if "\0" in content:
        raise LabelsError(f"labels file {csv_path}: contains NUL characters (UTF-16 without a byte-order mark?); "
                          "save it as UTF-8 CSV")
    return content


def _label_value(csv_path: str, line: int, name: str, cell: str) -> float:
    try:
        value = float(cell)
    except ValueError:
        raise LabelsError(f"labels file {csv_path}, line {line}, column {name!r}: {cell!r} is not a number (labels "
                          "must be numeric; encode categories as 0/1 columns)") from None
    if not math.isfinite(value):
        raise LabelsError(f"labels file {csv_path}, line {line}, column {name!r}: {cell!r} is not a finite number; "
                          "leave the cell empty where a label is missing")
    return value


def labels_for(table: Mapping[str, Mapping[str, float]], image_id: str) -> tuple[str | None, dict[str, float]]:
    """(the row's key, its labels) of the row of `table` (`read_labels`) named by the image_id, else by its file
    name, else by its stem; (None, {}) if none is."""
    name = posixpath.basename(image_id)
    for key in (image_id, name, posixpath.splitext(name)[0]):
        if key in table:
            return key, {k: v for k, v in table[key].items() if not math.isnan(v)}
    return None, {}
