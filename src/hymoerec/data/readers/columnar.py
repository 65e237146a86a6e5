"""The columnar readers: Arrow's CSV and JSON readers parse a text file in C++, straight
into typed columns, with the ids dictionary-encoded (int32 codes and each distinct id
once), never as one Python object per field.

Each gives exactly the line-by-line reader's result or raises :class:`Declined` (or an
Arrow error), and the file is then read line by line, which finds and words the error.
Besides what :func:`~hymoerec.data.readers.scan.scan` refuses, they decline: a row
that is not the format's width, an empty id, a number that Arrow cannot convert (a
fractional or ISO-8601 timestamp among them), a rating that is not finite, encodings
other than UTF-8, ISO-8859-1 and ASCII, and a whitespace-separated file with runs of
separators. Clean files, the ones worth reading fast, take this path.
"""

from __future__ import annotations

import codecs
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.json as pjson

from hymoerec.data.interactions import Ids
from hymoerec.data.readers.fields import Columns
from hymoerec.data.readers.files import GZIP_MAGIC, binary_stream, open_raw
from hymoerec.data.readers.scan import (
    BLOCK,
    PYTHON_WHITESPACE,
    Declined,
    Rules,
    Scanned,
    scan,
)

ID = pa.string()  # ids are read as text, then encoded (_ids)
RATED = {"user": ID, "item": ID, "rating": pa.float64(), "timestamp": pa.int64()}
# MovieLens .dat split on ":" (Arrow splits on one character): "::" leaves an empty
# field between two values, typed null so that anything else in it is an error
DAT = {"user": ID, "_1": pa.null(), "item": ID, "_3": pa.null()}
DAT |= {"rating": pa.float64(), "_5": pa.null(), "timestamp": pa.int64()}
REVIEW = pa.schema(
    [
        ("reviewerID", pa.string()),
        ("asin", pa.string()),
        ("unixReviewTime", pa.int64()),
        ("overall", pa.float64()),
    ]
)


def movielens_dat(path: Path, encoding: str, progress: bool) -> Columns:
    found = scan(path, encoding, Rules(integers=True), progress=progress)
    with _arrow_input(path, encoding, found) as source:
        return _rated(_csv(source, DAT, ":", nulls=[""]))


def movielens_100k(path: Path, encoding: str, progress: bool) -> Columns:
    sep = _whitespace_separator(path)
    found = scan(path, encoding, Rules(integers=True, whitespace=sep), progress=progress)
    with _arrow_input(path, encoding, found) as source:
        return _rated(_csv(source, RATED, sep))


def amazon_ratings(path: Path, encoding: str, progress: bool) -> Columns:
    found = scan(path, encoding, Rules(integers=True, quoted=","), progress=progress)
    with _arrow_input(path, encoding, found) as source:
        return _rated(_csv(source, RATED, ",", quoted=True))


def sequences(path: Path, encoding: str, progress: bool) -> Columns:
    """One field per line (the separator is a byte the scan refuses), split on spaces and
    tabs by Arrow, the first token of a line being its user."""
    found = scan(path, encoding, Rules(whitespace=" \t"), progress=progress)
    with _arrow_input(path, encoding, found) as source:
        lines = _csv(source, {"line": pa.string()}, "\x1f").column(0)
    users, items, counts = [], [], []
    for chunk in lines.chunks:
        tokens = pc.ascii_split_whitespace(chunk)
        flat = tokens.flatten()  # (tokens,) with an empty one per leading/trailing space
        line_of = np.repeat(
            np.arange(len(chunk), dtype=np.int32),
            pc.list_value_length(tokens).to_numpy(zero_copy_only=False),
        )
        filled = pc.greater(pc.binary_length(flat), 0)
        line_of = line_of[filled.to_numpy(zero_copy_only=False)]
        flat = flat.filter(filled)
        per_line = np.bincount(line_of, minlength=len(chunk))
        if (per_line == 1).any():
            raise Declined("a user without items")
        first = np.ones(len(line_of), dtype=bool)
        first[1:] = line_of[1:] != line_of[:-1]
        users.append(flat.filter(pa.array(first)))
        items.append(flat.filter(pa.array(~first)))
        counts.append(per_line[per_line > 0] - 1)
    del lines
    user = _ids(pa.chunked_array(users, type=pa.string()))  # one per line
    item = _ids(pa.chunked_array(items, type=pa.string()))
    user = Ids(np.repeat(user.codes, np.concatenate(counts)), user.values)
    return Columns(user, item, np.arange(len(item), dtype=np.int64), None)


