"""Parsing and row validation: every row read is either kept or recorded as a reject.

Two parsing paths produce the same result:

* the **fast path** hands the whole file to ``pyarrow.csv`` with typed columns. It is taken
  when every row parses; row ``k`` then came from physical line ``k + 1 + header`` (files
  with blank lines or quoted newlines take the exact path instead, so that holds).
* the **exact path** splits the bytes into physical lines with NumPy, splits fields with
  Arrow string kernels and checks each field with vectorised regexes, so a malformed row
  costs a reject, not a Python loop over the file. CSV files that may quote newlines
  (movies, tags, links) are read by Python's ``csv`` module, which tracks each record's
  first physical line.

Checks that need the parsed values (rating range and grid, duplicates, unknown ids) are
vectorised NumPy and run on either path's output. Line numbers are 1-based physical lines
of the file with the header as line 1; ``raw`` is the line's text without its line ending.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from . import schema as S
from .releases import CSV_COLUMNS, DatasetFormatError, FileSpec

_CHUNK_LINES = 1 << 21
_DELIMS = {",": "comma", "\t": "tab", ";": "semicolon", "|": "pipe", "::": "'::'"}
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_INT_RE = r"^\s*-?\d{1,18}\s*$"
_LONG_INT_RE = r"^\s*-?\d{19,}\s*$"
MAX_TIMESTAMP = 4_102_444_800  # 2100-01-01 in seconds
MS_TIMESTAMPS = (100_000_000_000, 100_000_000_000_000)  # 1973 .. 5138 in milliseconds, i.e. beyond 5138 in seconds
_FLOAT_RE = r"^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d{1,3})?\s*$"


class TooManyRejectsError(ValueError):
    """More rows were rejected than ``max_reject_fraction`` allows; rejects.parquet says which.

    ``summary`` is the counts alone, ``rejects_path`` where the rejects table is: a caller that
    moves it (the ingest task keeps it out of its scratch folder) names the new place instead.
    """

    def __init__(self, summary: str, rejects_path: Path | str | None = None) -> None:
        self.summary, self.rejects_path = summary, rejects_path
        super().__init__(f"{summary}\nrejected rows in {rejects_path}" if rejects_path else summary)


# ----------------------------------------------------------------------------- encoding


def check_encoding(data: bytes, spec: FileSpec, label: str) -> str:
    """The encoding ``data`` is read with (one of ``spec.encodings``), or DatasetFormatError."""
    if data.isascii():
        return "utf-8"
    bad_at = _utf8_error_offset(data)
    if bad_at is None:
        return "utf-8"
    if "latin-1" in spec.encodings:
        text = data.decode("latin-1")
        # Latin-1 decodes any byte; C0/C1 control characters mean it is some other encoding.
        m = _CONTROL.search(text)
        if m is None:
            return "latin-1"
        ctrl = m.start()
        line = data.count(b"\n", 0, ctrl) + 1
        raise DatasetFormatError(
            f"{label}: neither UTF-8 nor Latin-1 text (byte 0x{data[ctrl]:02x} on line {line}); expected a {spec.name} in UTF-8 or Latin-1"
        )
    line = data.count(b"\n", 0, bad_at) + 1
    raise DatasetFormatError(f"{label}: not valid UTF-8 (byte 0x{data[bad_at]:02x} on line {line}); expected UTF-8 text")


def _utf8_error_offset(data: bytes) -> int | None:
    """Byte offset of the first invalid UTF-8 sequence, decoding in chunks (no full-size copy)."""
    dec = codecs.getincrementaldecoder("utf-8")()
    view = memoryview(data)
    step = 1 << 24
    for pos in range(0, len(data), step):
        pending = len(dec.getstate()[0])  # bytes of a split character carried from the last chunk
        try:
            dec.decode(view[pos : pos + step], final=pos + step >= len(data))
        except UnicodeDecodeError as exc:
            return pos - pending + exc.start
    return None


def to_utf8(data: bytes, encoding: str) -> bytes:
    return data if encoding == "utf-8" else data.decode(encoding).encode("utf-8")


# ----------------------------------------------------------------------------- lines


class LineIndex:
    """Physical line boundaries of a byte buffer (computed on first use)."""

    def __init__(self, data: bytes, encoding: str = "utf-8"):
        self.data = data
        self.encoding = encoding
        self._starts: np.ndarray | None = None

    @property
    def starts(self) -> np.ndarray:
        if self._starts is None:
            arr = np.frombuffer(self.data, np.uint8)
            nl = np.flatnonzero(arr == 10)
            self._starts = np.concatenate([[0], nl + 1]).astype(np.int64)
        return self._starts

    def raw(self, line_numbers: np.ndarray) -> list[str]:
        starts = self.starts
        out = []
        n = len(self.data)
        for ln in np.asarray(line_numbers, np.int64):
            s = int(starts[ln - 1])
            e = int(starts[ln]) if ln < len(starts) else n
            out.append(self.data[s:e].rstrip(b"\r\n").decode(self.encoding, errors="replace"))
        return out


class Parsed:
    """Rows of one file that survived parsing, aligned with their physical line numbers.

    ``lines`` may be given as ``first_line`` (row k came from line ``first_line + k``) so
    the fast path never materialises a 25M-entry line array unless a row is rejected.
    """

    def __init__(
        self,
        file: str,
        columns: dict[str, pa.ChunkedArray | pa.Array | np.ndarray],
        lines: np.ndarray | None,
        raw: Callable[[np.ndarray], list[str]],
        n_read: int,
        *,
        first_line: int | None = None,
        n_rows: int | None = None,
    ):
        self.file = file
        self.columns = columns
        self._lines = lines
        self._first_line = first_line
        self._n = len(lines) if lines is not None else int(n_rows or 0)
        self.raw = raw
        self.n_read = n_read

    @property
    def lines(self) -> np.ndarray:
        if self._lines is None:
            self._lines = np.arange(self._first_line, self._first_line + self._n, dtype=np.int64)
        return self._lines

    def __len__(self) -> int:
        return self._n

    def with_columns(self, columns: dict) -> Parsed:
        return Parsed(self.file, columns, self._lines, self.raw, self.n_read, first_line=self._first_line, n_rows=self._n)

    def filter(self, keep: np.ndarray) -> Parsed:
        if keep.all():
            return self
        cols = {}
        mask = None
        for k, v in self.columns.items():
            if isinstance(v, np.ndarray):
                cols[k] = v[keep]
            else:
                mask = mask if mask is not None else pa.array(keep)
                cols[k] = v.filter(mask)
        return Parsed(self.file, cols, self.lines[keep], self.raw, self.n_read)


@dataclass
class Rejects:
    """Rejected rows of all files; ``table()`` lists them by file, then line."""

    files: list[np.ndarray] = field(default_factory=list)
    lines: list[np.ndarray] = field(default_factory=list)
    reasons: list[np.ndarray] = field(default_factory=list)
    raws: list[list[str]] = field(default_factory=list)
    per_file: Counter = field(default_factory=Counter)

    def add(self, file: str, lines: np.ndarray, reason: str, raw: list[str]) -> None:
        lines = np.asarray(lines, np.int64)
        if not len(lines):
            return
        self.files.append(np.full(len(lines), file, dtype=object))
        self.lines.append(lines)
        self.reasons.append(np.full(len(lines), reason, dtype=object))
        self.raws.append(list(raw))
        self.per_file[file] += len(lines)

    def add_rows(self, parsed: Parsed, mask: np.ndarray, reason: str) -> None:
        if mask.any():
            lines = parsed.lines[mask]
            self.add(parsed.file, lines, reason, parsed.raw(lines))

    def __len__(self) -> int:
        return sum(len(x) for x in self.lines)

    def counts(self) -> dict[str, int]:
        c: Counter = Counter()
        for r in self.reasons:
            c.update(Counter(r.tolist()))
        return dict(sorted(c.items()))

    def table(self) -> pa.Table:
        if not self.lines:
            return S.REJECTS.empty_table()
        files = np.concatenate(self.files)
        lines = np.concatenate(self.lines)
        reasons = np.concatenate(self.reasons)
        raws = np.array([x for r in self.raws for x in r], dtype=object)
        _, file_code = np.unique(files.astype(str), return_inverse=True)
        order = np.lexsort((lines, file_code))  # by file, then line: the order a person reads them
        return S.conform(
            {
                "source_file": pa.array(files[order].tolist(), pa.string()),
                "line_number": pa.array(lines[order]),
                "reason": pa.array(reasons[order].tolist(), pa.string()),
                "raw": pa.array(raws[order].tolist(), pa.string()),
            },
            S.REJECTS,
        )


# ----------------------------------------------------------------------------- format checks


def check_not_empty(data: bytes, spec: FileSpec, label: str) -> None:
    if not data[: 1 << 16].strip() and not data.strip():
        raise DatasetFormatError(f"{label}: file is empty; expected {describe(spec)}")


def describe(spec: FileSpec) -> str:
    if spec.kind == "csv":
        return f"a comma-separated header {','.join(spec.fields)} and data rows"
    sep = {"\t": "tab", "|": "'|'", "::": "'::'"}.get(spec.sep, repr(spec.sep))
    names = ", ".join(spec.fields[:5]) + (", ..." if len(spec.fields) > 5 else "")
    return f"{sep}-separated lines of {len(spec.fields)} fields ({names})"


def _first_lines(data: bytes, n: int) -> list[str]:
    out = []
    for line in data[: 1 << 16].splitlines():
        text = line.decode("utf-8", errors="replace").strip("\r\n\ufeff")
        if text.strip():
            out.append(text)
        if len(out) == n:
            break
    return out


def has_data_rows(data: bytes) -> bool:
    """Whether a CSV has a non-blank line after its (first non-blank) header line."""
    body = data.lstrip()
    end = body.find(b"\n")
    if end < 0:
        return False
    return bool(body[end : end + (1 << 16)].strip()) or bool(body[end:].strip())


def _guess_delim(line: str, expected: str) -> str | None:
    for d in ("::", "\t", ";", "|", ","):
        if d != expected and d in line:
            return d
    return None


def check_line_format(data: bytes, spec: FileSpec, label: str) -> None:
    """A ``lines`` file whose first line lacks its separator fails: wrong delimiter."""
    first = _first_lines(data, 1)[0]
    if spec.sep not in first:
        guess = _guess_delim(first, spec.sep)
        found = f"; line 1 looks {_DELIMS.get(guess, repr(guess))}-separated" if guess else ""
        raise DatasetFormatError(f"{label}: wrong delimiter: expected {describe(spec)}{found}: {first[:80]!r}")


def csv_header(data: bytes, spec: FileSpec, label: str) -> list[str]:
    """The header of a CSV file, checked: comma-delimited and holding every required column."""
    lines = _first_lines(data, 2)
    header_line = lines[0]
    header = next(csv.reader([header_line]))
    header = [h.strip() for h in header]
    missing = [c for c in spec.fields if c not in header]
    if missing:
        guess = _guess_delim(header_line, ",") if len(header) == 1 else None
        if guess:
            raise DatasetFormatError(
                f"{label}: wrong delimiter: expected {describe(spec)}; the header looks {_DELIMS.get(guess, repr(guess))}-separated: {header_line[:80]!r}"
            )
        raise DatasetFormatError(f"{label}: missing column(s) {', '.join(missing)} in the header; expected {','.join(spec.fields)}, found {','.join(header)}")
    if len(lines) > 1 and "," not in lines[1] and len(header) > 1:
        guess = _guess_delim(lines[1], ",")
        if guess:
            raise DatasetFormatError(
                f"{label}: wrong delimiter: expected comma-separated rows under the header; line 2 looks "
                f"{_DELIMS.get(guess, repr(guess))}-separated: {lines[1][:80]!r}"
            )
    return header


def _has_blank_line(data: bytes) -> bool:
    return data.startswith((b"\n", b"\r\n")) or b"\n\n" in data or b"\n\r\n" in data


def _physical_lines(data: bytes) -> int:
    n = data.count(b"\n")
    return n if data.endswith(b"\n") else n + 1


# ----------------------------------------------------------------------------- fast path


def fast_ratings(data: bytes, spec: FileSpec, header: list[str] | None, file: str) -> Parsed | None:
    """Typed parse of a whole ratings file, or None when any row is malformed (or lines are blank)."""
    types = {"user_id": pa.int64(), "item_id": pa.int64(), "rating": pa.float64(), "timestamp": pa.int64()}
    if spec.kind == "csv":
        assert header is not None
        names = header
        canon = {h: _canon(h) for h in header}
        column_types = {h: types[canon[h]] for h in header if canon[h] in types}
        delim = ","
        skip = 1
    elif spec.sep == "::":
        names = ["user_id", "_1", "item_id", "_2", "rating", "_3", "timestamp"]
        column_types = {**types, "_1": pa.string(), "_2": pa.string(), "_3": pa.string()}
        delim = ":"
        skip = 0
    else:
        names = list(spec.fields)
        column_types = types
        delim = spec.sep
        skip = 0
    try:
        table = pacsv.read_csv(
            pa.py_buffer(data),
            read_options=pacsv.ReadOptions(column_names=names, skip_rows=skip, block_size=1 << 24),
            # CSV fields may be quoted (RFC 4180: ``"1","10","4.0"``); other formats have no quoting
            parse_options=pacsv.ParseOptions(delimiter=delim, quote_char='"' if spec.kind == "csv" else False, newlines_in_values=False),
            convert_options=pacsv.ConvertOptions(
                column_types=column_types,
                null_values=[],
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
                include_columns=list(column_types),
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return None
    for blank in ("_1", "_2", "_3"):
        if blank in table.column_names:
            col = table.column(blank)
            if len(col) and pc.max(pc.binary_length(col)).as_py() != 0:
                return None
    if spec.kind == "csv":
        table = table.rename_columns([_canon(n) for n in table.column_names])
    n = table.num_rows
    if _physical_lines(data) - skip != n:
        return None  # blank lines: row k is not line k + 1 + skip
    cols = {}
    for k in ("user_id", "item_id", "rating", "timestamp"):
        cols[k] = table.column(k).to_numpy()
        table = table.drop_columns([k])
    return Parsed(file, cols, None, LineIndex(data).raw, n, first_line=1 + skip, n_rows=n)


def _canon(header_name: str) -> str:
    return CSV_COLUMNS.get(header_name, header_name)


# ----------------------------------------------------------------------------- exact path: lines


def parse_lines(
    data: bytes,
    spec: FileSpec,
    file: str,
    encoding: str,
    rejects: Rejects,
    *,
    skip_lines: int = 0,
    names: list[str] | None = None,
) -> Parsed:
    """Split ``data`` into physical lines and fields; rows with the wrong field count are rejected.

    Returns string columns (``names`` or ``spec.fields``) for the rows with the right count.
    Empty lines are not rows.
    """
    names = list(names or spec.fields)
    nf = len(names)
    utf8 = to_utf8(data, encoding)
    index = LineIndex(utf8)
    starts = index.starts
    total = len(utf8)
    n_lines = len(starts) - 1 if starts[-1] == total else len(starts)
    offsets = np.append(starts[:n_lines], total).astype(np.int64)
    raw_of = index.raw if encoding == "utf-8" else LineIndex(data, encoding).raw
    buf = pa.py_buffer(utf8)
    cols: dict[str, list[pa.Array]] = {k: [] for k in names}
    kept_lines: list[np.ndarray] = []
    n_read = 0
    for lo in range(skip_lines, n_lines, _CHUNK_LINES):
        hi = min(lo + _CHUNK_LINES, n_lines)
        off = pa.py_buffer((offsets[lo : hi + 1]).astype(np.int64))
        lines_arr = pa.LargeStringArray.from_buffers(hi - lo, off, buf)
        content = pc.utf8_rtrim(lines_arr, characters="\r\n")
        nonblank = pc.greater(pc.binary_length(content), 0).to_numpy(zero_copy_only=False)
        line_no = np.arange(lo + 1, hi + 1, dtype=np.int64)[nonblank]
        content = content.filter(pa.array(nonblank))
        n_read += len(content)
        fields = pc.split_pattern(content, spec.sep)
        counts = pc.list_value_length(fields).to_numpy(zero_copy_only=False)
        few = counts < nf
        many = counts > nf
        merged: list[list[str]] = []
        if many.any() and spec.free_text is not None:
            # the free-text field (a title, a tag) may itself contain the separator
            k = names.index(spec.free_text)
            tail = nf - 1 - k
            for parts in fields.filter(pa.array(many)).to_pylist():
                cut = len(parts) - tail
                merged.append([*parts[:k], spec.sep.join(parts[k:cut]), *parts[cut:]])
            merged_lines = line_no[many]
            many = np.zeros_like(many)
        if few.any():
            rejects.add(file, line_no[few], S.MISSING_FIELD, raw_of(line_no[few]))
        if many.any():
            rejects.add(file, line_no[many], S.EXTRA_FIELD, raw_of(line_no[many]))
        good = counts == nf
        fields = fields.filter(pa.array(good))
        chunk = {name: pc.list_element(fields, k).cast(pa.string()) for k, name in enumerate(names)}
        chunk_lines = line_no[good]
        if merged:
            order = np.argsort(np.concatenate([chunk_lines, merged_lines]), kind="stable")
            for k, name in enumerate(names):
                extra = pa.array([row[k] for row in merged], pa.string())
                chunk[name] = pa.concat_arrays([chunk[name], extra]).take(pa.array(order))
            chunk_lines = np.concatenate([chunk_lines, merged_lines])[order]
        for name in names:
            cols[name].append(chunk[name])
        kept_lines.append(chunk_lines)
    columns = {k: pa.chunked_array(v, pa.string()) for k, v in cols.items()}
    lines = np.concatenate(kept_lines) if kept_lines else np.zeros(0, np.int64)
    return Parsed(file, columns, lines, raw_of, n_read)


# ----------------------------------------------------------------------------- exact path: csv


def parse_csv(
    data: bytes,
    spec: FileSpec,
    file: str,
    rejects: Rejects,
    header: list[str],
    keep: tuple[str, ...] | list[str] | None = None,
) -> Parsed:
    """A quoted CSV (header line 1) as string columns; records with the wrong field count rejected.

    Keeps the columns ``keep`` (default ``spec.fields``) that the header has, renamed to
    canonical names (userId -> user_id, ...).
    Fast path: pyarrow when it parses and records map one-to-one onto physical lines;
    otherwise Python's csv module, which gives each record's first physical line.
    """
    keep = tuple(keep or spec.fields)
    wanted = [h for h in header if h in keep]
    try:
        table = pacsv.read_csv(
            pa.py_buffer(data),
            read_options=pacsv.ReadOptions(block_size=1 << 24),
            parse_options=pacsv.ParseOptions(newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(
                column_types={h: pa.string() for h in header},
                include_columns=wanted,
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
                null_values=[],
            ),
        )
        # one record per physical line (no blank lines, no quoted newlines): row k is line k + 2
        if _physical_lines(data) - 1 == table.num_rows and not _has_blank_line(data):
            cols = {_canon(h): table.column(h) for h in wanted}
            n = table.num_rows
            return Parsed(file, cols, None, LineIndex(data).raw, n, first_line=2, n_rows=n)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        pass
    return _parse_csv_python(data, file, rejects, header, wanted)


def _parse_csv_python(data: bytes, file: str, rejects: Rejects, header: list[str], wanted: list[str]) -> Parsed:
    text = data.decode("utf-8")
    if text.startswith("\ufeff"):
        text = text[1:]
    consumed: list[str] = []
    physical = io.StringIO(text, newline="")

    def lines_iter():
        for ln in physical:
            consumed.append(ln)
            yield ln

    reader = csv.reader(lines_iter())
    nf = len(header)
    want_idx = [header.index(h) for h in wanted]
    values: list[list[str]] = [[] for _ in want_idx]
    kept: list[int] = []
    raw_by_line: dict[int, str] = {}
    bad: dict[str, list[int]] = {S.MISSING_FIELD: [], S.EXTRA_FIELD: []}
    prev = 0
    n_read = 0
    first = True
    for rec in reader:
        start = prev + 1
        prev = reader.line_num
        raw = "".join(consumed).rstrip("\r\n")
        consumed.clear()
        if first:  # the header (after any blank lines)
            first = not rec
            continue
        if not rec:
            continue  # blank line
        n_read += 1
        raw_by_line[start] = raw
        if len(rec) != nf:
            bad[S.MISSING_FIELD if len(rec) < nf else S.EXTRA_FIELD].append(start)
            continue
        kept.append(start)
        for j, i in enumerate(want_idx):
            values[j].append(rec[i])

    def raw_of(lines: np.ndarray) -> list[str]:
        return [raw_by_line.get(int(ln), "") for ln in lines]

    for reason, lns in bad.items():
        if lns:
            arr = np.array(lns, np.int64)
            rejects.add(file, arr, reason, raw_of(arr))
    cols = {_canon(header[i]): pa.array(values[j], pa.string()) for j, i in enumerate(want_idx)}
    return Parsed(file, cols, np.array(kept, np.int64), raw_of, n_read)


# ----------------------------------------------------------------------------- field conversion


def _as_string(col) -> pa.Array:
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    return col


def to_int(col) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(values, ok, empty) of a string column; values are 0 where not ok."""
    col = _as_string(col)
    empty = pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(col)), 0).to_numpy(zero_copy_only=False)
    ok = pc.match_substring_regex(col, _INT_RE).to_numpy(zero_copy_only=False)
    values = np.zeros(len(col), np.int64)
    if ok.any():
        values[ok] = pc.cast(pc.utf8_trim_whitespace(col.filter(pa.array(ok))), pa.int64()).to_numpy()
    return values, ok, empty


