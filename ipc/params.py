"""What each stage is asked to do: one typed parameter Struct per stage.

The runner fills these from the command line and config; each stage process
receives only its own Struct, and the resume hash covers exactly that Struct,
so changing the renderer does not redo the narration.
"""

from __future__ import annotations

from typing import Literal, get_args, get_type_hints

import msgspec

Category = Literal[
    "science", "history", "nature", "technology", "culture",
    "space", "animals", "psychology", "geography", "food",
]
CATEGORIES: tuple[str, ...] = get_args(Category)
Platform = Literal["shorts", "tiktok", "reels"]
Aspect = Literal["9:16", "16:9", "1:1"]
ASPECTS: tuple[str, ...] = get_args(Aspect)
FRAME_SIZES: dict[str, tuple[int, int]] = {"9:16": (1080, 1920), "16:9": (1920, 1080), "1:1": (1080, 1080)}
"""Width and height of the rendered video for each aspect."""
CaptionPosition = Literal["bottom", "center", "top"]


class PlatformPreset(msgspec.Struct, frozen=True):
    max_duration_s: float
    video_bitrate: str
    audio_bitrate: str


PLATFORMS: dict[Platform, PlatformPreset] = {
    "shorts": PlatformPreset(60.0, "8M", "192k"),
    "tiktok": PlatformPreset(60.0, "6M", "128k"),
    "reels": PlatformPreset(90.0, "5M", "128k"),
}


