"""Plain-text helpers for narration and LLM answers, shared by the theme and script stages.

Responsible for: words, content words and keywords (with the en/pt stopword
list), sentence splitting, cleaning what is trivially fixable in a model's line
(bullets, heading marks, emphasis, labels like "Hook:"), saying why text is
still not plain spoken prose, and short previews of text for messages. Not
responsible for prompts (stages/llm/prompts.py), for deciding whether an answer is
good enough (the stages do), nor for checking the user's own text (ipc/text.py).
"""

from __future__ import annotations

import re

from aishorts.ipc.languages import LANGUAGES, unspaced_char
from aishorts.ipc.text import looks_binary

MAX_KEYWORDS = 8
WORDS_PER_MINUTE = 125
"""Kokoro's default voice at speed 1.0 read 137 generated words in 62.2 s, pauses included (132 a minute);
aiming a little under keeps the narration inside the platform's limit."""

STOPWORDS = frozenset(
    # English
    "a about above after again against all almost also always am among an and another any are aren't around as at"
    " away back be became because become been before being below between both but by can can't cannot could did"
    " didn't do does doesn't doing done don't down during each either else enough even ever every few for from"
    " further get gets getting got had has hasn't have haven't having he her here hers herself him himself his how"
    " however i if in into is isn't it it's its itself just least less let like made make makes many may me might"
    " more most much must my myself never no nor not now of off often on once one only or other others our ours"
    " out over own per quite rather really same see seen she should since so some something such than that that's"
    " the their theirs them themselves then there there's these they they're thing things this those though through"
    " thus to today too under until up upon us use used uses using very was wasn't way ways we well were weren't"
    " what what's when where whether which while who whom whose why will with within without won't would you"
    " you'll you're your yours yourself"
    # words that name no visual: filler of narration and of prompts
    " amazing awesome called comment comments cool did discover discovered fact facts fascinating follow great"
    " incredible interesting know learn like likes lot lots more next part share short shorts subscribe surprising"
    " true video videos watch wonder able capable certain different important include includes including"
    " known found means several various"
    # Portuguese
    " a ao aos aquela aquele aquilo as até com como da das de dela dele deles do dos e ela elas ele eles em entre"
    " era essa esse esta está estão este eu foi for há isso isto já lhe mais mas me mesmo muito muita muitos"
    " muitas na não nas nem no nos nós o os ou para pela pelas pelo pelos por porque pode podem quais qual quando"
    " que quem se sem ser seu seus sua suas só também te tem têm ter toda todas todo todos tu um uma umas uns você"
    " vocês vai vão à às é são sobre cada outro outra outros outras então onde sabia siga fato fatos"
    " vídeo curta"
    .split()
)

# A letter, then letters and the vowel signs and viramas of Devanagari (combining marks, which \w leaves out).
_LETTERS = r"[^\W\d_](?:[^\W\d_]|[\u0900-\u0903\u093a-\u094f\u0951-\u0957\u0962\u0963])*"
_WORD = re.compile(rf"{_LETTERS}(?:['’-]{_LETTERS})*")
# A sentence ends at . ! ? … (and closing quotes) before a space and a word that is not lower case.
_SENTENCE = re.compile(r"\S.*?(?:[.!?…]+[\"'”’»)\]]*(?=\s+(?![a-zà-öø-ÿ])|\s*$)|$)")
# Chinese and Japanese sentences end at 。！？ (closing quotes and brackets kept with them), spaces or not;
# Hindi ones at the danda ।
_FULL_STOP = re.compile(r"[^。！？।]*[。！？।]+[」』”’）)]*|[^。！？।]+$")
_LABEL = re.compile(
    r"^(?:(?:a|an|the|my|our|your|o|um|uma|seu|sua)\s+)?"  # "A hook:", "The CTA:", "Um gancho:"
    r"(?:hook|body|cta|call[ -]to[ -]action|closing|intro|introduction|outro|conclusion|narration|narrator"
    r"|script|title|topic|subject|angle|voice ?over|vo|(?:line|sentence|part|fact|point|step) \d+|fact"
    r"|(?:first|second|third|fourth|fifth|sixth|seventh|eighth|ninth|tenth|next|last|final)"
    r" (?:line|sentence|part|fact|point|step)"
    r"|gancho|corpo|chamada(?: para (?:a )?ação)?|encerramento|título|tema|assunto|roteiro|narração)"
    r"\s*(?:\([^)]*\))?\s*[:：]\s*",
    re.IGNORECASE,
)
_LEAD_MARK = re.compile(r"^(?:#{1,6}\s*|>\s*|[-*•+–—]\s+|\(?\d{1,2}[.)]\s+)+")
_EMPHASIS = re.compile(r"(\*\*|__|\*|_)(?=\S)(.+?)(?<=\S)\1")
_QUOTES = "\"'“”‘’«»`"
FIRST_PERSON = re.compile(r"\b(?:I|I'm|I've|I'd|my|me)\b|\b(?:eu|meu|minha)\b", re.IGNORECASE)


def words(text: str) -> list[str]:
    return _WORD.findall(text)


def content_words(text: str) -> list[str]:
    """Lower-cased words that carry meaning: no stopwords, no short function words."""
    return [w for w in (w.lower().replace("’", "'") for w in words(text)) if len(w) > 2 and w not in STOPWORDS]