def to_float(col) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    col = _as_string(col)
    empty = pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(col)), 0).to_numpy(zero_copy_only=False)
    ok = pc.match_substring_regex(col, _FLOAT_RE).to_numpy(zero_copy_only=False)
    values = np.zeros(len(col), np.float64)
    if ok.any():
        values[ok] = pc.cast(pc.utf8_trim_whitespace(col.filter(pa.array(ok))), pa.float64()).to_numpy()
    return values, ok, empty


def convert_numeric(
    parsed: Parsed,
    rejects: Rejects,
    ints: list[str] | tuple[str, ...] = (),
    floats: list[str] | tuple[str, ...] = (),
    optional: list[str] | tuple[str, ...] = (),
) -> Parsed:
    """Replace string columns by NumPy numbers (int64 / float64).

    A row with an empty required field is rejected as missing_field, one with a field that
    does not parse (or is nan/inf) as non_numeric. Columns named in ``optional`` may be
    empty: they get a ``<name>__valid`` mask column (values are 0 where empty).
    """
    n = len(parsed)
    missing = np.zeros(n, bool)
    bad = np.zeros(n, bool)
    fraction = np.zeros(n, bool)  # an integer field holding "1.0": not_an_integer
    overflow = np.zeros(n, bool)  # an integer field of 19+ digits: integer_overflow
    out = dict(parsed.columns)
    for name in [*ints, *floats]:
        values, ok, empty = (to_float if name in floats else to_int)(parsed.columns[name])
        if name in floats:
            ok &= np.isfinite(values)
        else:
            col = _as_string(parsed.columns[name])
            unparsed = ~ok & ~empty
            if unparsed.any():
                overflow |= unparsed & pc.match_substring_regex(col, _LONG_INT_RE).to_numpy(zero_copy_only=False)
                fraction |= unparsed & pc.match_substring_regex(col, _FLOAT_RE).to_numpy(zero_copy_only=False)
        bad |= ~ok & ~empty
        if name in optional:
            out[name + "__valid"] = ok
        else:
            missing |= empty
        out[name] = values
    parsed = parsed.with_columns(out)
    rejects.add_rows(parsed, missing, S.MISSING_FIELD)
    rejects.add_rows(parsed, overflow & ~missing, S.INTEGER_OVERFLOW)
    rejects.add_rows(parsed, fraction & ~overflow & ~missing, S.NOT_AN_INTEGER)
    rejects.add_rows(parsed, bad & ~fraction & ~overflow & ~missing, S.NON_NUMERIC)
    return parsed.filter(~(missing | bad))


