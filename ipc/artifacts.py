"""The typed artifacts that stages write and read, one Struct per stage output.

Each artifact is JSON on disk with a `kind` tag and a schema `version`; bump
`schema_version` on a class whenever its fields change meaning, so old files
are refused with a clear message instead of being misread. Payload files
(audio, video, images) are referenced by paths relative to the run directory
(see `ipc.files.resolve_in_run`). Times are seconds from the start of the
narration.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

import msgspec
import msgspec.inspect

from aishorts.ipc.languages import join_words

RUN_PATH_PATTERN = r"^(?!/)(?!.*(?:^|/)\.\.(?:/|$))[^\x00\\]+$"
RunPath = Annotated[
    str,
    msgspec.Meta(
        pattern=RUN_PATH_PATTERN,
        description="a payload path relative to the run directory, never absolute, never through '..'",
    ),
]


class Artifact(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, tag_field="kind"):
    """Base of every stage output: carries the schema version."""

    kind_name: ClassVar[str] = ""
    schema_version: ClassVar[int] = 1
    version: int = 0

    def __post_init__(self) -> None:
        self.version = type(self).schema_version


class Theme(Artifact, tag="theme"):
    kind_name: ClassVar[str] = "theme"
    topic: str
    angle: str
    keywords: list[str]
    category: str | None = None
    backend: str = "user"
    backend_reason: str = ""
    """Why that model wrote it (e.g. `--llm auto` found Ollama; the strongest local model that fits)."""


class SourceRef(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A text a script was written from, and what publishing the short owes it."""

    title: str
    origin: str
    """Its URL, or the file's name."""
    licence: str = ""
    credit: str = ""


