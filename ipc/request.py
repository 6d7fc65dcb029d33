"""The one request schema: every option a user sets for one short, with its help, its choices and its limits.

Responsible for: `ShortRequest` (one field per user option: its type, its help text and constraints
in `msgspec.Meta`, and in `Meta.extra` the stage parameters it sets and how the command line and
batch files spell it), the languages the narrator speaks, and `request_from`, which checks values
given by name and raises one `RequestError` naming the field. Every front end is derived from this
module: the CLI's flags (`runner.cli`), batch-file columns (`runner.batchfile`), the HTTP body
(`serve.requests`) and the web form (the JSON schema `serve` hands the page). Each front end says a
`RequestError` in its own words (`--flag`, a row and column, a field). Not here: run-level options
(budget, ceilings, run directory, jobs), reading files, and applying a request to a run's
parameters (`runner.options`).

Adding an option: one field here, with `params` naming the stage parameter it sets.
Light: msgspec and the standard library only.
"""

from __future__ import annotations

import functools
import re
import types
from typing import Annotated, Any, Literal, Union, get_args, get_origin, get_type_hints

import msgspec

from aishorts.ipc.languages import LANGUAGES as LANGUAGE_TABLE
from aishorts.ipc.languages import LanguageError
from aishorts.ipc.languages import normalise as normalise_language
from aishorts.ipc.params import Aspect, BrollParams, CaptionPosition, Category, LlmParams, MatchParams, Platform, RenderParams, TtsParams, X264Preset
from aishorts.ipc.text import MAX_TOPIC_CHARS, TextError, looks_binary, tidy_topic

Language = Literal[tuple(LANGUAGE_TABLE)]  # type: ignore[valid-type]  # the one table, as a type the schema carries
LANGUAGES: tuple[str, ...] = get_args(Language)
"""Kokoro-82M v1.0's languages in Kokoro's spelling (`ipc.languages.LANGUAGES`)."""


# The backends' choices are the stage parameters' own Literals: a backend added there is offered everywhere.
LlmBackend = get_type_hints(LlmParams)["backend"]
TtsBackend = get_type_hints(TtsParams)["backend"]
BrollSource = get_type_hints(BrollParams)["source"]
Scorer = get_type_hints(MatchParams)["scorer"]
Renderer = get_type_hints(RenderParams)["renderer"]


def kokoro_language(text: str) -> str:
    """A language as users write it (`EN-US`, `pt_BR`, `zh-CN`, `en`) in Kokoro's spelling; RequestError listing the
    codes otherwise."""
    try:
        return normalise_language(text)
    except LanguageError as exc:  # "language 'de' is not one ...": the front end names the field and the value
        raise RequestError("language", re.sub(r"^language '.*?' is ", "", str(exc))) from None


def _meta(help: str, *, params: tuple[str, ...] = (), **extra: Any) -> dict:
    return dict(description=help, extra={"params": params, **extra})


class RequestError(ValueError):
    """A value the schema refuses: which field (by its schema name), why, and whether its type was wrong.

    `kind` is "type" when the value has the wrong type (a string for a number), "unknown" for a name
    the schema does not have, and "value" when the type is right but the value is not allowed; HTTP
    says 422 for the first two and 400 for the last.
    """

    def __init__(self, field: str, reason: str, kind: Literal["type", "value", "unknown"] = "value") -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason
        self.kind = kind


MAX_TERMS = 10
MAX_TERM_CHARS = 80
"""B-roll search terms the user gives: a few short phrases, as MoneyPrinterTurbo's `video_terms` are."""

COLOUR_PATTERN = r"^#?[0-9A-Fa-f]{6}$"
COLOUR_INVALID = "not a colour like #FFFFFF (#RRGGBB, hexadecimal)"


