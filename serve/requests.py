"""What an HTTP client may ask for, checked exactly as the command line checks it.

Responsible for: the request bodies (`VideoRequest`, `ResumeRequest`), the
MoneyPrinterTurbo field names mapped onto ours, turning a request into the
command-line options it stands for and running those through the CLI's own
parser and `runner.options` (so a request fails with the very message the
CLI would print), and naming the request field each error is about. It never
starts a run: `serve.jobs` does.
"""

from __future__ import annotations

import argparse
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from runner.cli import build_parser
from runner.errors import UsageError
from runner.options import limits_and_pipeline, max_ram_from, run_options
from runner.run import RunOptions
from ipc.languages import voice_for_azure
from ipc.sizes import format_size


class FieldError(Exception):
    """A request the server refuses: which field, why, and the HTTP status (400 or 422; 409 for a wrong state)."""

    def __init__(self, field: str | None, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.field = field
        self.reason = reason
        self.status = status


class VideoRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """`POST /api/v1/videos`: our options by their CLI names, plus MoneyPrinterTurbo's where they map."""

    topic: str | None = None
    category: str | None = None
    script: str | None = None
    """The narration text itself (the CLI's `--script FILE` holds the same text in a file)."""
    platform: str | None = None
    language: str | None = None
    voice: str | None = None
    speed: float | None = None
    music: bool | None = None
    llm: str | None = None
    llm_model: str | None = None
    tts: str | None = None
    broll: str | None = None
    broll_url: list[str] | None = None
    scorer: str | None = None
    renderer: str | None = None
    encoder_preset: str | None = None
    seed: int | None = None
    max_ram: str | int | None = None
    limits: dict[str, str | int] = {}
    """Stage name -> ceiling, as `--limit STAGE=SIZE`."""
    pipeline: str | None = None
    """Developers: the name of a pipeline file the server was started with (`serve --pipeline FILE`)."""
    # MoneyPrinterTurbo's names for the same things
    video_subject: str | None = None
    video_script: str | None = None
    video_language: str | None = None
    voice_name: str | None = None
    voice_rate: float | None = None
    bgm_type: str | None = None
    video_aspect: str | None = None
    # MoneyPrinterTurbo's fields with no counterpart here: accepted so its clients work, and listed as ignored
    video_terms: Any = None
    video_concat_mode: Any = None
    video_transition_mode: Any = None
    video_clip_duration: Any = None
    video_count: Any = None
    video_source: Any = None
    video_materials: Any = None
    voice_volume: Any = None
    bgm_file: Any = None
    bgm_volume: Any = None
    subtitle_enabled: Any = None
    subtitle_position: Any = None
    custom_position: Any = None
    font_name: Any = None
    text_fore_color: Any = None
    text_background_color: Any = None
    font_size: Any = None
    stroke_color: Any = None
    stroke_width: Any = None
    n_threads: Any = None
    paragraph_number: Any = None


IGNORED_MPT_FIELDS = (
    "video_terms", "video_concat_mode", "video_transition_mode", "video_clip_duration", "video_count", "video_source",
    "video_materials", "voice_volume", "bgm_file", "bgm_volume", "subtitle_enabled", "subtitle_position",
    "custom_position", "font_name", "text_fore_color", "text_background_color", "font_size", "stroke_color",
    "stroke_width", "n_threads", "paragraph_number",
)


class ResumeRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """`POST /api/v1/tasks/{id}/resume`: optionally new ceilings for some stages and a new budget."""

    limits: dict[str, str | int] = {}
    max_ram: str | int | None = None


class SvmScene(msgspec.Struct, kw_only=True):
    text: str
    searchTerms: list[str] = []


class SvmConfig(msgspec.Struct, kw_only=True):
    """short-video-maker's render config: its voices are Kokoro's, as ours; the rest has no counterpart here."""

    voice: str | None = None
    musicVolume: str | None = None
    orientation: str | None = None
    music: Any = None
    paddingBack: Any = None
    captionPosition: Any = None
    captionBackgroundColor: Any = None


class ShortVideoRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """short-video-maker's `POST /api/short-video`: its scenes' text becomes the script."""

    scenes: list[SvmScene]
    config: SvmConfig = msgspec.field(default_factory=SvmConfig)


def video_from_short_video_maker(request: ShortVideoRequest) -> VideoRequest:
    if not request.scenes:
        raise FieldError("scenes", "scenes: give at least one scene with its text", 422)
    if request.config.orientation not in (None, "portrait"):
        raise FieldError("config", f"orientation {request.config.orientation!r}: only portrait shorts are made", 422)
    script = " ".join(scene.text.strip() for scene in request.scenes)
    music = None if request.config.musicVolume is None else request.config.musicVolume != "muted"
    return VideoRequest(script=script, voice=request.config.voice, music=music)


OPTION_OF_FIELD = {
    "topic": "--topic", "category": "--category", "script": "--script", "platform": "--platform",
    "language": "--language", "voice": "--voice", "speed": "--speed", "music": "--no-music", "llm": "--llm",
    "llm_model": "--llm-model", "tts": "--tts", "broll": "--broll", "broll_url": "--broll-url", "scorer": "--scorer",
    "renderer": "--renderer", "encoder_preset": "--encoder-preset", "seed": "--seed", "max_ram": "--max-ram",
    "limits": "--limit", "pipeline": "--pipeline",
}
FIELD_OF_OPTION = {option: field for field, option in OPTION_OF_FIELD.items()}
_OPTION_IN_MESSAGE = re.compile(r"(--[a-z][a-z-]*)")
_AZURE_VOICE = re.compile(r"^[a-z]{2,3}-[A-Z]{2}-\w+Neural(-\w+)?$")


@dataclass
class ServerSettings:
    """What every request is checked against besides the CLI's own rules."""

    runs_dir: Path
    max_ram: int | None
    jobs: int
    pipelines: dict[str, Path]
    """Pipeline files the server was started with, by name (the file's stem)."""


@dataclass
class Planned:
    """A request that passed: the run's options, and what to record so it can be resumed after a restart."""

    opts: RunOptions
    limits: dict[str, str]
    max_ram: str | None
    pipeline: str | None
    ignored: list[str]


def decode(body: bytes, kind: type):
    """The request body as `kind`, or a 422 naming the field msgspec stumbled on."""
    if not body.strip():
        return kind()
    try:
        return msgspec.json.decode(body, type=kind)
    except msgspec.ValidationError as exc:
        text = str(exc)
        where = re.search(r"at `\$\.([A-Za-z_][A-Za-z0-9_]*)", text)
        unknown = re.search(r"unknown field `([^`]+)`", text)
        field = unknown.group(1) if unknown else where.group(1) if where else None
        raise FieldError(field, text, 422) from None
    except msgspec.DecodeError as exc:
        raise FieldError(None, f"the body is not valid JSON: {exc}", 400) from None


def plan_video(request: VideoRequest, settings: ServerSettings) -> Planned:
    """The run a `POST /api/v1/videos` asks for, checked as the CLI checks it; FieldError otherwise."""
    merged, ignored = _merge_mpt(request)
    argv = _content_argv(merged)
    limits = {stage: str(size) for stage, size in merged.limits.items()}
    max_ram = _max_ram_text(merged.max_ram, settings)
    pipeline = _pipeline(merged.pipeline, settings)
    with tempfile.TemporaryDirectory(prefix="aishorts-serve-") as scratch:
        script_file = None
        if merged.script is not None:
            script_file = Path(scratch) / "script.txt"
            script_file.write_text(merged.script, encoding="utf-8")
            argv += ["--script", str(script_file)]
        argv += _run_argv(limits, max_ram, pipeline, settings)
        try:
            opts = _checked_options(argv, settings, run_dir=None, topic=merged.topic)
        except UsageError as exc:
            message = str(exc)
            if script_file is not None:
                message = message.replace(f"--script {script_file}", "--script").replace(str(script_file), "script")
            raise _field_error(message) from None
    return Planned(opts=opts, limits=limits, max_ram=max_ram, pipeline=pipeline, ignored=ignored)


def plan_resume(run_dir: Path, limits: dict[str, str], max_ram: str | None, pipeline: str | None,
                settings: ServerSettings) -> RunOptions:
    """The options that resume `run_dir` (its run.json holds the rest), as `--run-dir DIR --limit ...` would."""
    argv = ["--run-dir", str(run_dir), *_run_argv(limits, _max_ram_text(max_ram, settings), pipeline, settings)]
    try:
        return _checked_options(argv, settings, run_dir=run_dir, topic=None)
    except UsageError as exc:
        raise _field_error(str(exc)) from None


def _checked_options(argv: list[str], settings: ServerSettings, run_dir: Path | None, topic: str | None) -> RunOptions:
    args = _parse(argv)
    limits, pipeline = limits_and_pipeline(args)
    max_ram = max_ram_from(args.max_ram)
    opts = run_options(args, limits, pipeline, max_ram, run_dir=run_dir or _placeholder_dir(settings), topic=topic)
    _ = opts.ceilings  # a stage that cannot fit the budget is refused now, as the CLI refuses it before starting
    if settings.jobs > 1:
        opts.threads = max(1, _cores() // settings.jobs)
    return opts


def _placeholder_dir(settings: ServerSettings) -> Path:
    """A name that does not exist: the real directory is made (exclusively) only once the request passed."""
    return settings.runs_dir / ".not-yet-created"


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = build_parser()

    def refuse(message: str):
        raise UsageError(message)

    parser.exit_on_error = False
    parser.error = refuse  # argparse's own messages, raised instead of printed with exit 2
    try:
        return parser.parse_args(argv)
    except argparse.ArgumentError as exc:
        raise UsageError(str(exc)) from None


def _field_error(message: str) -> FieldError:
    option = _OPTION_IN_MESSAGE.search(message)
    field = FIELD_OF_OPTION.get(option.group(1)) if option else None
    if field is None and ("budget" in message or "max-ram" in message):
        field = "max_ram"
    return FieldError(field, message, 400)


def _merge_mpt(request: VideoRequest) -> tuple[VideoRequest, list[str]]:
    """Our request with MoneyPrinterTurbo's fields folded in; the names of those that have no counterpart here."""
    merged = msgspec.structs.replace(request)
    pairs = (("topic", "video_subject"), ("script", "video_script"), ("speed", "voice_rate"))
    for ours, theirs in pairs:
        value = getattr(request, theirs)
        if value is None or value == "":
            continue
        if getattr(request, ours) not in (None, value):
            raise FieldError(theirs, f"{theirs} and {ours} say different things; give one of them", 400)
        setattr(merged, ours, value)
    ignored = [name for name in IGNORED_MPT_FIELDS if getattr(request, name) is not None]
    if request.video_language:
        if request.language not in (None, request.video_language.lower()):
            raise FieldError("video_language", "video_language and language say different things; give one", 400)
        merged.language = request.video_language.lower()
    if request.voice_name:
        if _AZURE_VOICE.match(request.voice_name):
            kokoro = voice_for_azure(request.voice_name)  # its Kokoro namesake, or a male voice for a male one
            if kokoro is None or request.voice is not None:
                ignored.append("voice_name")  # narration uses `voice`, or the language's own Kokoro voice
            else:
                merged.voice = kokoro
        else:
            merged.voice = request.voice_name
    if request.bgm_type is not None:
        if request.bgm_type.lower() not in ("", "none", "random"):
            raise FieldError("bgm_type", f"bgm_type {request.bgm_type!r}: use \"random\" (music) or \"\" (none)", 422)
        merged.music = request.bgm_type.lower() == "random"
    if request.video_aspect not in (None, "", "9:16", "portrait"):
        raise FieldError("video_aspect", f"video_aspect {request.video_aspect!r}: only vertical 9:16 shorts are made", 422)
    return merged, ignored


def _content_argv(request: VideoRequest) -> list[str]:
    argv: list[str] = []
    for field in ("topic", "category", "platform", "language", "voice", "speed", "llm", "llm_model", "tts", "broll",
                  "scorer", "renderer", "encoder_preset", "seed"):
        value = getattr(request, field)
        if value is not None:
            argv += [OPTION_OF_FIELD[field], str(value)]
    for url in request.broll_url or []:
        argv += ["--broll-url", url]
    if request.music is False:
        argv.append("--no-music")
    return argv


def _run_argv(limits: dict[str, str], max_ram: str | None, pipeline: str | None, settings: ServerSettings) -> list[str]:
    argv: list[str] = []
    for stage, size in limits.items():
        argv += ["--limit", f"{stage}={size}"]
    if max_ram is not None:
        argv += ["--max-ram", max_ram]
    if pipeline is not None:
        argv += ["--pipeline", str(settings.pipelines[pipeline])]
    return argv


def _max_ram_text(value: str | int | None, settings: ServerSettings) -> str | None:
    """The job's budget: as asked (never above the server's own), else the server's."""
    if value is None:
        return None if settings.max_ram is None else str(settings.max_ram)
    try:
        asked = max_ram_from(str(value))
    except UsageError as exc:
        raise FieldError("max_ram", str(exc), 400) from None
    if settings.max_ram is not None and asked > settings.max_ram:
        raise FieldError("max_ram", f"--max-ram {format_size(asked)}: the server's whole budget is"
                         f" {format_size(settings.max_ram)} (serve --max-ram); ask for that or less", 400)
    return str(value)


def _pipeline(name: str | None, settings: ServerSettings) -> str | None:
    if name is None:
        return None
    if name not in settings.pipelines:
        known = ", ".join(sorted(settings.pipelines)) or "none (start the server with --pipeline FILE)"
        raise FieldError("pipeline", f"pipeline {name!r} is not one this server was started with; known: {known}", 400)
    return name


def _cores() -> int:
    return len(os.sched_getaffinity(0))