class SentenceSupport(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """How one sentence of a grounded script stands against its sources."""

    text: str
    part: Literal["hook", "body", "cta"]
    supported: bool | None = None
    """None: not checked (the call to action states no fact)."""
    share: float = 0.0
    """The share of its content words found in the passage it rests on."""
    source: int = -1
    """Index into `Script.sources` of that passage's source (-1: none)."""
    passage: str = ""
    missing_numbers: list[str] = []
    """Numbers it states that no source does."""
    how: Literal["written", "rewritten", "from_source", "unchecked"] = "written"
    similarity: float | None = None
    """Cosine of its MiniLM vector and that passage's (None: checked by words only)."""
    novel_words: list[str] = []
    """Its content words (cut to five letters) that no passage uses."""


class Script(Artifact, tag="script"):
    kind_name: ClassVar[str] = "script"
    title: str
    hook: str
    body: list[str]
    cta: str
    broll_queries: list[str]
    language: str = "en-us"
    backend: str = "user"
    backend_reason: str = ""
    """Why that model wrote it (e.g. `--llm auto` found Ollama; the strongest local model that fits)."""
    attempts: int = 1
    fallbacks: list[str] = []
    """The rungs of the script stage's fallback ladder this script needed (empty: the model's own, as written)."""
    grounding: str = ""
    """"grounded in N sources", or "not grounded: facts unchecked" and why; empty for the user's own script."""
    sources: list[SourceRef] = []
    support: list[SentenceSupport] = []
    """Per sentence, in reading order, when the script was checked against sources."""

    @property
    def sentences(self) -> list[str]:
        """The narration, sentence by sentence, in reading order."""
        return [s for s in [self.hook, *self.body, self.cta] if s.strip()]

    @property
    def word_count(self) -> int:
        return sum(len(s.split()) for s in self.sentences)


class WordSpan(msgspec.Struct, forbid_unknown_fields=True):
    text: str
    start: float
    end: float


class SentenceSpan(msgspec.Struct, forbid_unknown_fields=True):
    index: int
    text: str
    start: float
    end: float
    words: list[WordSpan]


class Narration(Artifact, tag="narration"):
    kind_name: ClassVar[str] = "narration"
    wav: RunPath
    sample_rate: int
    duration_s: float
    sentences: list[SentenceSpan]
    voice: str
    language: str
    speed: float
    backend: str
    device: str = "cpu"


class Credit(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """One picture shown in a visual, and what publishing it requires."""

    title: str
    source: str
    file: str
    licence: str
    attribution: str = ""


class Candidate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    id: str
    media: Literal["video", "still"]
    path: RunPath
    title: str
    description: str = ""
    tags: list[str] = []
    query: str = ""
    duration_s: float | None = None
    width: int = 0
    height: int = 0
    source: str = ""
    origin: str = ""
    thumbnail: RunPath | None = None
    credits: list[Credit] = []
    """The illustrations drawn into it (the illustrated library), each with its licence."""


class SkippedSource(msgspec.Struct, forbid_unknown_fields=True):
    ref: str
    reason: str


class Candidates(Artifact, tag="candidates"):
    kind_name: ClassVar[str] = "candidates"
    source: str
    source_reason: str
    items: list[Candidate]
    skipped: list[SkippedSource] = []


class RankedCandidate(msgspec.Struct, forbid_unknown_fields=True):
    candidate_id: str
    score: float
    offset_s: float = 0.0
    description: str = ""
    """What the candidate shows (its description, else its title), so the match artifact reads on its own."""


class SentenceMatch(msgspec.Struct, forbid_unknown_fields=True):
    sentence_index: int
    text: str
    ranked: list[RankedCandidate]
    chosen_id: str
    offset_s: float = 0.0


class Matches(Artifact, tag="matches"):
    kind_name: ClassVar[str] = "matches"
    scorer: str
    scorer_reason: str
    model: str
    device: str
    sentences: list[SentenceMatch]


class Segment(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    start: float
    end: float
    candidate_id: str
    path: RunPath
    media: Literal["video", "still"]
    source_offset_s: float = 0.0
    motion: Literal["none", "zoom_in", "zoom_out", "pan_left", "pan_right"] = "none"
    transition_s: float = 0.0
    credits: list[Credit] = []
    """The candidate's credits, carried to the render stage's credits.txt."""


class Caption(msgspec.Struct, forbid_unknown_fields=True):
    start: float
    end: float
    words: list[WordSpan]

    @property
    def text(self) -> str:
        """The words as their script writes them: spaced, or run together (Chinese, Japanese)."""
        return join_words([w.text for w in self.words])


class MusicBed(msgspec.Struct, forbid_unknown_fields=True):
    path: RunPath
    title: str
    gain_db: float
    duck_db: float


class CaptionLook(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    """How the captions look: burnt in or not, where (`margin_v` from that edge), their size, colours and outline."""

    show: bool = True
    position: Literal["bottom", "center", "top"] = "bottom"
    y: float | None = None
    """Instead of `position`: percent of the frame's height from the top (MoneyPrinterTurbo's custom_position); a
    one-line caption's top at that share of the height the line leaves."""
    size: int = 0
    """Line height in pixels of the frame; 0: by the frame."""
    color: str = "#FFFFFF"
    stroke_color: str = "#000000"
    stroke_width: float | None = None
    """Outline in pixels; None: by the size."""


Pixels = Annotated[int, msgspec.Meta(ge=16, le=8192, description="a frame dimension in pixels")]
FrameRate = Annotated[int, msgspec.Meta(ge=1, le=240, description="frames per second")]


class Timeline(Artifact, tag="timeline"):
    kind_name: ClassVar[str] = "timeline"
    width: Pixels
    height: Pixels
    fps: FrameRate
    duration_s: Annotated[float, msgspec.Meta(gt=0)]
    narration_wav: RunPath
    narration_duration_s: float
    segments: list[Segment]
    captions: list[Caption]
    music: MusicBed | None
    platform: str
    max_duration_s: float
    video_bitrate: str
    audio_bitrate: str
    caption_margin_v: int = 0
    """The captions' distance from the edge they sit at (the bottom, or the top: `caption_look.position`)."""
    caption_look: CaptionLook = msgspec.field(default_factory=CaptionLook)
    narration_gain_db: float = 0.0


class Render(Artifact, tag="render"):
    kind_name: ClassVar[str] = "render"
    video: RunPath
    srt: RunPath
    ass: RunPath
    thumbnail: RunPath
    duration_s: float
    width: int
    height: int
    fps: float
    has_audio: bool
    renderer: str
    size_bytes: int
    credits: RunPath | None = None
    """credits.txt: the illustrations shown and their licences, when any is shown."""


class Balloon(Artifact, tag="balloon"):
    """Output of the developers' balloon stage (tools/balloon.py), used to cross ceilings on purpose."""

    kind_name: ClassVar[str] = "balloon"
    allocated_mb: int
    child_mb: int
    seconds: float
    padding: str = ""
    payload: RunPath | None = None


ARTIFACT_TYPES: dict[str, type[Artifact]] = {cls.kind_name: cls for cls in Artifact.__subclasses__()}
"""Every artifact kind by its tag: a new `Artifact` subclass is known to the runner and the harness at once."""


def payload_paths(artifact: msgspec.Struct) -> list[str]:
    """Every payload an artifact names (each field typed `RunPath`, at any depth), in order."""
    return list(_paths(artifact, msgspec.inspect.type_info(type(artifact))))


def _paths(value: object, info: msgspec.inspect.Type):
    if isinstance(info, msgspec.inspect.Metadata):
        if isinstance(info.type, msgspec.inspect.StrType) and info.type.pattern == RUN_PATH_PATTERN:
            yield value
        return
    if isinstance(info, msgspec.inspect.StructType):
        for field in info.fields:
            yield from _paths(getattr(value, field.name), field.type)
    elif isinstance(info, msgspec.inspect.ListType):
        for item in value:
            yield from _paths(item, info.item_type)
    elif isinstance(info, msgspec.inspect.UnionType) and value is not None:
        for option in info.types:
            if not isinstance(option, msgspec.inspect.NoneType):
                yield from _paths(value, option)
