"""Theme stage: decide what the short is about.

A user's topic is used as is (once `ipc.text` has checked that it is a
sensible one-line subject), with keywords taken from its own words and no LLM
involved (`backend="user"`). Without a topic, the LLM backend (`stages.llm.chat`)
proposes a subject and an angle for the requested category; its answers are
cleaned and checked, and retried a few times, before anything is accepted.
When the script will be written from sources (`--source`, or a wiki), the
topic must be one they support (`stages.theme.topic_support`): the model is asked
for another, up to three, and the user's sources give their own subject when
none is.

It does not write the narration (that is `stages.script`); the text helpers
it uses are in `stages.common.writing`, its prompts in `stages.llm.prompts`.
"""

from __future__ import annotations

import functools
import re

from aishorts.ipc.artifacts import Theme
from aishorts.ipc.params import CATEGORIES, ThemeParams
from aishorts.ipc.text import TextError, looks_binary, tidy_topic
from aishorts.stages.common.context import StageContext, StageError
from aishorts.stages.common.writing import (
    FIRST_PERSON, MAX_KEYWORDS, clean_line, keywords, markup_left, preview, split_sentences, word_count, words,
)
from aishorts.stages.harness import stage_main
from aishorts.stages.llm.chat import ChatBackend, Message, open_backend
from aishorts.stages.llm.prompts import ANGLE_SHOTS, TOPIC_SHOTS, angle_prompts, topic_prompts
from aishorts.stages.theme.topic_support import TopicSupport

Params = ThemeParams

THEME_ATTEMPTS = 5
TOPIC_WORDS = (2, 16)
ANGLE_WORDS = (4, 35)
ANSWER_MAX_TOKENS = 48
TOPIC_CANDIDATES = 3
"""With sources to write from, up to this many proposed topics are checked against them."""


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
    grounds = TopicSupport(list(params.sources), params.wiki_url, params.language)
    if grounds.active:
        with ctx.phase("topic_support"):
            topic = supported_topic(backend, category, params, ctx, topic, grounds)
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


def supported_topic(
    backend: ChatBackend, category: str, params: ThemeParams, ctx: StageContext, first: str, grounds: TopicSupport,
) -> str:
    """`first`, or another topic the model proposes, that the short's sources support; else what they are about.

    Up to TOPIC_CANDIDATES proposals are checked; a wiki that does not answer checks none (any topic will do). With
    none supported, the user's sources give their own subject (the title of the one that fits the category best);
    with only a wiki, the first proposal stays and the script stage will say it is not grounded.
    """
    tried = [first]
    verdict = grounds.check(first)
    ctx.log(f"topic {first!r}: {'supported' if verdict.supported else 'not supported'} by {grounds.where}"
            f" ({verdict.why})")
    while verdict.supported is False and len(tried) < TOPIC_CANDIDATES:
        topic, _ = _ask(backend, params, topic_prompts(category), functools.partial(_new_topic, tried=tried),
                        offset=len(tried) * THEME_ATTEMPTS)
        if not topic:
            break
        tried.append(topic)
        verdict = grounds.check(topic)
        ctx.log(f"topic {topic!r}: {'supported' if verdict.supported else 'not supported'} by {grounds.where}"
                f" ({verdict.why})")
    if verdict.supported is None:
        return first
    if verdict.supported:
        ctx.note(f"topic chosen for what {grounds.where} support: {tried[-1]!r}" + (
            f" (after {len(tried) - 1} they did not)" if len(tried) > 1 else ""))
        return tried[-1]
    subject = grounds.source_topic(category)
    if subject:
        ctx.note(f"none of {len(tried)} proposed topics is supported by {grounds.where}; the short is about what"
                 f" they are about: {subject!r}")
        return subject
    ctx.note(f"none of {len(tried)} proposed topics is supported by {grounds.where}; keeping {first!r}")
    return first


def _new_topic(answer: str, tried: list[str]) -> tuple[str, str]:
    topic, why = _accept_topic(answer)
    if topic and topic.lower() in {t.lower() for t in tried}:
        return "", "proposed before"
    return topic, why


def _ask(
    backend: ChatBackend, params: ThemeParams, prompts: list[list[Message]], accept, offset: int = 0,
) -> tuple[str, list[str]]:
    """Ask, cycling through the prompts with a new seed each time, until `accept` returns text.

    Returns the accepted text ("" if none) and why each answer before it was rejected. `offset` starts the seeds
    and prompts further on, for a new answer to the same request.
    """
    reasons: list[str] = []
    # Greedy decoding answers a repeated prompt the same way: one try per prompt is all it can give.
    attempts = THEME_ATTEMPTS if params.llm.temperature > 0 else len(prompts)
    for attempt in range(offset, offset + attempts):
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
