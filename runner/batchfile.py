"""Batch files: which shorts a `--topics-file` asks for, each row with its own options, read before anything starts.

Three shapes, each row one `BatchRow`:

- plain text: one topic a line; blank lines and lines starting with `#` are skipped;
- JSON Lines (`.jsonl`, `.ndjson`, or any file whose first row starts with `{`): one object a line,
  e.g. `{"topic": "Why octopuses have three hearts", "voice": "am_adam", "limit": ["tts=600M"]}`;
- CSV (`.csv`) with a header row naming the fields; an empty cell leaves that option unset.

A row's fields are the request schema's (`ipc.request.ShortRequest`: topic, voice, speed, ...), plus
`limit` (`STAGE=SIZE` ceilings) and `no_music` (the older spelling of `"music": false`). Each row is
checked by the schema itself (CSV cells read as numbers and booleans where the field is one);
`runner.batch` then checks the rest through `runner.options`. Every problem is a `UsageError`
(exit 2) naming the file, the line and the column. Relative `script`, `broll_dir` and `music_file` paths are read
from the batch file's folder. Running the rows is `runner.batch`'s job.
"""

from __future__ import annotations

import contextlib
import csv
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from aishorts.ipc.request import FIELDS, RequestError, ShortRequest, check_value, field_info, in_words, request_from
from aishorts.runner.errors import UsageError
from aishorts.runner.userfiles import read_text

ROW_FIELDS: tuple[str, ...] = (*FIELDS, "limit", "no_music")
"""The names a row may use: the request schema's fields, its stage ceilings, and the older `no_music`."""


@dataclass(frozen=True)
class BatchRow:
    """One short of a batch: the options it sets (on top of the command line's), checked by the schema."""

    request: ShortRequest
    """The fields the row gives; the others None, leaving the command line's (or the default) in force."""
    limits: list[str] = field(default_factory=list)
    """`STAGE=SIZE` ceilings of this row (written as a list, or one string separated by spaces or `;`)."""
    given: dict[str, Any] = field(default_factory=dict)
    """The row's values as written, for messages."""

    def subject(self) -> str:
        """What the row is about, for its run directory's name and the batch table."""
        if self.request.topic is not None:
            return self.request.topic
        if self.given.get("script") is not None:
            return Path(str(self.given["script"])).stem
        return self.request.category or "short"


@dataclass(frozen=True)
class BatchLine:
    line: int
    """Where the row starts in the file (1-based), for messages."""
    row: BatchRow


def read_batch_file(path: Path) -> list[BatchLine]:
    """Every row of a batch file, typed; UsageError at the first malformed one."""
    text = read_text(path, "--topics-file")
    kind = batch_file_kind(path, text)
    rows = {"csv": _csv_rows, "jsonl": _jsonl_rows, "text": _text_rows}[kind](path, text)
    if not rows:
        raise UsageError(f"--topics-file {path}: no topics (one a line; # starts a comment; or JSON Lines, or CSV"
                         " with a header)")
    strict = kind != "csv"  # CSV cells are text: "1.2" is a number and "true" a boolean where the field is one
    batch = []
    for number, values in rows:
        with at_line(path, number):
            batch.append(BatchLine(number, batch_row(values, path.parent, strict=strict)))
    return batch


def batch_file_kind(path: Path, text: str) -> str:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    first = next((line.strip() for line in text.splitlines() if _meaningful(line)), "")
    return "jsonl" if first.startswith("{") else "text"


@contextlib.contextmanager
def at_line(path: Path, line: int) -> Iterator[None]:
    """Prefix a UsageError raised while handling one row with where that row is."""
    try:
        yield
    except UsageError as exc:
        raise UsageError(f"--topics-file {path}, line {line}: {exc}") from None


def row_request(base: ShortRequest, row: BatchRow) -> ShortRequest:
    """The command line's request with the row's fields on top; a row's own subject replaces the command line's."""
    given = {name: getattr(row.request, name) for name in FIELDS if getattr(row.request, name) is not None}
    if row.request.topic is not None or row.request.script is not None:
        given["category"] = row.request.category  # a row's own subject wins over a --category given for the batch
    if row.request.category is not None:
        given["topic"] = None
    return msgspec.structs.replace(base, **given)


def row_words(exc: RequestError, row: BatchRow) -> str:
    """A schema refusal in a batch file's words: the column and the value as written (`at_line` adds the line)."""
    name = "no_music" if exc.field == "music" and "no_music" in row.given else exc.field
    words = in_words(exc, name, row.given.get(name))
    return words + (f"; columns are {', '.join(ROW_FIELDS)}" if exc.kind == "unknown" else "")