def amazon_reviews(path: Path, encoding: str, progress: bool) -> Columns:
    """JSON lines. The scan counts the non-blank lines: Arrow reads two objects on one
    line as two rows, where the line-by-line reader refuses the line."""
    found = scan(path, encoding, Rules(count_lines=True), progress=progress)
    with _arrow_input(path, encoding, found) as source:
        table = pjson.read_json(
            source,
            read_options=pjson.ReadOptions(block_size=BLOCK),
            parse_options=pjson.ParseOptions(
                explicit_schema=REVIEW,
                unexpected_field_behavior="ignore",
                newlines_in_values=False,
            ),
        )
    if table.num_rows == 0:
        raise Declined("no rows")
    if table.num_rows != found.lines:
        raise Declined(f"{table.num_rows:,} objects on {found.lines:,} lines")
    column = _releasing(table)
    del table
    overall = column("overall")
    if overall.null_count not in (0, len(overall)):
        raise Declined("'overall' on some reviews only")
    rating = None if overall.null_count else _finite(overall)
    user, item = _ids(column("reviewerID")), _ids(column("asin"))
    return Columns(user, item, _integers(column("unixReviewTime")), rating)


def delimited(
    path: Path,
    user_col: str,
    item_col: str,
    time_col: str | None,
    rating_col: str | None,
    sep: str,
    encoding: str,
    progress: bool,
) -> Columns:
    """A table with a header: the scan reads the header as the csv module does, and
    Arrow reads the rows after it."""
    if len(sep) != 1 or sep in '"\r\n':
        raise Declined(f"separator {sep!r}")
    rules = Rules(integers=time_col is not None, quoted=sep)
    found = scan(path, encoding, rules, header_sep=sep, progress=progress)
    names = [name.strip() for name in found.header or []]
    wanted = {"user": user_col, "item": item_col, "timestamp": time_col, "rating": rating_col}
    at = {role: names.index(name) for role, name in wanted.items() if name in names}
    if len(at) < sum(name is not None for name in wanted.values()):
        raise Declined("a column is missing")
    numbers = [at[role] for role in ("timestamp", "rating") if role in at]
    if {at["user"], at["item"]} & set(numbers) or len(set(numbers)) < len(numbers):
        raise Declined("one column read as two kinds of value")
    types: dict[str, pa.DataType] = {f"c{i}": pa.string() for i in range(len(names))}
    types |= {f"c{at[role]}": RATED[role] for role in at}  # only these are converted
    with _arrow_input(path, encoding, found) as source:
        table = _csv(source, types, sep, quoted=True, keep=[f"c{i}" for i in set(at.values())])
    rows = table.num_rows
    column = _releasing(table)
    del table
    user = _ids(column(f"c{at['user']}"))
    item = user if at["item"] == at["user"] else _ids(column(f"c{at['item']}"))
    if "timestamp" in at:
        timestamp = _integers(column(f"c{at['timestamp']}"))
    else:
        timestamp = np.arange(rows, dtype=np.int64)
    rating = _finite(column(f"c{at['rating']}")) if "rating" in at else None
    return Columns(user, item, timestamp, rating)


# ----------------------------------------------------------------------------- helpers


@contextmanager
def _arrow_input(path: Path, encoding: str, found: Scanned) -> Iterator[pa.NativeFile]:
    """The file as an Arrow stream positioned at its first row: read by Arrow itself
    (gzip included), or, for Latin-1 letters, transcoded to UTF-8 in memory."""
    if not found.ascii and codecs.lookup(encoding).name != "utf-8":
        with open_raw(path) as raw:
            stream = binary_stream(raw)
            stream.read(found.start - stream.tell())
            text = stream.read().decode(encoding).encode("utf-8")
        with pa.BufferReader(text) as source:
            yield source
        return
    with open_raw(path) as raw:
        gzipped = raw.peek(2)[:2] == GZIP_MAGIC
    with pa.OSFile(str(path)) as file:
        source = pa.CompressedInputStream(file, "gzip") if gzipped else file
        skipped = 0
        while skipped < found.start:
            piece = source.read(found.start - skipped)
            if not piece:
                raise Declined("the file ended early")
            skipped += len(piece)
        yield source


def _csv(
    source: pa.NativeFile,
    types: dict[str, pa.DataType],
    sep: str,
    quoted: bool = False,
    nulls: list[str] | None = None,
    keep: list[str] | None = None,
) -> pa.Table:
    """The rows, as typed columns (``types`` names every column; ``keep``: the ones to
    convert, else all); ``quoted``: CSV quoting, else a quote is a character;
    ``nulls``: the text of a null-typed column."""
    table = pcsv.read_csv(
        source,
        read_options=pcsv.ReadOptions(column_names=list(types), block_size=BLOCK),
        parse_options=pcsv.ParseOptions(
            delimiter=sep,
            quote_char='"' if quoted else False,
            double_quote=quoted,
            escape_char=False,
            newlines_in_values=False,
            ignore_empty_lines=True,
        ),
        convert_options=pcsv.ConvertOptions(
            column_types=types,
            include_columns=keep or list(types),
            null_values=nulls or [],
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
            check_utf8=False,  # the scan decoded every non-ASCII block
        ),
    )
    if table.num_rows == 0:
        raise Declined("no rows")
    return table


