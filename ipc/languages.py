"""The languages Kokoro-82M v1.0 speaks: the codes people type, and what each language needs.

Responsible for: the one table of languages (Kokoro's code, the phonemiser
that feeds the model, the native default voice, whether words are written
with spaces between them, the script its captions need a font for);
turning what people type (`en`, `pt-BR`, `zh_CN`, `ja-jp`) into Kokoro's
code, or refusing it with the list; joining words the way the script writes
them, and how wide text is on screen; the Kokoro voice nearest an Azure voice
name (MoneyPrinterTurbo's `voice_name`). Light: stdlib only, so the CLI, the
web page and the stages can all import it.

Not responsible for phonemising or segmenting text (stages/tts/g2p.py), voice
files (stages/tts/voices.py) or fonts (stages/render/captions.py).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Language:
    code: str
    """Kokoro's spelling, as KPipeline takes it (en-us, fr-fr, pt-br, zh ...)."""
    name: str
    phonemiser: str
    """`espeak:<voice>` for espeak-ng through espeakng-loader, `misaki-ja` or `misaki-zh` for Kokoro's own G2P."""
    voice: str
    """The native default voice (kokoro-js's tables)."""
    voice_prefix: str
    """Kokoro voices of this language start with it (af_, am_ for en-us ...)."""
    spaced: bool
    """Words are separated by spaces; False: written without them (Chinese, Japanese)."""
    script: str
    """What the caption font must cover: latin, devanagari, cjk-jp or cjk-sc."""
    chars_per_minute: int = 0
    """For a language written without spaces: the characters a minute a script is timed by (0: words are counted)."""
    male_voice: str = ""
    """A male native voice, for requests that ask for one (kokoro-js has none for French)."""
    local_script: bool = False
    """The shipped local model (Qwen2.5-Coder-1.5B) writes scripts in it: measured passing the script checks over
    seeds (`python -m tools.bench_languages --scripts N`, BENCHMARKS.md). Other languages need a script of the
    user's or an online LLM."""


LANGUAGES: dict[str, Language] = {
    lang.code: lang
    for lang in (
        Language("en-us", "English (US)", "espeak:en-us", "af_heart", "a", True, "latin", male_voice="am_michael",
                 local_script=True),
        Language("en-gb", "English (UK)", "espeak:en-gb", "bf_emma", "b", True, "latin", male_voice="bm_george",
                 local_script=True),
        Language("es", "Spanish", "espeak:es", "ef_dora", "e", True, "latin", male_voice="em_alex",
                 local_script=True),
        Language("fr-fr", "French", "espeak:fr-fr", "ff_siwis", "f", True, "latin"),
        Language("hi", "Hindi", "espeak:hi", "hf_alpha", "h", True, "devanagari", male_voice="hm_omega"),
        Language("it", "Italian", "espeak:it", "if_sara", "i", True, "latin", male_voice="im_nicola"),
        Language("ja", "Japanese", "misaki-ja", "jf_alpha", "j", False, "cjk-jp", 300, "jm_kumo"),
        Language("pt-br", "Portuguese (Brazil)", "espeak:pt-br", "pf_dora", "p", True, "latin", male_voice="pm_alex",
                 local_script=True),
        Language("zh", "Mandarin Chinese", "misaki-zh", "zf_xiaoxiao", "z", False, "cjk-sc", 260, "zm_yunxi"),
    )
}
"""Kokoro-82M v1.0's languages, in Kokoro's spelling."""

ALIASES = {
    "en": "en-us", "en-us": "en-us", "en-gb": "en-gb", "en-uk": "en-gb",
    "es": "es", "es-es": "es", "es-mx": "es", "es-419": "es",
    "fr": "fr-fr", "fr-fr": "fr-fr", "fr-ca": "fr-fr", "fr-be": "fr-fr", "fr-ch": "fr-fr",
    "hi": "hi", "hi-in": "hi",
    "it": "it", "it-it": "it",
    "ja": "ja", "ja-jp": "ja", "jp": "ja",
    "pt": "pt-br", "pt-br": "pt-br",
    "zh": "zh", "zh-cn": "zh", "zh-hans": "zh", "zh-sg": "zh", "zh-tw": "zh", "zh-hant": "zh", "cmn": "zh",
}
"""What people type (lower case, `-` for `_`) and the Kokoro language it means."""

TYPED = ("en", "en-us", "en-gb", "es", "es-es", "fr", "fr-fr", "hi", "it", "ja", "ja-jp", "pt", "pt-br", "zh", "zh-cn")
"""The codes named when a code is refused."""


class LanguageError(ValueError):
    """A language code that names no language Kokoro speaks; the message lists the ones it does."""


