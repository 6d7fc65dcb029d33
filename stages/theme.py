"""Theme stage: decide what the short is about.

A user's topic is used as is (after checking it is a sensible one-line
subject), with keywords taken from its own words and no LLM involved
(`backend="user"`). Without a topic, the LLM backend (`stages.llm`) proposes a
subject and an angle for the requested category; its answers are cleaned and
checked, and retried a few times, before anything is accepted.

This module also holds the small text helpers the script stage shares
(keywords, sentence splitting, markup cleaning, binary detection). It does not
write the narration (that is `stages.script`).
"""

from __future__ import annotations

import re

from ipc.artifacts import Theme
from ipc.text import TextError, looks_binary, tidy_topic
from ipc.params import CATEGORIES, ThemeParams
from stages.harness import StageContext, StageError, stage_main
from stages.llm import ChatBackend, open_backend

Params = ThemeParams

"""Same bound as the runner's --topic check: a subject, not a script."""
THEME_ATTEMPTS = 5
TOPIC_WORDS = (2, 16)
ANGLE_WORDS = (4, 35)
MAX_KEYWORDS = 8
ANSWER_MAX_TOKENS = 48

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

_WORD = re.compile(r"[^\W\d_]+(?:['’-][^\W\d_]+)*")
# A sentence ends at . ! ? … (and closing quotes) before a space and a word that is not lower case.
_SENTENCE = re.compile(r"\S.*?(?:[.!?…]+[\"'”’»)\]]*(?=\s+(?![a-zà-öø-ÿ])|\s*$)|$)")
_LABEL = re.compile(
    r"^(?:hook|body|cta|call[ -]to[ -]action|closing|intro|introduction|outro|conclusion|narration|narrator"
    r"|script|title|topic|subject|angle|voice ?over|vo|line \d+|sentence \d+|part \d+|fact \d+|fact"
    r"|gancho|corpo|chamada(?: para (?:a )?ação)?|encerramento|título|tema|assunto|roteiro|narração)"
    r"\s*(?:\([^)]*\))?\s*[:：]\s*",
    re.IGNORECASE,
)
_LEAD_MARK = re.compile(r"^(?:#{1,6}\s*|>\s*|[-*•+–—]\s+|\(?\d{1,2}[.)]\s+)+")
_EMPHASIS = re.compile(r"(\*\*|__|\*|_)(?=\S)(.+?)(?<=\S)\1")
_QUOTES = "\"'“”‘’«»`"
FIRST_PERSON = re.compile(r"\b(?:I|I'm|I've|I'd|my|me)\b|\b(?:eu|meu|minha)\b", re.IGNORECASE)


# --- shared text helpers -------------------------------------------------------------------


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
    """Sentences in reading order; a line break always ends one."""
    out: list[str] = []
    for line in text.splitlines():
        out.extend(" ".join(s.split()) for s in _SENTENCE.findall(line.strip()) if s.strip())
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
        (re.search(r"</?[a-zA-Z][^>]*>", text) is not None, "HTML tags"),
        (re.search(r"[#*_{}<>\\]", text) is not None, "markdown symbols"),
    )
    return next((why for bad, why in checks if bad), None)


def word_count(text: str) -> int:
    return len(text.split())


# --- the stage -----------------------------------------------------------------------------


def run(ctx: StageContext, params: ThemeParams) -> Theme:
    category = _check_category(params.category)
    if params.topic is not None:
        topic = validate_topic(params.topic)
        ctx.progress(f"topic given: {topic}", 1.0)
        return theme_from_topic(topic, category)
    if category is None:
        raise StageError(f"the theme stage needs a topic or a category (one of: {', '.join(CATEGORIES)})")
    backend = open_backend(params.llm, ctx)
    with ctx.phase("generate"):
        return theme_from_category(backend, category, params, ctx)


def validate_topic(topic: str) -> str:
    """The topic with its whitespace tidied, or a StageError saying what is wrong with it."""
    try:
        return tidy_topic(topic)
    except TextError as exc:
        raise StageError(str(exc)) from None


def theme_from_topic(topic: str, category: str | None = None) -> Theme:
    """A user's topic, untouched; keywords from its own words, no angle invented for it."""
    found = keywords(topic) or [w.lower() for w in words(topic)][:MAX_KEYWORDS] or [topic.lower()]
    return Theme(topic=topic, angle="", keywords=found, category=category, backend="user")


def theme_from_category(backend: ChatBackend, category: str, params: ThemeParams, ctx: StageContext) -> Theme:
    ctx.progress(f"asking {backend.label} for a {category} topic", 0.1)
    topic, rejected = _ask(backend, params, _topic_prompts(category), _accept_topic)
    if not topic:
        raise StageError(
            f"{backend.label} did not give a {category} topic after {len(rejected)} attempts"
            f" ({'; '.join(rejected)}); pass --topic yourself or use a stronger model"
        )
    ctx.progress(f"topic: {topic}", 0.5)
    angle, rejected = _ask(backend, params, _angle_prompts(topic), _accept_angle)
    if not angle:
        # A subject without an angle still makes a short; say so rather than invent one.
        ctx.log(f"no usable angle after {len(rejected)} attempts: {'; '.join(rejected)}")
    ctx.progress("theme ready", 1.0)
    return Theme(
        topic=topic, angle=angle, keywords=keywords(f"{topic} {angle}") or [category],
        category=category, backend=backend.label,
    )