# `extra` keys, read by the front ends:
#   params: the PipelineParams fields it sets ("tts.speed"); runner.options applies them.
#   flag:   the command-line flag when it is not `--` + the name with dashes; for a bool, the flag sets the opposite
#           and `flag_help` says what it does.
#   file:   the CLI and batch files give a path to a file holding the text (HTTP gives the text itself).
#   folder: a folder path; batch files read it relative to their own folder.
#   path:   a file path (used, not read, by the front end); batch files read it relative to their own folder.
#   metavar: how the command line's help shows the value.
#   invalid: the reason given when `pattern` does not match.
class ShortRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, omit_defaults=True):
    """What one short should be: every field None (or empty) leaves the default, or on resume the saved value."""

    topic: Annotated[str, msgspec.Meta(max_length=MAX_TOPIC_CHARS, **_meta("the subject of the short, used as is"))] | None = None
    category: Annotated[Category, msgspec.Meta(**_meta("let the theme stage pick a topic (default: random)"))] | None = None
    script: Annotated[str, msgspec.Meta(**_meta("your own narration text (skips generation)", file=True,
                                                params=("script.script_text",)))] | None = None
    aspect: Annotated[Aspect, msgspec.Meta(**_meta(
        "the frame: 9:16 (vertical 1080x1920, default), 16:9 (landscape 1920x1080) or 1:1 (square 1080x1080);"
        " also portrait, landscape, square",
        params=("broll.aspect", "timeline.aspect")))] | None = None
    platform: Annotated[Platform, msgspec.Meta(**_meta("duration and bitrate preset (default shorts)",
                                                       params=("script.platform", "timeline.platform")))] | None = None
    language: Annotated[Language, msgspec.Meta(**_meta("narration language: en (en-us, default), en-gb, es, fr, hi, it, ja, pt (pt-br), zh (zh-cn), any case",
                                                       params=("script.language", "tts.language", "theme.language")))] | None = None
    voice: Annotated[str, msgspec.Meta(
        pattern=r"^[a-z]{2}_[a-z0-9]+$",
        **_meta("Kokoro voice (default: the language's native voice, e.g. af_heart for en-us, pf_dora for pt-br;"
                " `--voice list` shows them)", params=("tts.voice",),
                invalid="not a Kokoro voice name (like af_heart); `--voice list` shows them"))] | None = None
    speed: Annotated[float, msgspec.Meta(ge=0.5, le=2.0, **_meta("narration speed (default 1.0)",
                                                                 params=("tts.speed",)))] | None = None
    llm: Annotated[LlmBackend, msgspec.Meta(**_meta(
        "script backend (default auto: an API key in the environment, a local Ollama or llama.cpp server, else the"
        " strongest shipped local model that fits the memory budget)",
        params=("script.llm.backend", "theme.llm.backend")))] | None = None
    llm_url: Annotated[str, msgspec.Meta(**_meta("OpenAI-compatible base URL for --llm openai",
                                                 params=("script.llm.base_url", "theme.llm.base_url")))] | None = None
    llm_model: Annotated[str, msgspec.Meta(**_meta(
        "model name: for --llm openai, or a local model (Qwen2.5-Coder-1.5B-Instruct, SmolLM2-135M-Instruct)",
        params=("script.llm.model", "theme.llm.model")))] | None = None
    llm_key_env: Annotated[str, msgspec.Meta(**_meta(
        "environment variable holding the API key (default: OPENROUTER_API_KEY or OPENAI_API_KEY, each sent to its"
        " own provider only)",
        params=("script.llm.api_key_env", "theme.llm.api_key_env")))] | None = None
    source: Annotated[list[str], msgspec.Meta(**_meta(
        "a text the script retells and sources.txt cites (repeatable): .txt, .md, .html, .pdf, a Kiwix .zim archive"
        " (its articles on the topic), or an http(s) page", params=("script.sources", "theme.sources")))] | None = None
    wiki_url: Annotated[str, msgspec.Meta(**_meta(
        "with no --source, the MediaWiki the topic is looked up on (default auto: Wikipedia in the narration's"
        " language); off: none", params=("script.wiki_url", "theme.wiki_url")))] | None = None
    tts: Annotated[TtsBackend, msgspec.Meta(**_meta("narration backend (default onnx)",
                                                                   params=("tts.backend",)))] | None = None
    broll: Annotated[BrollSource, msgspec.Meta(**_meta(
        "b-roll source (default auto: your folder or URLs when given, else Pexels or Pixabay when PEXELS_API_KEY or"
        " PIXABAY_API_KEY is set, else YouTube when it answers, else the illustrated library)",
        params=("broll.source",)))] | None = None
    broll_dir: Annotated[str, msgspec.Meta(**_meta("folder of your clips and stills (--broll local)", folder=True,
                                                   params=("broll.local_dir",)))] | None = None
    broll_url: Annotated[list[str], msgspec.Meta(**_meta("a clip URL for --broll urls (repeatable)",
                                                         params=("broll.urls",)))] | None = None
    broll_term: Annotated[list[Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_TERM_CHARS)]], msgspec.Meta(
        max_length=MAX_TERMS, **_meta("what the footage should show, a search term for the b-roll (repeatable, at most"
                                      f" {MAX_TERMS}); default: the script's own", params=("script.broll_terms",)))] \
        | None = None
    scorer: Annotated[Scorer, msgspec.Meta(**_meta(
        "how visuals are matched to sentences", params=("match.scorer",)))] | None = None
    clip_model: Annotated[str, msgspec.Meta(**_meta("CLIP model name in the local cache, or a folder",
                                                    params=("match.clip_model",)))] | None = None
    renderer: Annotated[Renderer, msgspec.Meta(**_meta(
        "video renderer (default ffmpeg)", params=("render.renderer",)))] | None = None
    encoder_preset: Annotated[X264Preset, msgspec.Meta(**_meta(
        "x264 preset of the ffmpeg renderer: slower ones spend more CPU for a little quality (default quick: ultrafast"
        " with CABAC, deblocking and the 8x8 transform put back)",
        params=("render.preset",)))] | None = None
    music: Annotated[bool, msgspec.Meta(**_meta("background music (default on)", flag="--no-music",
                                                flag_help="no background music",
                                                params=("timeline.music",)))] | None = None
    music_volume: Annotated[float, msgspec.Meta(ge=0.0, le=1.0, **_meta(
        "background music level, 0 to 1 of the track's own before it ducks under the voice (default 0.16, -16 dB);"
        " 0: none", params=("timeline.music_volume",)))] | None = None
    music_file: Annotated[str, msgspec.Meta(**_meta(
        "your own music track (mp3, m4a, ogg, opus, wav, flac; up to 200 MB) instead of a bundled one", path=True,
        params=("timeline.music_file",)))] | None = None
    voice_volume: Annotated[float, msgspec.Meta(ge=0.0, le=5.0, **_meta(
        "narration level, a factor of the narrator's own (default 1.0)", params=("timeline.voice_volume",)))] | None = None
    captions: Annotated[bool, msgspec.Meta(**_meta("captions burnt into the picture (default on)", flag="--no-captions",
                                                   flag_help="no captions in the picture (captions.srt is still"
                                                             " written)", params=("timeline.captions",)))] | None = None
    caption_position: Annotated[CaptionPosition, msgspec.Meta(**_meta(
        "where the captions sit: bottom (default; above the apps' buttons), center or top",
        params=("timeline.caption_position",)))] | None = None
    caption_y: Annotated[float, msgspec.Meta(ge=0.0, le=100.0, **_meta(
        "where the captions sit instead, as a percentage of the frame's height from the top: 0 at the top edge, 50"
        " in the middle, 100 at the bottom edge (MoneyPrinterTurbo's custom_position)",
        params=("timeline.caption_y",)))] | None = None
    caption_size: Annotated[int, msgspec.Meta(ge=20, le=200, **_meta(
        "caption line height in pixels of the frame (default 72 on a 1080-pixel side)",
        params=("timeline.caption_size",)))] | None = None
    caption_color: Annotated[str, msgspec.Meta(pattern=COLOUR_PATTERN, **_meta(
        "caption text colour as #RRGGBB (default #FFFFFF); the spoken word is lit in gold",
        params=("timeline.caption_color",), invalid=COLOUR_INVALID, metavar="#RRGGBB"))] | None = None
    caption_stroke_color: Annotated[str, msgspec.Meta(pattern=COLOUR_PATTERN, **_meta(
        "caption outline colour as #RRGGBB (default #000000)", params=("timeline.caption_stroke_color",),
        invalid=COLOUR_INVALID, metavar="#RRGGBB"))] | None = None
    caption_stroke_width: Annotated[float, msgspec.Meta(ge=0.0, le=20.0, **_meta(
        "caption outline width in pixels, 0 for none (default: 0.07 of the caption size)",
        params=("timeline.caption_stroke_width",)))] | None = None
    seed: Annotated[int, msgspec.Meta(**_meta(
        "seed of the generated topic and script (default: a new one per run)",
        params=("theme.llm.seed", "script.llm.seed")))] | None = None