def keywords(text: str, limit: int = MAX_KEYWORDS) -> list[str]:
    """The most frequent content words, first appearance breaking ties."""
    found = content_words(text)
    order = {w: i for i, w in reversed(list(enumerate(found)))}
    ranked = sorted(order, key=lambda w: (-found.count(w), order[w]))
    return ranked[:limit]


def split_sentences(text: str) -> list[str]:
    """Sentences in reading order; a line break always ends one, and so do 。！？ (Chinese, Japanese) and ।.

    Emoji are not narration: they are left out (a model's line of only '🐠' is no sentence, and no caption font
    need hold one)."""
    import emoji

    out: list[str] = []
    for line in emoji.replace_emoji(text, "").splitlines():
        for piece in _FULL_STOP.findall(line.strip()):
            out.extend(" ".join(s.split()) for s in _SENTENCE.findall(piece.strip()) if s.strip())
    return out


def clean_line(line: str) -> str:
    """Strip what is trivially fixable: bullets, heading marks, emphasis, labels like "Hook:", outer quotes."""
    text = " ".join(line.split())
    for _ in range(3):
        before = text
        text = _LEAD_MARK.sub("", text)
        text = _EMPHASIS.sub(r"\2", text)
        text = _LABEL.sub("", text)
        text = text.strip().strip(_QUOTES).strip()
        if text == before:
            break
    return text


def strip_list_marks(line: str) -> str:
    """Only the heading, quote and bullet marks at the start of a line: for text used as written."""
    return _LEAD_MARK.sub("", " ".join(line.split())).strip()


def markup_left(text: str) -> str | None:
    """Why `text` still is not plain spoken prose (markup, links, code), or None."""
    checks = (
        ("```" in text or "`" in text, "code marks"),
        ("|" in text, "a table"),
        (re.search(r"https?://|www\.", text) is not None, "a link"),
        (re.search(r"\[[^\]]*\]\([^)]*\)", text) is not None, "a markdown link"),
        (re.search(r"\[[^\]]*\]", text) is not None, "a placeholder in brackets"),
        (re.search(r"</?[a-zA-Z][^>]*>", text) is not None, "HTML tags"),
        (re.search(r"[#*_{}<>\\]", text) is not None, "markdown symbols"),
    )
    return next((why for bad, why in checks if bad), None)


def word_count(text: str) -> int:
    """Words as the narration is timed: the words between spaces; Chinese and Japanese, written without spaces,
    count their characters as the words that take as long to say (`chars_per_word`)."""
    if not any(unspaced_char(char) for char in text):
        return len(text.split())
    spaced = sum(1 for token in text.split() if not any(unspaced_char(char) for char in token))
    unspaced = sum(1 for char in text if unspaced_char(char) and char.isalnum())
    return spaced + round(unspaced / chars_per_word(text))


def char_count(text: str) -> int:
    """The characters that are spoken: letters and digits, not punctuation or spaces."""
    return sum(1 for char in text if char.isalnum())


def chars_per_word(text: str) -> float:
    """How many characters of `text`'s unspaced script take as long to say as one word: Japanese when it has
    kana, else Mandarin (each language's `chars_per_minute` over WORDS_PER_MINUTE: 2.4 and 2.08)."""
    kana = any(0x3040 <= ord(char) <= 0x30FF and char.isalpha() for char in text)
    return LANGUAGES["ja" if kana else "zh"].chars_per_minute / WORDS_PER_MINUTE


def preview(text: str, limit: int = 60) -> str:
    """`text` on one line, cut to `limit` characters with an ellipsis: for quoting an answer in a message."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


# What a usable narration sentence is, for every stage that gathers them (script, grounding checks)

ENDS = ".!?…。！？।"
"""What a finished sentence ends with (Chinese and Japanese full stops, the Devanagari danda included)."""
SENTENCE_WORDS = (4, 40)
DUPLICATE_OVERLAP = 0.6

ECHO = re.compile(
    r"\bwords? in total\b|\bcall to action\b|\bhook of at most\b|\bb-?roll\b|\bstock footage\b|\bvisual search\b"
    r"|\bas an ai\b|\blanguage model\b|\bi'?m sorry\b|\bi cannot\b|\bi can't\b|\bsure[,!]|\bword count\b"
    r"|\bhere(?:'s| is) (?:a|the|your)\b.{0,40}\b(?:script|narration|video)\b|\(\d+[- ]words?\)"
    r"|\bchamada para ação\b|\bpalavras no total\b|\baqui está\b|\bbuscas? visua",
    re.IGNORECASE,
)


def usable_sentence(sentence: str) -> bool:
    n = word_count(sentence)
    return (
        SENTENCE_WORDS[0] <= n <= SENTENCE_WORDS[1]
        and sentence[-1] in ENDS
        and not markup_left(sentence)
        and not ECHO.search(sentence)
        and not FIRST_PERSON.search(sentence)
        and not looks_binary(sentence)
    )


def duplicate(sentence: str, kept: list[str], topical: set[str]) -> bool:
    """Whether `sentence` says what a kept one says; the topic's own words, shared by all, do not count."""
    mine = set(content_words(sentence)) - topical
    for other in kept:
        theirs = set(content_words(other)) - topical
        if mine and theirs and len(mine & theirs) / min(len(mine), len(theirs)) >= DUPLICATE_OVERLAP:
            return True
        if sentence.lower() == other.lower():
            return True
    return False
