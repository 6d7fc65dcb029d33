"""Is a script written in the language asked for? The writing system first, then a language identifier.

Responsible for one verdict on a script's sentences: why they are not in the
language of Kokoro's code `code`, or None. Two checks. The writing system:
Hindi in Devanagari, Japanese with kana among its kanji, Mandarin in Han
characters with no kana, the others in Latin letters (names and numbers in
another script are allowed up to a share). Then py3langid (langid.py's
model, restricted to the languages Kokoro speaks) on the whole narration,
which must come out as the language asked for, and on each longer sentence,
none of which may come out as English with confidence: a small model that
drifts back into English does it a sentence at a time. Not responsible for
asking a model again (stages/script/stage.py) or for lengths (stages/script/drafts.py).
"""

from __future__ import annotations

import functools

from aishorts.ipc.languages import LANGUAGES, normalise

IDENTIFIED = ("en", "es", "fr", "hi", "it", "ja", "pt", "zh")
"""py3langid's codes for the languages Kokoro speaks: the identifier chooses among these only."""
OWN_SCRIPT_SHARE = 0.85
"""At least this share of a script's letters must be of its language's writing system."""
KANA_SHARE = 0.05
"""Japanese writes its grammar in kana: a text of kanji alone, without this share of kana, is Chinese."""
ENGLISH_SENTENCE_WORDS = 5
ENGLISH_CONFIDENCE = 0.9
"""A sentence of this many words or more, identified as English with this confidence, is an English sentence."""


def identifier_code(code: str) -> str:
    """py3langid's code for a Kokoro language (`pt-br` -> `pt`, `fr-fr` -> `fr`, `en-gb` -> `en`)."""
    return normalise(code).split("-")[0]


def language_problem(sentences: list[str], code: str) -> str | None:
    """Why `sentences` are not a narration in Kokoro language `code`, in words for a log; None when they are."""
    text = "\n".join(s for s in sentences if s.strip())
    if not text:
        return None
    want = identifier_code(code)
    name = LANGUAGES[normalise(code)].name
    wrong_script = _script_problem(text, want, name)
    if wrong_script:
        return wrong_script
    found, confidence = _identifier().classify(text)
    if found != want:
        return f"written in {_name(found)}, not {name} (identified with {confidence:.0%} confidence)"
    if want != "en":
        for sentence in sentences:
            if len(sentence.split()) < ENGLISH_SENTENCE_WORDS:
                continue
            found, confidence = _identifier().classify(sentence)
            if found == "en" and confidence >= ENGLISH_CONFIDENCE:
                return f"a sentence in English: {sentence[:60]!r}"
    return None


def _script_problem(text: str, want: str, name: str) -> str | None:
    letters = [char for char in text if char.isalpha()]
    if not letters:
        return "no letters"
    counts = {system: 0 for system in ("latin", "devanagari", "kana", "han", "other")}
    for char in letters:
        counts[_system(char)] += 1
    total = len(letters)
    if want == "hi":
        own = counts["devanagari"]
    elif want == "ja":
        own = counts["kana"] + counts["han"]
        if own and counts["kana"] < KANA_SHARE * own:
            return f"kanji with almost no kana: Chinese, not {name}"
    elif want == "zh":
        own = counts["han"]
        if counts["kana"]:
            return f"{counts['kana']} kana: Japanese, not {name}"
    else:
        own = counts["latin"]
    if own < OWN_SCRIPT_SHARE * total:
        return f"only {own / total:.0%} of its letters are in the writing of {name}"
    return None


def _system(char: str) -> str:
    code = ord(char)
    if code < 0x250 or 0x1E00 <= code <= 0x1EFF:
        return "latin"
    if 0x0900 <= code <= 0x097F or 0xA8E0 <= code <= 0xA8FF:
        return "devanagari"
    if 0x3040 <= code <= 0x30FF or 0x31F0 <= code <= 0x31FF or 0xFF66 <= code <= 0xFF9F:
        return "kana"
    if 0x3400 <= code <= 0x4DBF or 0x4E00 <= code <= 0x9FFF or 0xF900 <= code <= 0xFAFF or 0x20000 <= code <= 0x2FA1F:
        return "han"
    return "other"


def _name(identified: str) -> str:
    return next((lang.name for lang in LANGUAGES.values() if identifier_code(lang.code) == identified), identified)


@functools.cache
def _identifier():
    """py3langid's model (about 5 MB, loaded once a process), choosing among the languages Kokoro speaks."""
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    identifier.set_languages(list(IDENTIFIED))
    return identifier
