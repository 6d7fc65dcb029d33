"""Theme stage: decide what the short is about.

A user's topic is used as is (once `ipc.text` has checked that it is a
sensible one-line subject), with keywords taken from its own words and no LLM
involved (`backend="user"`). Without a topic, the LLM backend (`stages.llm`)
proposes a subject and an angle for the requested category; its answers are
cleaned and checked, and retried a few times, before anything is accepted.

It does not write the narration (that is `stages.script`); the text helpers
it uses are in `stages.writing`, its prompts in `stages.prompts`.
"""

from __future__ import annotations

import re

from ipc.artifacts import Theme
from ipc.params import CATEGORIES, ThemeParams
from ipc.text import TextError, looks_binary, tidy_topic
from stages.harness import StageContext, StageError, stage_main
from stages.llm import ChatBackend, Message, open_backend
from stages.prompts import ANGLE_SHOTS, TOPIC_SHOTS, angle_prompts, topic_prompts
from stages.writing import (
    FIRST_PERSON, MAX_KEYWORDS, clean_line, keywords, markup_left, preview, split_sentences, word_count, words,
)

Params = ThemeParams

THEME_ATTEMPTS = 5
TOPIC_WORDS = (2, 16)
ANGLE_WORDS = (4, 35)
ANSWER_MAX_TOKENS = 48


def run(ctx: StageContext, params: ThemeParams) -> Theme:
    category = params.category  # a Literal: decoding the parameters already refused any other name
    if params.topic is not None:
        try:
            topic = tidy_topic(params.topic)
        except TextError as exc:
            raise StageError(str(exc)) from None
        ctx.progress(f"topic given: {topic}", 1.0)
        return theme_from_topic(topic, category)
    if category is None:
        raise StageError(f"the theme stage needs a topic or a category (one of: {', '.join(CATEGORIES)})")
    backend = open_backend(params.llm, ctx)
    with ctx.phase("generate"):
        return theme_from_category(backend, category, params, ctx)


def theme_from_topic(topic: str, category: str | None = None) -> Theme:
    """A user's topic, untouched; keywords from its own words, no angle invented for it."""
    found = keywords(topic) or [w.lower() for w in words(topic)][:MAX_KEYWORDS] or [topic.lower()]
    return Theme(topic=topic, angle="", keywords=found, category=category, backend="user")


def theme_from_category(backend: ChatBackend, category: str, params: ThemeParams, ctx: StageContext) -> Theme:
    ctx.progress(f"asking {backend.label} for a {category} topic", 0.1)
    topic, rejected = _ask(backend, params, topic_prompts(category), _accept_topic)
    if not topic:
        raise StageError(
            f"{backend.label} did not give a {category} topic after {len(rejected)} attempts"
            f" ({'; '.join(rejected)}); pass --topic yourself or use a stronger model"
        )
    ctx.progress(f"topic: {topic}", 0.5)
    angle, rejected = _ask(backend, params, angle_prompts(topic), _accept_angle)
    if not angle:
        # A subject without an angle still makes a short; say so rather than invent one.
        ctx.log(f"no usable angle after {len(rejected)} attempts: {'; '.join(rejected)}")
    ctx.progress("theme ready", 1.0)
    return Theme(
        topic=topic, angle=angle, keywords=keywords(f"{topic} {angle}") or [category],
        category=category, backend=backend.label, backend_reason=backend.reason,
    )


def _ask(
    backend: ChatBackend, params: ThemeParams, prompts: list[list[Message]], accept,
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
        reasons.append(f"{why}: {preview(answer, 80)!r}")
    return "", reasons


def _fault(text: str, words: tuple[int, int]) -> str:
    """Why `text` cannot be used as a line of the theme (empty, not plain, too short or long), or ""."""
    if not text:
        return "empty answer"
    if markup_left(text) or looks_binary(text):
        return "not plain text"
    n = word_count(text)
    return "" if words[0] <= n <= words[1] else f"{n} words, wanted {words[0]}-{words[1]}"


def _accept_topic(answer: str) -> tuple[str, str]:
    line = next((clean_line(x) for x in answer.splitlines() if clean_line(x)), "")
    if word_count(line) > TOPIC_WORDS[1]:
        line = next(iter(split_sentences(line)), line)
    line = line.rstrip(" .:;,!")
    if fault := _fault(line, TOPIC_WORDS):
        return "", fault
    if _echoes_prompt(line) or line.lower() in {t.lower() for _, t in TOPIC_SHOTS}:
        return "", "repeats the request"
    return line[0].upper() + line[1:], ""


def _accept_angle(answer: str) -> tuple[str, str]:
    sentences = split_sentences("\n".join(clean_line(x) for x in answer.splitlines()))
    first = sentences[0] if sentences else ""
    if fault := _fault(first, ANGLE_WORDS):
        return "", fault
    if FIRST_PERSON.search(first):
        return "", "speaks as the model"
    if _echoes_prompt(first) or first in {a for _, a in ANGLE_SHOTS}:
        return "", "repeats the request"
    return first, ""


_PROMPT_ECHO = re.compile(
    r"one-minute video|short video|educational video|in at most \d+ words|answer with|reply with|no explanation"
    r"|as an ai|i'm sorry|i am sorry|i cannot|i can't|surprising subject",
    re.IGNORECASE,
)


def _echoes_prompt(text: str) -> bool:
    return _PROMPT_ECHO.search(text) is not None


if __name__ == "__main__":
    stage_main(run, Params)