FIELDS: tuple[str, ...] = ShortRequest.__struct_fields__


class FieldInfo(msgspec.Struct, frozen=True):
    """One schema field as the front ends need it: its plain type, its choices and limits, its help."""

    name: str
    kind: type
    """str, int, float, bool or list (of str), for command-line flags; `object` for anything else."""
    meta: msgspec.Meta
    hint: Any
    """The type a value is converted to (a field with choices: str, its choices checked after)."""
    choices: tuple[str, ...] = ()

    @property
    def help(self) -> str:
        return self.meta.description or ""

    @property
    def extra(self) -> dict:
        return self.meta.extra or {}

    @property
    def flag(self) -> str:
        """The command-line flag; for a bool, the flag that turns it off (`--no-music`)."""
        return self.extra.get("flag") or "--" + self.name.replace("_", "-")


@functools.cache
def field_info(struct: type = ShortRequest) -> dict[str, FieldInfo]:
    """Each field of a request Struct, its Optional and Annotated layers taken apart."""
    hints = get_type_hints(struct, include_extras=True)
    return {name: _info(name, hints[name]) for name in struct.__struct_fields__}


def _info(name: str, hint: Any) -> FieldInfo:
    if get_origin(hint) in (Union, types.UnionType):
        hint = next(arg for arg in get_args(hint) if arg is not type(None))
    meta = msgspec.Meta()
    if get_origin(hint) is Annotated:
        hint, *metas = get_args(hint)
        meta = next((m for m in metas if isinstance(m, msgspec.Meta)), meta)
    if get_origin(hint) is Literal:
        return FieldInfo(name, str, meta, str, get_args(hint))
    if get_origin(hint) is list:
        return FieldInfo(name, list, meta, hint)
    return FieldInfo(name, hint if hint in (str, int, float, bool) else object, meta, hint)