def _check_category(category: str | None) -> str | None:
    if category is None:
        return None
    name = category.strip().lower()
    if name not in CATEGORIES:
        raise StageError(f"unknown category {category!r}; choose one of: {', '.join(CATEGORIES)}")
    return name


def _ask(
    backend: ChatBackend, params: ThemeParams, prompts: list[list[dict[str, str]]], accept,
) -> tuple[str, list[str]]:
    """Ask, cycling through the prompts with a new seed each time, until `accept` returns text.

    Returns the accepted text ("" if none) and why each answer before it was rejected.
    """
    reasons: list[str] = []
    # Greedy decoding answers a repeated prompt the same way: one try per prompt is all it can give.
    attempts = THEME_ATTEMPTS if params.llm.temperature > 0 else len(prompts)
    for attempt in range(attempts):
        messages = prompts[attempt % len(prompts)]
        answer = backend.complete(
            messages, max_tokens=min(params.llm.max_tokens, ANSWER_MAX_TOKENS), temperature=params.llm.temperature,
            seed=params.llm.seed + attempt,
        )
        text, why = accept(answer)
        if text:
            return text, reasons
        reasons.append(f"{why}: {_preview(answer)!r}")
    return "", reasons


_TOPIC_SHOTS = (
    ("animals", "Why octopuses have three hearts"),
    ("history", "How Roman roads lasted two thousand years"),
    ("technology", "The tiny chip inside every credit card"),
)
_ANGLE_SHOTS = (
    ("Why octopuses have three hearts", "Two of the hearts stop beating whenever an octopus swims."),
    ("How Roman roads lasted two thousand years", "Roman engineers built roads in layers, like a cake of stone."),
)


def _topic_prompts(category: str) -> list[list[dict[str, str]]]:
    """Worked examples first: a 135M model copies a format far better than it follows "answer with X only"."""
    asks = (
        "Subject for a short video about {}:",
        "Name one surprising subject for a short video about {}, in a few words:",
        "A specific {} subject for a one-minute video, 3 to 8 words:",
    )
    system = {
        "role": "system", "content": "You suggest subjects for short educational videos. Reply with the subject only.",
    }
    return [[system, *_few_shot(ask, _TOPIC_SHOTS, category)] for ask in asks]


def _angle_prompts(topic: str) -> list[list[dict[str, str]]]:
    asks = (
        "The most surprising thing about: {}",
        "One surprising fact about: {}, in one plain sentence.",
        "{}: one surprising fact, in one short sentence.",
    )
    return [_few_shot(ask, _ANGLE_SHOTS, topic) for ask in asks]


def _few_shot(ask: str, shots: tuple[tuple[str, str], ...], subject: str) -> list[dict[str, str]]:
    messages: list[dict[str, str]] = []
    for example, answer in shots:
        messages += [{"role": "user", "content": ask.format(example)}, {"role": "assistant", "content": answer}]
    return [*messages, {"role": "user", "content": ask.format(subject)}]


def _accept_topic(answer: str) -> tuple[str, str]:
    line = next((clean_line(x) for x in answer.splitlines() if clean_line(x)), "")
    if word_count(line) > TOPIC_WORDS[1]:
        line = next(iter(split_sentences(line)), line)
    line = line.rstrip(" .:;,!")
    n = word_count(line)
    if not line:
        return "", "empty answer"
    if markup_left(line) or looks_binary(line):
        return "", "not plain text"
    if not TOPIC_WORDS[0] <= n <= TOPIC_WORDS[1]:
        return "", f"{n} words, wanted {TOPIC_WORDS[0]}-{TOPIC_WORDS[1]}"
    if _echoes_prompt(line) or line.lower() in {t.lower() for _, t in _TOPIC_SHOTS}:
        return "", "repeats the request"
    return line[0].upper() + line[1:], ""


def _accept_angle(answer: str) -> tuple[str, str]:
    sentences = split_sentences("\n".join(clean_line(x) for x in answer.splitlines()))
    first = sentences[0] if sentences else ""
    n = word_count(first)
    if not first:
        return "", "empty answer"
    if markup_left(first) or looks_binary(first):
        return "", "not plain text"
    if not ANGLE_WORDS[0] <= n <= ANGLE_WORDS[1]:
        return "", f"{n} words, wanted {ANGLE_WORDS[0]}-{ANGLE_WORDS[1]}"
    if FIRST_PERSON.search(first):
        return "", "speaks as the model"
    if _echoes_prompt(first) or first in {a for _, a in _ANGLE_SHOTS}:
        return "", "repeats the request"
    return first, ""


_PROMPT_ECHO = re.compile(
    r"one-minute video|short video|educational video|in at most \d+ words|answer with|reply with|no explanation"
    r"|as an ai|i'm sorry|i am sorry|i cannot|i can't|surprising subject",
    re.IGNORECASE,
)


def _echoes_prompt(text: str) -> bool:
    return _PROMPT_ECHO.search(text) is not None


def _preview(text: str, limit: int = 80) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


if __name__ == "__main__":
    stage_main(run, Params)
