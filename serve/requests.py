"""What an HTTP client may ask for, checked by the request schema the command line is built from.

Responsible for: the request bodies (`VideoRequest`: the schema `ipc.request.ShortRequest` plus the
run-level budget, ceilings and pipeline, and MoneyPrinterTurbo's names; `ResumeRequest`;
short-video-maker's), MoneyPrinterTurbo's fields mapped onto ours, and planning the run through
`runner.options`, each refusal a `FieldError` naming the request field it is about (the schema's
`RequestError` carries it; nothing is read back out of a message). It never starts a run:
`serve.jobs` does.
"""

from __future__ import annotations

import argparse
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from aishorts.ipc.request import FIELDS, RequestError, ShortRequest, check_fields, in_words, kokoro_language, request_from
from aishorts.ipc.sizes import format_size
from aishorts.runner.cli import build_parser
from aishorts.runner.errors import UsageError
from aishorts.runner.options import limits_and_pipeline, max_ram_from, run_options
from aishorts.runner.run import RunOptions
from aishorts.ipc.languages import voice_for_azure


class FieldError(Exception):
    """A request the server refuses: which field, why, and the HTTP status (400 or 422; 404 for no such task)."""

    def __init__(self, field: str | None, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.field = field
        self.reason = reason
        self.status = status


class VideoRequest(ShortRequest, kw_only=True):
    """`POST /api/v1/videos`: the request schema's fields (`ipc.request.ShortRequest`; `script` is the narration
    text itself), the run's budget and ceilings, plus MoneyPrinterTurbo's names where they map. Names outside it (its
    fields with no counterpart here, such as `video_concat_mode` or `n_threads`, and those of its newer versions) are
    accepted and listed as ignored (`decode(..., unknown=[...])`), as MoneyPrinterTurbo ignores names it lacks."""

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
    video_count: int | None = None
    """How many videos of the request (1 to `MAX_VIDEOS`), each its own run with its own seed, in one task."""
    video_terms: Any = None
    """B-roll search terms: a list, or one string of them separated by commas (as `broll_term`)."""
    # MoneyPrinterTurbo's names as loosely typed as its clients send them: `_merge_mpt` maps each onto our field
    video_source: Any = None
    video_materials: Any = None
    bgm_file: Any = None
    bgm_volume: Any = None
    subtitle_enabled: Any = None
    subtitle_position: Any = None
    font_size: Any = None
    text_fore_color: Any = None
    stroke_color: Any = None
    stroke_width: Any = None
    custom_position: float | None = None
    """With `subtitle_position` "custom": where the captions sit, a percentage of the height from the top."""
    # (`voice_volume` is our own field's name too)


class TermsRequest(VideoRequest, kw_only=True):
    """`POST /api/v1/terms` (MoneyPrinterTurbo's): a subject and/or a script; how many search terms to give back."""

    amount: int = 5


class ResumeRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """`POST /api/v1/tasks/{id}/resume`: optionally new ceilings for some stages and a new budget."""

    limits: dict[str, str | int] = {}
    max_ram: str | int | None = None


class SvmScene(msgspec.Struct, kw_only=True):
    text: str
    searchTerms: list[str] = []


class SvmConfig(msgspec.Struct, kw_only=True):
    """short-video-maker's render config: its voices are Kokoro's, as ours; its orientation, music level and caption
    position map onto ours. Its other names (`music`, `paddingBack`, `captionBackgroundColor`) have no counterpart
    here and are accepted and left unused, as a Struct without `forbid_unknown_fields` leaves them."""

    voice: str | None = None
    musicVolume: str | None = None
    orientation: str | None = None
    captionPosition: str | None = None


class ShortVideoRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """short-video-maker's `POST /api/short-video`: its scenes' text becomes the script."""

    scenes: list[SvmScene]
    config: SvmConfig = msgspec.field(default_factory=SvmConfig)


SVM_ORIENTATIONS = {"portrait": "9:16", "landscape": "16:9"}
SVM_MUSIC_VOLUMES = {"muted": 0.0, "low": 0.08, "medium": 0.16, "high": 0.32}
"""short-video-maker's music levels as our `music_volume` (ours: medium is our default level, -16 dB; each step
6 dB apart)."""
SVM_CAPTION_POSITIONS = ("top", "center", "bottom")


def video_from_short_video_maker(request: ShortVideoRequest) -> VideoRequest:
    if not request.scenes:
        raise FieldError("scenes", "scenes: give at least one scene with its text", 422)
    config = request.config
    for name, value, allowed in (("orientation", config.orientation, SVM_ORIENTATIONS),
                                 ("musicVolume", config.musicVolume, SVM_MUSIC_VOLUMES),
                                 ("captionPosition", config.captionPosition, SVM_CAPTION_POSITIONS)):
        if value is not None and value not in allowed:
            raise FieldError("config", f"{name} {value!r}: use {', '.join(allowed)}", 422)
    script = " ".join(scene.text.strip() for scene in request.scenes)
    level = SVM_MUSIC_VOLUMES.get(config.musicVolume) if config.musicVolume is not None else None
    return VideoRequest(script=script, voice=config.voice, music=None if level is None else level > 0,
                        music_volume=level or None, aspect=SVM_ORIENTATIONS.get(config.orientation),
                        caption_position=config.captionPosition)


MPT_ALIASES = {"video_subject": "topic", "video_script": "script", "voice_rate": "speed", "video_aspect": "aspect",
               "bgm_volume": "music_volume", "bgm_file": "music_file", "subtitle_enabled": "captions",
               "font_size": "caption_size", "text_fore_color": "caption_color", "stroke_color": "caption_stroke_color",
               "stroke_width": "caption_stroke_width"}
"""MoneyPrinterTurbo's names for our fields, where the value means the same."""
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
    until: str | None = None
    more_videos: list[RunOptions] = field(default_factory=list)
    """The runs of videos 2, 3... of the task (MoneyPrinterTurbo's `video_count`), each with its own seed."""


def decode(body: bytes, kind: type, required: bool = False, unknown: list[str] | None = None):
    """The request body as `kind`, each field checked by its type in the schema; FieldError naming the field.

    An optional body may be absent (no bytes at all: every field its default); a body of only whitespace, or none
    where one is `required`, is a 400. Given an `unknown` list, names `kind` lacks are put in it rather than refused
    (MoneyPrinterTurbo's clients send fields of newer versions of it).
    """
    if not body and not required:
        return kind()
    if not body.strip():
        raise FieldError(None, "the request needs a JSON object as its body; it was empty", 400)
    try:
        values = msgspec.json.decode(body)
    except msgspec.DecodeError as exc:
        raise FieldError(None, f"the body is not valid JSON: {exc}", 400) from None
    if not isinstance(values, dict):
        raise FieldError(None, "the body is not a JSON object", 422)
    if unknown is not None:
        known = {f.name for f in msgspec.structs.fields(kind)}
        unknown.extend(name for name in values if name not in known)
        values = {name: value for name, value in values.items() if name in known}
    try:
        checked = check_fields(values, kind)
        missing = [f.name for f in msgspec.structs.fields(kind) if f.required and f.name not in checked]
        if missing:
            raise RequestError(missing[0], "required, and missing", "type")
    except RequestError as exc:
        raise http_error(exc, values.get(exc.field)) from None
    return kind(**checked)


def http_error(exc: RequestError, given: Any = None, name: str | None = None) -> FieldError:
    """A schema refusal as HTTP says it: the field, 422 for a wrong type or name, 400 for a value not allowed."""
    name = name or exc.field
    shown = given if isinstance(given, (int, float, str)) and name != "script" else None
    return FieldError(name, in_words(exc, name, shown), 422 if exc.kind in ("type", "unknown") else 400)


def plan_video(request: VideoRequest, settings: ServerSettings, until: str | None = None) -> Planned:
    """The run a `POST /api/v1/videos` asks for, checked as the CLI checks it; FieldError otherwise.

    `until` names the last stage to run (MoneyPrinterTurbo's script, terms, audio and subtitle endpoints stop early).
    """
    short, ignored, named = _merge_mpt(request)
    limits = {stage: str(size) for stage, size in request.limits.items()}
    max_ram = _max_ram_text(request.max_ram, settings)
    pipeline = _pipeline(request.pipeline, settings)
    try:
        opts = _checked_options(short, limits, max_ram, pipeline, settings, run_dir=None, until=until)
    except RequestError as exc:
        field = named.get(exc.field, exc.field)
        raise http_error(exc, getattr(request, field, None), field) from None
    if not (short.topic or short.script or short.category):  # MoneyPrinterTurbo's 400; never a random-topic job
        raise FieldError("video_subject", "video_subject is required: give the short's subject (or `topic`, a"
                         " `category`, or the narration itself as `script`/`video_script`)", 400)
    more_videos = _more_videos(request, short, opts, limits, max_ram, pipeline, settings, until, ignored)
    return Planned(opts=opts, limits=limits, max_ram=max_ram, pipeline=pipeline, ignored=ignored, until=until,
                   more_videos=more_videos)


MAX_VIDEOS = 5
"""The most videos one task makes (MoneyPrinterTurbo's `video_count`; its page offers 1 to 5, as ours does)."""


def _more_videos(request: VideoRequest, short: ShortRequest, first: RunOptions, limits: dict[str, str],
                 max_ram: str | None, pipeline: str | None, settings: ServerSettings, until: str | None,
                 ignored: list[str]) -> list[RunOptions]:
    """The runs of the task's videos after the first: the same request, each with the next seed after the first's
    (a topic's script, and so its b-roll, differ). The narration-only endpoints make one narration (`ignored`)."""
    count = 1 if request.video_count is None else request.video_count
    if not 1 <= count <= MAX_VIDEOS:
        raise FieldError("video_count", f"video_count {count}: give 1 to {MAX_VIDEOS} videos", 400)
    if count > 1 and until is not None:
        ignored.append("video_count")
        return []
    seed = first.params.script.llm.seed
    return [_checked_options(msgspec.structs.replace(short, seed=seed + number), limits, max_ram, pipeline, settings,
                             run_dir=None, until=until) for number in range(1, count)]


def plan_resume(run_dir: Path, limits: dict[str, str], max_ram: str | None, pipeline: str | None,
                settings: ServerSettings, llm: str | None = None, until: str | None = None) -> RunOptions:
    """The options that resume `run_dir` (its run.json holds the rest), as `--run-dir DIR --limit ...` would."""
    try:
        # the online backend the request asked for: never taken from run.json alone
        return _checked_options(ShortRequest(llm=llm), limits, _max_ram_text(max_ram, settings), pipeline, settings,
                                run_dir=run_dir, until=until)
    except RequestError as exc:
        raise http_error(exc) from None


def _checked_options(request: ShortRequest, limits: dict[str, str], max_ram_text: str | None, pipeline: str | None,
                     settings: ServerSettings, run_dir: Path | None, until: str | None = None) -> RunOptions:
    args = _run_args(limits, max_ram_text, pipeline, settings)
    try:
        stage_limits, stages = limits_and_pipeline(args)
    except UsageError as exc:
        raise FieldError("limits", str(exc), 400) from None
    stages = _up_to(stages, until)
    max_ram = max_ram_from(max_ram_text) if max_ram_text is not None else None
    try:
        opts = run_options(args, request, stage_limits, stages, max_ram, run_dir=run_dir or _placeholder_dir(settings))
    except UsageError as exc:
        raise FieldError(None, str(exc), 400) from None
    try:
        _ = opts.ceilings  # a stage that cannot fit the budget is refused now, as the CLI refuses it before starting
    except UsageError as exc:
        raise FieldError("max_ram", str(exc), 400) from None
    if settings.jobs > 1:
        opts.threads = max(1, _cores() // settings.jobs)
    return opts


def _up_to(stages: tuple, until: str | None) -> tuple:
    """The pipeline's stages up to and including `until` (all of them without it)."""
    names = [spec.name for spec in stages]
    if until is None:
        return stages
    if until not in names:
        raise FieldError("pipeline", f"this endpoint needs the {until} stage, which the pipeline lacks"
                         f" (its stages: {', '.join(names)})", 400)
    return stages[: names.index(until) + 1]


def _placeholder_dir(settings: ServerSettings) -> Path:
    """A name that does not exist: the real directory is made (exclusively) only once the request passed."""
    return settings.runs_dir / ".not-yet-created"


def _run_args(limits: dict[str, str], max_ram: str | None, pipeline: str | None,
              settings: ServerSettings) -> argparse.Namespace:
    """The run-level options of the command line, at their defaults but for the request's ceilings and pipeline."""
    args = build_parser().parse_args([])
    args.limit = [f"{stage}={size}" for stage, size in limits.items()]
    args.max_ram = max_ram
    args.pipeline = settings.pipelines[pipeline] if pipeline is not None else None
    return args


def _merge_mpt(request: VideoRequest) -> tuple[ShortRequest, list[str], dict[str, str]]:
    """Our request with MoneyPrinterTurbo's fields folded in, checked by the schema; the names of MPT fields with no
    counterpart here; and for each of our fields set from an MPT field, that field's name (for messages)."""
    values = {name: getattr(request, name) for name in FIELDS}
    named: dict[str, str] = {}
    for theirs, ours in MPT_ALIASES.items():
        value = getattr(request, theirs)
        if value is None or value == "":
            continue
        if values[ours] not in (None, value):
            raise FieldError(theirs, f"{theirs} and {ours} say different things; give one of them", 400)
        values[ours], named[ours] = value, theirs
    ignored = _mpt_video_source(request, values, named)
    if request.video_language:
        try:
            their_language = kokoro_language(request.video_language)
        except RequestError as exc:
            raise http_error(exc, request.video_language, "video_language") from None
        if values["language"] not in (None, their_language):
            raise FieldError("video_language", "video_language and language say different things; give one", 400)
        values["language"], named["language"] = request.video_language, "video_language"
    if request.voice_name:
        if _AZURE_VOICE.match(request.voice_name):
            kokoro = voice_for_azure(request.voice_name)  # its Kokoro namesake, or a male voice for a male one
            if kokoro is None or request.voice is not None:
                ignored.append("voice_name")  # narration uses `voice`, or the language's own Kokoro voice
            else:
                values["voice"], named["voice"] = kokoro, "voice_name"
        else:
            values["voice"], named["voice"] = request.voice_name, "voice_name"
    if request.bgm_type is not None:
        kind = request.bgm_type.lower()
        if kind not in ("", "none", "random", "custom"):
            raise FieldError("bgm_type", f"bgm_type {request.bgm_type!r}: use \"random\" (music), \"custom\" (with"
                             " bgm_file) or \"\" (none)", 422)
        if kind == "custom" and not values["music_file"]:
            raise FieldError("bgm_type", "bgm_type \"custom\" needs bgm_file: the path of your track (or upload it:"
                             " POST /api/v1/uploads)", 400)
        values["music"] = kind in ("random", "custom")
    ignored += _mpt_subtitle_position(request, values, named)
    _mpt_video_terms(request, values, named)
    try:
        return request_from(values), ignored, named
    except RequestError as exc:
        field = named.get(exc.field, exc.field)
        raise http_error(exc, getattr(request, field, None), field) from None


MPT_CUSTOM_POSITION = 70.0
"""MoneyPrinterTurbo's `custom_position` when a "custom" `subtitle_position` comes without one (its default)."""


def _mpt_subtitle_position(request: VideoRequest, values: dict, named: dict[str, str]) -> list[str]:
    """MoneyPrinterTurbo's `subtitle_position` (top, center, bottom) as our caption position, and its `custom` with
    `custom_position` (a percentage of the height from the top) as our `caption_y`; `custom_position` without
    "custom" is unused, as there, and listed as ignored."""
    position = str(request.subtitle_position or "").strip().lower()
    unused = ["custom_position"] if request.custom_position is not None and position != "custom" else []
    if not position:
        return unused
    if position == "custom":
        height = MPT_CUSTOM_POSITION if request.custom_position is None else request.custom_position
        if values["caption_y"] not in (None, height):
            raise FieldError("custom_position", "custom_position and caption_y say different things; give one", 400)
        values["caption_y"], named["caption_y"] = height, "custom_position"
        return unused
    if values["caption_position"] not in (None, position):
        raise FieldError("subtitle_position", "subtitle_position and caption_position say different things; give one",
                         400)
    values["caption_position"], named["caption_position"] = position, "subtitle_position"
    return unused


def _mpt_video_terms(request: VideoRequest, values: dict, named: dict[str, str]) -> None:
    """MoneyPrinterTurbo's `video_terms` (a list, or one string of terms separated by commas) as our `broll_term`."""
    terms = request.video_terms
    if isinstance(terms, str):
        terms = re.split(r"[,，、]", terms)
    if terms is None or not isinstance(terms, list) or not all(isinstance(term, str) for term in terms):
        if terms is not None:
            raise FieldError("video_terms", "video_terms: give a list of search terms, or one string of them"
                             " separated by commas", 422)
        return
    terms = [term.strip() for term in terms if term.strip()]
    if not terms:
        return
    if values["broll_term"] not in (None, terms):
        raise FieldError("video_terms", "video_terms and broll_term say different things; give one of them", 400)
    values["broll_term"], named["broll_term"] = terms, "video_terms"


MPT_VIDEO_SOURCES = ("pexels", "pixabay", "local")


def _mpt_video_source(request: VideoRequest, values: dict, named: dict[str, str]) -> list[str]:
    """MoneyPrinterTurbo's `video_source` as our b-roll source, and its `video_materials` ({provider, url, duration})
    as our clip URLs (http(s) ones) or folder (local files, all in one folder); the fields left unused."""
    source = str(request.video_source or "").strip().lower()
    if source and source not in MPT_VIDEO_SOURCES:
        raise FieldError("video_source", f"video_source {source!r}: use {', '.join(MPT_VIDEO_SOURCES)}", 400)
    if source in ("pexels", "pixabay") and values["broll"] is None:
        values["broll"], named["broll"] = source, "video_source"
    urls, files = _mpt_materials(request.video_materials)
    if not urls and not files:
        return ["video_materials"] * (request.video_materials is not None) + ["video_source"] * (source == "local")
    if urls and values["broll_url"] is None:
        values["broll_url"], named["broll_url"] = urls, "video_materials"
    if files and values["broll_dir"] is None:
        folders = {str(Path(f).expanduser().parent) for f in files}
        if len(folders) > 1:
            raise FieldError("video_materials", "local video_materials must lie in one folder (it is used as"
                             f" broll_dir); they are in {len(folders)}: {', '.join(sorted(folders)[:3])}", 400)
        values["broll_dir"], named["broll_dir"] = folders.pop(), "video_materials"
    if source == "local" or values["broll"] is None:
        values["broll"] = "local" if files else "urls"
        named["broll"] = "video_source" if source == "local" else "video_materials"
    return []


def _mpt_materials(materials: object) -> tuple[list[str], list[str]]:
    """The http(s) URLs and the local paths named in MoneyPrinterTurbo's `video_materials`."""
    if materials is None:
        return [], []
    if not isinstance(materials, list) or not all(isinstance(m, dict) for m in materials):
        raise FieldError("video_materials", "video_materials: a list of {provider, url, duration}", 422)
    urls = [str(m.get("url") or "").strip() for m in materials]
    web = [u for u in urls if u.lower().startswith(("http://", "https://"))]
    return web, [u for u in urls if u and u not in web]


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