def _rated(table: pa.Table) -> Columns:
    """Columns of ``user item rating timestamp`` rows."""
    column = _releasing(table)
    del table
    user, item = _ids(column("user")), _ids(column("item"))
    return Columns(user, item, _integers(column("timestamp")), _finite(column("rating")))


def _releasing(table: pa.Table) -> Callable[[str], pa.ChunkedArray]:
    """Each column of ``table`` once, so that its Arrow memory goes once it is converted
    (the caller drops the table)."""
    columns = {name: table.column(name) for name in table.column_names}
    return columns.pop


def _whitespace_separator(path: Path) -> str:
    """Tab, unless the first line has spaces and no tab."""
    with open_raw(path) as raw:
        head = binary_stream(raw).peek(1 << 16).split(b"\n", 1)[0]
    return " " if b" " in head and b"\t" not in head else "\t"


def _ids(column: pa.ChunkedArray) -> Ids:
    """Ids from a column of text, stripped of Python's whitespace (as ``str.strip``
    does), which may join two of its values into one id."""
    if column.null_count or len(column) == 0:
        raise Declined("a missing id")
    if not pa.types.is_dictionary(column.type):
        integers = _integer_ids(column)
        if integers is not None:
            return integers
        column = pc.dictionary_encode(column)
    column = column.unify_dictionaries()
    trimmed = pc.utf8_trim(column.chunk(0).dictionary, characters=PYTHON_WHITESPACE)
    # NumPy rather than an Arrow aggregate (pc.any): those have aborted the process at
    # exit ("terminate called without an active exception", pyarrow 26)
    if (pc.binary_length(trimmed).to_numpy(zero_copy_only=False) == 0).any():
        raise Declined("an empty id")
    codes = np.concatenate([chunk.indices.to_numpy() for chunk in column.chunks])
    return Ids.from_dictionary(codes, trimmed.to_numpy(zero_copy_only=False))


_POWERS = 10 ** np.arange(1, 19, dtype=np.int64)  # 10 .. 10**18


def _integer_ids(column: pa.ChunkedArray) -> Ids | None:
    """Ids from text that is every row an integer written as Python writes it (no sign
    but a minus, no leading zero, no space), or None: the common case, encoded from the
    integers rather than by hashing strings.

    A row's text is at least as long as its integer's digits (and minus), and as long
    exactly when it is written so; the column's text is therefore canonical when its
    length in bytes is the sum of its integers' lengths, which needs the lengths of the
    distinct integers only."""
    values = np.empty(len(column), dtype=np.int64)
    at, text_bytes = 0, 0
    for chunk in column.chunks:
        try:
            values[at : at + len(chunk)] = pc.cast(chunk, pa.int64()).to_numpy()
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return None
        text_bytes += int(pc.binary_length(chunk).to_numpy().sum())
        at += len(chunk)
    low, high = int(values.min()), int(values.max())
    if high - low <= max(4 * len(values), 1 << 20):  # a lookup table, one pass
        values -= low
        table = np.zeros(high - low + 1, dtype=bool)
        table[values] = True
        distinct = np.flatnonzero(table).astype(np.int64) + low
        index = np.cumsum(table, dtype=np.int32)
        index -= 1
        codes = np.take(index, values)
    else:
        distinct, inverse = np.unique(values, return_inverse=True)
        codes = inverse.astype(np.int32)
    del values
    digits = np.searchsorted(_POWERS, np.abs(distinct), side="right") + 1 + (distinct < 0)
    if int(np.bincount(codes, minlength=len(distinct)) @ digits) != text_bytes:
        return None  # a leading zero, a plus sign or a space somewhere
    text = distinct.astype(str)
    text = text.astype(f"<U{int(digits.max())}")
    order = np.argsort(text, kind="stable")  # Ids sort their values as strings
    rank = np.empty(len(order), dtype=np.int32)
    rank[order] = np.arange(len(order), dtype=np.int32)
    return Ids(rank[codes], text[order])


def _integers(column: pa.ChunkedArray) -> np.ndarray:
    if column.null_count:
        raise Declined("a missing timestamp")
    return np.asarray(column.to_numpy(), dtype=np.int64)


def _finite(column: pa.ChunkedArray) -> np.ndarray:
    values = np.asarray(column.to_numpy(), dtype=np.float64)
    if column.null_count or not np.isfinite(values).all():
        raise Declined("a rating that is not a finite number")
    return values
