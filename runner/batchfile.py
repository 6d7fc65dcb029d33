"""Batch files: which shorts a `--topics-file` asks for, each row with its own options, read before anything starts.

Three shapes, each row one `BatchRow`:

- plain text: one topic a line; blank lines and lines starting with `#` are skipped;
- JSON Lines (`.jsonl`, `.ndjson`, or any file whose first row starts with `{`): one object a line,
  e.g. `{"topic": "Why octopuses have three hearts", "voice": "am_adam", "limit": ["tts=600M"]}`;
- CSV (`.csv`) with a header row naming the fields; an empty cell leaves that option unset.

A row's fields are the per-short options of the command line (`FIELD_FLAGS`). Each row is turned
into those flags and parsed by the CLI's own parser, so a value is refused exactly as the same flag
would be; `runner.batch` then checks the rest through `runner.options`. Every problem is a
`UsageError` (exit 2) naming the file, the line and the field. Relative `script` and `broll_dir`
paths are read from the batch file's folder. Running the rows is `runner.batch`'s job.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import functools
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import msgspec

from runner.errors import UsageError
from runner.userfiles import read_text

FIELD_FLAGS: dict[str, str] = {
    "topic": "--topic",
    "script": "--script",
    "category": "--category",
    "platform": "--platform",
    "language": "--language",
    "voice": "--voice",
    "speed": "--speed",
    "seed": "--seed",
    "broll": "--broll",
    "broll_dir": "--broll-dir",
    "no_music": "--no-music",
    "limit": "--limit",
}
"""Each field a row may set, and the command-line flag it stands for."""
PATH_FIELDS = ("script", "broll_dir")


class BatchRow(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """One short of a batch: the options it sets; None leaves the command line's (or the default) in force."""

    topic: str | None = None
    script: str | None = None
    category: str | None = None
    platform: str | None = None
    language: str | None = None
    voice: str | None = None
    speed: float | None = None
    seed: int | None = None
    broll: str | None = None
    broll_dir: str | None = None
    no_music: bool | None = None
    limit: list[str] | str | None = None
    """`STAGE=SIZE`, as many as wanted: a list, or one string with them separated by spaces or `;`."""

    def limits(self) -> list[str]:
        if self.limit is None:
            return []
        items = [self.limit] if isinstance(self.limit, str) else self.limit
        return [part for item in items for part in re.split(r"[\s;]+", item) if part]

    def subject(self) -> str:
        """What the row is about, for its run directory's name and the batch table."""
        if self.topic is not None:
            return self.topic
        if self.script is not None:
            return Path(self.script).stem
        return self.category or "short"


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
    for entry in rows:
        with at_line(path, entry.line):
            _check_row(entry.row)
    return rows


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


def row_args(args: argparse.Namespace, row: BatchRow, base_dir: Path) -> argparse.Namespace:
    """The command line's options with the row's on top, each parsed exactly as the flag it stands for."""
    parsed = _parse_row_flags(row, base_dir)
    merged = argparse.Namespace(**vars(args))
    for field, flag in FIELD_FLAGS.items():
        if getattr(row, field) is None:
            continue
        dest = flag.lstrip("-").replace("-", "_")
        if field == "limit":
            merged.limit = [*args.limit, *parsed.limit]
        elif field == "no_music":
            merged.no_music = row.no_music
        else:
            setattr(merged, dest, getattr(parsed, dest))
    if row.topic is not None or row.script is not None:
        merged.category = row.category  # a row's own subject wins over a --category given for the batch
    if row.category is not None:
        merged.topic = None
    return merged


@functools.cache
def _row_parser() -> argparse.ArgumentParser:
    from runner.cli import build_parser  # the CLI's own types and choices, so a row is checked as its flag

    parser = build_parser()
    parser.exit_on_error = False
    return parser


def _parse_row_flags(row: BatchRow, base_dir: Path) -> argparse.Namespace:
    parser = _row_parser()
    tokens: list[str] = []
    for field, flag in FIELD_FLAGS.items():
        value = getattr(row, field)
        if value is None or field == "no_music":
            continue
        if field == "limit":
            tokens += [f"{flag}={item}" for item in row.limits()]
        elif field in PATH_FIELDS:
            tokens.append(f"{flag}={base_dir / value}")
        else:
            tokens.append(f"{flag}={value}")
    try:
        return parser.parse_args(tokens)
    except argparse.ArgumentError as exc:
        field = next((f for f, flag in FIELD_FLAGS.items() if flag == exc.argument_name), exc.argument_name)
        raise UsageError(f"{field}: {exc.message}") from None


def _check_row(row: BatchRow) -> None:
    if row.topic is not None and row.category is not None:
        raise UsageError("topic and category: give one of them (category lets the theme stage pick a topic)")
    if row.topic is None and row.script is None and row.category is None:
        raise UsageError("the row names no topic, script or category")
    for field in ("topic", "script", "category", "language", "voice", "broll_dir"):
        value = getattr(row, field)
        if value is not None and not value.strip():
            raise UsageError(f"{field}: empty; leave the field out instead")


def _meaningful(line: str) -> bool:
    return bool(line.strip()) and not line.lstrip().startswith("#")


def _text_rows(path: Path, text: str) -> list[BatchLine]:
    return [
        BatchLine(number, BatchRow(topic=line.strip()))
        for number, line in enumerate(text.splitlines(), start=1) if _meaningful(line)
    ]


def _jsonl_rows(path: Path, text: str) -> list[BatchLine]:
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not _meaningful(line):
            continue
        with at_line(path, number):
            rows.append(BatchLine(number, _decode_json_row(line)))
    return rows


def _decode_json_row(line: str) -> BatchRow:
    try:
        return msgspec.json.decode(line, type=BatchRow)
    except msgspec.ValidationError as exc:
        raise UsageError(f"{_field_of(exc)}{exc}; fields are {', '.join(FIELD_FLAGS)}") from None
    except msgspec.DecodeError as exc:
        raise UsageError(f"not a JSON object on one line ({exc})") from None


def _csv_rows(path: Path, text: str) -> list[BatchLine]:
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
                rows.append(BatchLine(start, _csv_row(header, cells)))
        start = reader.line_num + 1


def _check_header(header: list[str]) -> None:
    unknown = [name for name in header if name not in FIELD_FLAGS]
    if unknown:
        raise UsageError(f"CSV header: unknown column(s) {', '.join(map(repr, unknown))}; columns are"
                         f" {', '.join(FIELD_FLAGS)}")
    if len(set(header)) != len(header):
        raise UsageError("CSV header: a column is named twice")


def _csv_row(header: list[str], cells: list[str]) -> BatchRow:
    if len(cells) > len(header):
        raise UsageError(f"{len(cells)} cells but the header names {len(header)} columns")
    values = {name: cell.strip() for name, cell in zip(header, cells) if cell.strip()}
    try:
        return msgspec.convert(values, BatchRow, strict=False)
    except msgspec.ValidationError as exc:
        raise UsageError(f"{_field_of(exc)}{exc}") from None


def _field_of(exc: msgspec.ValidationError) -> str:
    found = re.search(r"at `\$\.(\w+)", str(exc))
    return f"{found.group(1)}: " if found else ""