ASPECT_NAMES = {"portrait": "9:16", "vertical": "9:16", "landscape": "16:9", "horizontal": "16:9", "square": "1:1"}


def frame_aspect(text: str) -> str:
    """An aspect as people write it (`16:9`, `landscape`, ` Square `) in the schema's spelling."""
    text = text.strip().lower()
    return ASPECT_NAMES.get(text, text)


NORMALISE = {"language": kokoro_language, "aspect": frame_aspect}
"""Spellings a field accepts besides its own choices, turned into them before they are checked."""


def request_from(values: dict[str, Any], *, strict: bool = True) -> ShortRequest:
    """A ShortRequest from values by field name (None: not given); RequestError at the first bad one.

    `strict=False` reads text as numbers and booleans ("1.2", "true"), for CSV cells.
    """
    return ShortRequest(**check_fields(values, ShortRequest, strict=strict))


def check_fields(values: dict[str, Any], struct: type, *, strict: bool = True) -> dict[str, Any]:
    """The values of the named fields of `struct`, each converted to its type and checked; None ones dropped."""
    infos = field_info(struct)
    checked: dict[str, Any] = {}
    for name, value in values.items():
        if name not in infos:
            raise RequestError(name, "unknown field", "unknown")
        if value is not None:
            checked[name] = check_value(infos[name], value, strict=strict)
    return checked


def check_value(info: FieldInfo, value: Any, *, strict: bool = True) -> Any:
    try:
        value = msgspec.convert(value, info.hint, strict=strict)
    except msgspec.ValidationError as exc:
        raise RequestError(info.name, str(exc), "type") from None
    if info.name in NORMALISE:
        value = NORMALISE[info.name](value)
    if info.choices and value not in info.choices:
        raise RequestError(info.name, f"invalid choice (choose from {', '.join(info.choices)})")
    _check_limits(info, value)
    special = _CHECKS.get(info.name)
    return special(value) if special else value


def _check_limits(info: FieldInfo, value: Any) -> None:
    meta = info.meta
    low, high = meta.ge, meta.le
    if (low is not None and value < low) or (high is not None and value > high):
        raise RequestError(info.name, f"use a value between {low} and {high}")
    if meta.pattern is not None and not re.search(meta.pattern, value):
        raise RequestError(info.name, info.extra.get("invalid", f"not like {meta.pattern}"))


def _topic(text: str) -> str:
    try:
        return tidy_topic(text)
    except TextError as exc:
        raise RequestError("topic", str(exc)) from None


def _script(text: str) -> str:
    """Narration text: refused when empty, binary, or without a word to speak."""
    if not text.strip():
        raise RequestError("script", "it is empty; give the sentences to speak")
    if looks_binary(text):
        raise RequestError("script", "not readable text (control characters or binary); give plain UTF-8 text")
    if not re.search(r"[^\W\d_]", text):
        raise RequestError("script", "it has no words to narrate; give the sentences to speak")
    return text.strip()


def _not_blank(name: str):
    def check(text: str) -> str:
        if not text.strip():
            raise RequestError(name, "empty; leave the field out instead")
        return text
    return check


def _wiki_url(value: str) -> str:
    if value.lower() in ("off", "auto"):
        return value.lower()
    if value.startswith(("http://", "https://")):
        return value
    raise RequestError("wiki_url", "give a wiki's http(s) address, auto, or off")


def _colour(text: str) -> str:
    return "#" + text.removeprefix("#").upper()


_CHECKS = {"caption_color": _colour, "caption_stroke_color": _colour, "music_file": _not_blank("music_file"),
           "wiki_url": _wiki_url, "topic": _topic, "script": _script, "voice": _not_blank("voice"), "broll_dir": _not_blank("broll_dir")}


def in_words(exc: RequestError, name: str, given: Any = None) -> str:
    """A refusal as a front end says it: its own name for the field, what the user gave (when short), the reason."""
    shown = given is not None and not isinstance(given, (bool, list)) and len(str(given)) <= 80
    return f"{name} {given}: {exc.reason}" if shown else f"{name}: {exc.reason}"


def json_schema() -> dict:
    """The request's JSON schema, for the web form and API clients: types, choices, limits and help of each field."""
    return msgspec.json.schema(ShortRequest)