def normalise(typed: str) -> str:
    """Kokoro's code for what was typed (`PT-BR` -> `pt-br`, `en` -> `en-us`, `zh_CN` -> `zh`); else LanguageError."""
    key = typed.strip().lower().replace("_", "-")
    if key in ALIASES:
        return ALIASES[key]
    hint = ""
    if key.startswith("pt"):
        hint = " (Kokoro speaks Brazilian Portuguese only: pt-br)"
    elif key.startswith("zh"):
        hint = " (Kokoro speaks Mandarin: zh)"
    raise LanguageError(
        f"language {typed!r} is not one Kokoro speaks{hint}; use one of: {', '.join(TYPED)} (any case)"
    )


def language(typed: str) -> Language:
    return LANGUAGES[normalise(typed)]


def local_script_refusal(typed: str) -> str | None:
    """Why the shipped local model will not write a script in this language, in words a user can act on; None when
    it will (`Language.local_script`)."""
    lang = language(typed)
    if lang.local_script:
        return None
    able = ", ".join(code for code, other in LANGUAGES.items() if other.local_script)
    return (f"the local model does not write {lang.name} scripts (measured failing the script checks in it; it writes"
            f" {able}): give your own narration with --script FILE, or use --llm openai (an API key, an Ollama or"
            " llama.cpp server)")


def local_script_languages() -> tuple[str, ...]:
    """The prompt languages (`en`, `es`, `pt` ...) the local model writes: the first part of each enabled code."""
    return tuple(dict.fromkeys(code.split("-")[0] for code, lang in LANGUAGES.items() if lang.local_script))


def language_of_voice(voice: str) -> Language | None:
    """The language a Kokoro voice name belongs to (`ef_dora` -> Spanish), None for a name of no language."""
    prefix = voice[:1]
    return next((lang for lang in LANGUAGES.values() if lang.voice_prefix == prefix), None)


AZURE_NAMESAKES = {
    "zh": ("zf_xiaobei", "zf_xiaoni", "zf_xiaoxiao", "zf_xiaoyi", "zm_yunjian", "zm_yunxi", "zm_yunxia", "zm_yunyang"),
}
"""Kokoro voices named after the Azure speaker they imitate (zh-CN-YunjianNeural -> zm_yunjian)."""
_AZURE = re.compile(
    r"^(?P<lang>[a-z]{2,3}-[A-Za-z]{2,4})-(?P<speaker>[A-Za-z]+?)(?:Multilingual)?Neural(?:-(?P<sex>\w+))?$")


def voice_for_azure(name: str) -> str | None:
    """The Kokoro voice closest to an Azure voice name as MoneyPrinterTurbo sends it ("zh-CN-YunjianNeural-Male"):
    its namesake, else the language's male voice for a male speaker; None where the language's default serves
    (a female speaker, a language with no male voice, or a name that is no Azure voice of a language Kokoro speaks)."""
    found = _AZURE.match(name.strip())
    if found is None:
        return None
    try:
        lang = LANGUAGES[normalise(found["lang"])]
    except LanguageError:
        return None
    speaker = found["speaker"].lower()
    namesake = next((v for v in AZURE_NAMESAKES.get(lang.code, ()) if v.split("_", 1)[1] == speaker), None)
    if namesake is not None:
        return None if namesake == lang.voice else namesake
    if (found["sex"] or "").lower() == "male" and lang.male_voice:
        return lang.male_voice
    return None


def describe() -> list[dict]:
    """The table as plain data, for the web page, the API and `--voice list`."""
    return [asdict(lang) for lang in LANGUAGES.values()]


# --- text in scripts written without spaces ------------------------------------------------


def unspaced_char(char: str) -> bool:
    """True for a character of a script written without spaces: Han, kana, CJK punctuation, full-width forms."""
    code = ord(char)
    return (
        0x3000 <= code <= 0x30FF  # CJK punctuation, hiragana, katakana
        or 0x3400 <= code <= 0x4DBF or 0x4E00 <= code <= 0x9FFF or 0xF900 <= code <= 0xFAFF  # Han
        or 0xFF00 <= code <= 0xFFEF  # full-width and half-width forms
        or 0x31F0 <= code <= 0x31FF or 0x20000 <= code <= 0x2FA1F
    )


def join_words(words: list[str]) -> str:
    """The words as the script writes them: a space between two words unless either side is unspaced script."""
    text = ""
    for word in words:
        if text and word and not (unspaced_char(text[-1]) or unspaced_char(word[0])):
            text += " "
        text += word
    return text


def display_width(text: str) -> int:
    """Columns `text` takes on screen: wide (CJK) characters count two, combining marks none."""
    width = 0
    for char in text:
        if unicodedata.combining(char):
            continue
        width += 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1
    return width