class LlmParams(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    backend: Literal["auto", "local", "openai"] = "auto"
    """auto: the user's own LLM if one is found (API key, Ollama, llama.cpp server), else the local model."""
    base_url: str = ""
    """An endpoint named with --llm-url; empty: the provider whose key is set (stages/llm/endpoints.py), each key
    sent only to the provider that issued it."""
    model: str = ""
    api_key_env: str = "OPENAI_API_KEY"
    timeout_s: float = 60.0
    max_tokens: int = 400
    temperature: float = 0.7
    seed: int = 0


class ThemeParams(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    topic: str | None = None
    category: Category | None = None
    llm: LlmParams = msgspec.field(default_factory=LlmParams)
    sources: list[str] = []
    """As the script's: with a category, the topic picked is one these sources support."""
    wiki_url: str = "auto"
    """As the script's: with a category and no sources, the topic picked is one this wiki has an article on."""
    language: str = "en-us"
    """The wiki's language when wiki_url is auto."""


class ScriptParams(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    script_text: str | None = None
    language: str = "en-us"
    platform: Platform = "shorts"
    min_words: int = 110
    max_words: int = 160
    max_attempts: int = 3
    llm: LlmParams = msgspec.field(default_factory=LlmParams)
    sources: list[str] = []
    """Files (absolute paths) and http(s) URLs the script is written from: text, Markdown, HTML, PDF, ZIM."""
    wiki_url: str = "auto"
    """With no sources: auto looks the topic up on Wikipedia in the script's language, off never, else that
    MediaWiki (its address or its api.php)."""
    broll_terms: list[str] = []
    """The user's b-roll search terms, first in the script's queries (topped up from its text when fewer than
    three); empty: the model's or the text's own."""


class TtsParams(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    backend: Literal["onnx", "kokoro"] = "onnx"
    voice: str = ""  # a Kokoro voice; empty: the language's own (stages/tts/voices.py), e.g. af_heart for en-us
    speed: float = 1.0
    language: str = "en-us"


class BrollParams(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    source: Literal["auto", "youtube", "urls", "local", "builtin", "stills", "pexels", "pixabay"] = "auto"
    """builtin: the illustrated library (the offline default); stills: scikit-image's sample photographs;
    pexels, pixabay: their stock videos, with the user's PEXELS_API_KEY or PIXABAY_API_KEY (stages/broll/stock.py)."""
    local_dir: str | None = None
    urls: list[str] = []
    max_items: int = 12
    per_query: int = 2
    max_clip_s: float = 60.0
    max_height: int = 1080
    max_filesize_mb: int = 80
    download_timeout_s: float = 120.0
    fill_gaps: bool = True
    """With local, urls or youtube: illustrated scenes for the sentences their visuals leave uncovered."""
    aspect: Aspect = "9:16"
    """The video's frame: illustrated scenes are drawn for it."""


class MatchParams(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    scorer: Literal["auto", "clip", "text"] = "auto"
    clip_model: str = "openai/clip-vit-base-patch32"
    frames_per_clip: int = 4


class TimelineParams(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    platform: Platform = "shorts"
    aspect: Aspect = "9:16"
    """The frame: 1080x1920, 1920x1080 or 1080x1080 (FRAME_SIZES)."""
    fps: int = 30
    min_segment_s: float = 1.5
    caption_max_words: int = 3
    music: bool = True
    music_mood: str | None = None
    music_volume: float | None = None
    """The music bed's level as a factor of its file's (0 to 1) before it ducks under the voice; None: -16 dB;
    0: no music."""
    music_file: str | None = None
    """The user's own track (an absolute path), copied into the run, instead of a bundled one."""
    voice_volume: float = 1.0
    """The narration's level as a factor of the tts stage's."""
    tail_s: float = 0.5
    max_segment_s: float = 6.0
    transition_s: float = 0.25
    captions: bool = True
    """Burn the captions into the picture (captions.srt and .ass are written either way)."""
    caption_position: CaptionPosition = "bottom"
    caption_y: float | None = None
    """Where the captions sit instead, as a percentage of the frame's height from the top (MoneyPrinterTurbo's
    custom_position): a one-line caption's top at that fraction of the height left over by the line; None: by
    caption_position."""
    caption_size: int = 0
    """The captions' line height in pixels of the frame; 0: by the frame (72 on 1080 wide)."""
    caption_color: str = "#FFFFFF"
    caption_stroke_color: str = "#000000"
    caption_stroke_width: float | None = None
    """The outline in pixels; None: by the size (7% of it)."""


X264Preset = Literal["quick", "ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower",
                     "veryslow"]
"""x264's presets, and `quick`: ultrafast with CABAC, deblocking, the 8x8 transform and light AQ put back
(stages/render/plan.py's X264_QUICK)."""
X264_PRESETS: tuple[str, ...] = get_args(X264Preset)


class RenderParams(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    renderer: Literal["ffmpeg", "moviepy"] = "ffmpeg"
    # superfast: on a 35.8 s short at 8 Mbit/s it spent 19 s of x264 CPU against veryfast's 36 s,
    # for 0.07 dB less luma PSNR (37.50 against 37.57) and SSIM 0.9814 against 0.9823.
    # quick: on the main command's 24.6 s short, 7.5-7.9 s of x264 CPU against superfast's 11.7-12.4 s,
    # PSNR 56.56 dB against 56.15, SSIM 0.99849 against 0.99870 (BENCHMARKS.md, "encoder").
    preset: X264Preset = "quick"
    threads: int = 0


class PipelineParams(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """All stage parameters of one run; `for_stage(name)` picks one stage's share."""

    theme: ThemeParams = msgspec.field(default_factory=ThemeParams)
    script: ScriptParams = msgspec.field(default_factory=ScriptParams)
    tts: TtsParams = msgspec.field(default_factory=TtsParams)
    broll: BrollParams = msgspec.field(default_factory=BrollParams)
    match: MatchParams = msgspec.field(default_factory=MatchParams)
    timeline: TimelineParams = msgspec.field(default_factory=TimelineParams)
    render: RenderParams = msgspec.field(default_factory=RenderParams)

    def for_stage(self, name: str) -> msgspec.Struct | None:
        return getattr(self, name, None) if name in self.__struct_fields__ else None


def choices(struct: type[msgspec.Struct], field: str) -> tuple[str, ...]:
    """The values a Literal field accepts, for command-line choices: the schema is the one list."""
    return get_args(get_type_hints(struct)[field])