def batch_row(values: dict[str, Any], base_dir: Path, *, strict: bool) -> BatchRow:
    """One row's values, by column name, checked by the schema; UsageError naming the column otherwise."""
    _check_row(values)
    fields = {name: value for name, value in values.items() if name not in ("limit", "no_music")}
    row = BatchRow(request=ShortRequest(), limits=_limits(values.get("limit")), given=dict(values))
    try:
        if values.get("no_music") is not None:
            fields["music"] = not check_value(field_info()["music"], values["no_music"], strict=strict)
        if isinstance(fields.get("script"), str):
            fields["script"] = read_text(base_dir / fields["script"], "script")
        for name in ("broll_dir", "music_file"):  # paths, read from the batch file's folder
            if isinstance(fields.get(name), str) and fields[name].strip():
                fields[name] = str(base_dir / fields[name])
        return BatchRow(request=request_from(fields, strict=strict), limits=row.limits, given=row.given)
    except RequestError as exc:
        raise UsageError(row_words(exc, row)) from None


def _limits(value: Any) -> list[str]:
    if value is None:
        return []
    try:
        items = msgspec.convert(value, list[str] | str)
    except msgspec.ValidationError as exc:
        raise UsageError(f"limit: {exc}; give STAGE=SIZE, or a list of them") from None
    items = [items] if isinstance(items, str) else items
    return [part for item in items for part in re.split(r"[\s;]+", item) if part]


def _check_row(values: dict[str, Any]) -> None:
    if values.get("topic") is not None and values.get("category") is not None:
        raise UsageError("topic and category: give one of them (category lets the theme stage pick a topic)")
    if all(values.get(name) is None for name in ("topic", "script", "category")):
        raise UsageError("the row names no topic, script or category")
    for name in ("script", "category", "language"):
        value = values.get(name)
        if isinstance(value, str) and not value.strip():
            raise UsageError(f"{name}: empty; leave the field out instead")


def _meaningful(line: str) -> bool:
    return bool(line.strip()) and not line.lstrip().startswith("#")


Rows = list[tuple[int, dict[str, Any]]]
"""Each row's line and its values by column name, as written."""


def _text_rows(path: Path, text: str) -> Rows:
    return [(number, {"topic": line.strip()}) for number, line in enumerate(text.splitlines(), start=1)
            if _meaningful(line)]


def _jsonl_rows(path: Path, text: str) -> Rows:
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not _meaningful(line):
            continue
        with at_line(path, number):
            rows.append((number, _decode_json_row(line)))
    return rows


def _decode_json_row(line: str) -> dict[str, Any]:
    try:
        return msgspec.json.decode(line, type=dict[str, Any])
    except msgspec.ValidationError:
        raise UsageError("not a JSON object: give one {...} a line") from None
    except msgspec.DecodeError as exc:
        raise UsageError(f"not a JSON object on one line ({exc})") from None


def _csv_rows(path: Path, text: str) -> Rows:
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)  # an unterminated quote is an error, not a topic
    try:
        header = [name.strip() for name in next(reader)]
    except StopIteration:
        return []
    except csv.Error as exc:
        raise UsageError(f"--topics-file {path}, line 1: {exc}") from None
    with at_line(path, 1):
        _check_header(header)
    rows = []
    start = reader.line_num + 1
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return rows
        except csv.Error as exc:
            why = "a quote opened on this line is never closed" if "end of data" in str(exc) else exc
            raise UsageError(f"--topics-file {path}, line {start}: {why}") from None
        if any(cell.strip() for cell in cells) and not cells[0].lstrip().startswith("#"):
            with at_line(path, start):
                rows.append((start, _csv_row(header, cells)))
        start = reader.line_num + 1


def _check_header(header: list[str]) -> None:
    unknown = [name for name in header if name not in ROW_FIELDS]
    if unknown:
        raise UsageError(f"CSV header: unknown column(s) {', '.join(map(repr, unknown))}; columns are"
                         f" {', '.join(ROW_FIELDS)}")
    if len(set(header)) != len(header):
        raise UsageError("CSV header: a column is named twice")


def _csv_row(header: list[str], cells: list[str]) -> dict[str, str]:
    if len(cells) > len(header):
        raise UsageError(f"{len(cells)} cells but the header names {len(header)} columns")
    return {name: cell.strip() for name, cell in zip(header, cells) if cell.strip()}