def check_timestamps(parsed: Parsed, rejects: Rejects, notes: list[str], file: str) -> Parsed:
    """Seconds since 1970, as every MovieLens release has them; a file written in milliseconds is detected.

    When every timestamp of the file lies where milliseconds since 1973..5138 lie (and no second
    count before 2100 does), the file is taken as milliseconds, divided by 1000 and a note says so.
    Otherwise a timestamp before 1970 or after 2100 is a ``timestamp_out_of_range`` reject: never a
    year 32,500 in the tables.
    """
    ts = parsed.columns.get("timestamp")
    if ts is None or len(ts) == 0:
        return parsed
    if bool(np.all((ts >= MS_TIMESTAMPS[0]) & (ts < MS_TIMESTAMPS[1]))):
        notes.append(f"{file}: timestamps are in milliseconds (all {len(ts):,} of them); divided by 1000")
        return parsed.with_columns({**parsed.columns, "timestamp": ts // 1000})
    bad = (ts < 0) | (ts > MAX_TIMESTAMP)
    rejects.add_rows(parsed, bad, S.TIMESTAMP_OUT_OF_RANGE)
    return parsed.filter(~bad) if bad.any() else parsed


# ----------------------------------------------------------------------------- value checks


def membership(values: np.ndarray, known: np.ndarray) -> np.ndarray:
    """``values`` in ``known`` (int64 arrays), by a lookup table when ids are small, else by search."""
    if len(values) == 0:
        return np.zeros(0, bool)
    if len(known) == 0:
        return np.zeros(len(values), bool)
    lo = min(int(values.min()), int(known.min()))
    hi = max(int(values.max()), int(known.max()))
    if lo >= 0 and hi < 1 << 27:
        table = np.zeros(hi + 1, bool)
        table[known] = True
        return table[values]
    ks = np.sort(known)
    pos = np.clip(np.searchsorted(ks, values), 0, len(ks) - 1)
    return ks[pos] == values


def first_occurrence(*keys: np.ndarray) -> np.ndarray:
    """True for the first row of each distinct key (or key pair), in file order; False for repeats."""
    n = len(keys[0])
    if n == 0:
        return np.zeros(0, bool)
    grouped = False
    if len(keys) == 1:
        key = keys[0]
    else:
        a, b = keys
        amin, bmin = int(a.min()), int(b.min())
        span = int(b.max()) - bmin + 1
        if (int(a.max()) - amin + 1) * span >= 1 << 62:
            import pandas as pd

            return ~pd.DataFrame({"a": a, "b": b}).duplicated(keep="first").to_numpy()
        key = (a - amin) * span + (b - bmin)
        grouped = bool(np.all(a[1:] >= a[:-1]))
    if n > 1 and bool(np.all(key[1:] > key[:-1])):
        return np.ones(n, bool)
    if grouped:
        # rows grouped by user (every MovieLens file): a stable sort is fast on these runs,
        # and keeps equal keys in file order, so the first of a run is the first occurrence
        order = np.argsort(key, kind="stable")
        sk = key[order]
        repeat = np.zeros(n, bool)
        repeat[order[1:][sk[1:] == sk[:-1]]] = True
        return ~repeat
    import pandas as pd

    return ~pd.Series(key).duplicated(keep="first").to_numpy()


def check_ratings(
    parsed: Parsed,
    rejects: Rejects,
    *,
    lo: float,
    hi: float,
    step: float,
    known_items: np.ndarray,
    known_users: np.ndarray | None,
) -> Parsed:
    """Range, grid, unknown ids, then duplicates among the rows still standing.

    Of several ratings of one (user, item), the latest wins (largest timestamp; on a tie, the later
    line): a growing log appends re-ratings, and the newest is what the user thinks now. The
    earlier ones are ``duplicate_user_item`` rejects.
    """
    r = parsed.columns["rating"]
    finite = np.isfinite(r)
    rejects.add_rows(parsed, ~finite, S.NON_NUMERIC)
    out_of_range = finite & ((r < lo) | (r > hi))
    rejects.add_rows(parsed, out_of_range, S.RATING_OUT_OF_RANGE)
    steps = (r - lo) / step
    off_grid = finite & ~out_of_range & (np.abs(steps - np.round(steps)) > 1e-6)
    rejects.add_rows(parsed, off_grid, S.RATING_OFF_GRID)
    bad = ~finite | out_of_range | off_grid
    unknown_item = ~bad & ~membership(parsed.columns["item_id"], known_items)
    rejects.add_rows(parsed, unknown_item, S.UNKNOWN_ITEM)
    bad |= unknown_item
    if known_users is not None:
        unknown_user = ~bad & ~membership(parsed.columns["user_id"], known_users)
        rejects.add_rows(parsed, unknown_user, S.UNKNOWN_USER)
        bad |= unknown_user
    if bad.any():
        parsed = parsed.filter(~bad)
    first = first_occurrence(parsed.columns["user_id"], parsed.columns["item_id"])
    if first.all():
        return parsed
    dup = ~latest_occurrence(parsed.columns["user_id"], parsed.columns["item_id"], parsed.columns.get("timestamp"))
    rejects.add_rows(parsed, dup, S.DUPLICATE_USER_ITEM)
    return parsed.filter(~dup)


def latest_occurrence(users: np.ndarray, items: np.ndarray, timestamps: np.ndarray | None) -> np.ndarray:
    """True for the latest row of each (user, item): largest timestamp, then the later line."""
    import pandas as pd

    n = len(users)
    frame = pd.DataFrame({"u": users, "i": items, "t": timestamps if timestamps is not None else np.zeros(n, np.int64), "line": np.arange(n)})
    ordered = frame.sort_values(["t", "line"], kind="stable")
    keep = np.zeros(n, bool)
    keep[ordered.loc[~ordered.duplicated(["u", "i"], keep="last"), "line"].to_numpy()] = True
    return keep


def reject_duplicates(parsed: Parsed, rejects: Rejects, key: str, reason: str) -> Parsed:
    dup = ~first_occurrence(parsed.columns[key])
    rejects.add_rows(parsed, dup, reason)
    return parsed.filter(~dup)


def reject_unknown(parsed: Parsed, rejects: Rejects, key: str, known: np.ndarray, reason: str) -> Parsed:
    unknown = ~membership(parsed.columns[key], known)
    rejects.add_rows(parsed, unknown, reason)
    return parsed.filter(~unknown)


def too_many_rejects_message(rejects: Rejects, rows_read: int, threshold: float, path: Path, per_file_read: dict[str, int]) -> str:
    n = len(rejects)
    frac = n / rows_read if rows_read else 1.0
    files = ", ".join(f"{f}: {c} of {per_file_read.get(f, 0)} rows" for f, c in sorted(rejects.per_file.items()))
    reasons = ", ".join(f"{k}={v}" for k, v in rejects.counts().items())
    return f"{n} of {rows_read} rows rejected ({frac:.4%}) exceeds max_reject_fraction={threshold} ({threshold:.4%}); by file: {files}; reasons: {reasons}"
