"""A script draft and what makes it usable: validation, and the fallback ladder that mends a nearly right one.

Responsible for: the `Draft` the script stage assembles (hook, body, call to
action, b-roll queries, the fallbacks it took), the checks a draft must pass
(word range, hook length, no markup or prompt debris), the sentence-level
checks used while gathering facts, and `rescue`, which mends a draft rung by
rung and records each rung. Not responsible for asking a model anything
(stages/script/stage.py) or for the prompts (stages/llm/prompts.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from aishorts.ipc.artifacts import Theme
from aishorts.ipc.languages import unspaced_char
from aishorts.ipc.text import looks_binary
from aishorts.stages.common.context import StageContext, StageError
from aishorts.stages.common.writing import (
    ECHO, char_count, chars_per_word, clean_line, content_words, markup_left, preview, split_sentences, usable_sentence,
    word_count, words,
)

MAX_HOOK_WORDS = 12

CTA = re.compile(
    r"\b(?:follow|subscribe|like|share|comment|more|next|watch|tell us|let us know"
    r"|siga|inscreva|curta|compartilhe|comente|mais|próximo"
    r"|sígue\w*|sigue\w*|suscr[ií]be\w*|comenta\w*|comparte\w*|más"  # Spanish
    r"|abonne\w*|suis|suivez|commente\w*|partage\w*|plus"  # French
    r"|segui\w*|iscriviti|commenta|condividi|altr[ei]|più)\b"  # Italian
    r"|फ़ॉलो|फॉलो|सब्सक्राइब|कमेंट|शेयर|लाइक|ज़रूर बताएं"  # Hindi (\b stops inside Devanagari: no bounds)
    r"|フォロー|チャンネル登録|コメント|いいね|高評価"  # Japanese
    r"|关注|订阅|点赞|评论|留言|分享",  # Mandarin
    re.IGNORECASE,
)


@dataclass
class Draft:
    hook: str
    body: list[str]
    cta: str
    queries: list[str] = field(default_factory=list)
    fallbacks: list[str] = field(default_factory=list)

    @property
    def sentences(self) -> list[str]:
        return [s for s in (self.hook, *self.body, self.cta) if s]

    @property
    def word_total(self) -> int:
        return sum(word_count(s) for s in self.sentences)


def problems(draft: Draft, low: int, high: int) -> list[str]:
    """Everything that makes `draft` unfit to narrate; empty when it is fine."""
    found: list[str] = []
    if not draft.hook:
        found.append("no hook")
    elif word_count(draft.hook) > MAX_HOOK_WORDS:
        found.append(f"the hook has {_length(draft.hook)} (at most {_limit(draft.hook, MAX_HOOK_WORDS)})")
    if not draft.body:
        found.append("no body sentences")
    if not draft.cta:
        found.append("no closing call to action")
    if not low <= draft.word_total <= high:
        text = " ".join(draft.sentences)
        found.append(f"{_length(text)} (wanted {_limit(text, low, high)})")
    for sentence in draft.sentences:
        why = markup_left(sentence) or ("leftover prompt text" if ECHO.search(sentence) else None)
        if why:
            found.append(f"{why} in {preview(sentence)!r}")
            break
    return found


def _length(text: str) -> str:
    """`text`'s length as its language counts it: words, or characters where words are not spaced."""
    if any(unspaced_char(char) for char in text):
        return f"{char_count(text)} characters"
    return f"{word_count(text)} words"


def _limit(text: str, *words: int) -> str:
    """Word limits as `text`'s language counts length: the characters that take as long to say, where unspaced."""
    if not any(unspaced_char(char) for char in text):
        return "-".join(map(str, words))
    return "-".join(str(round(n * chars_per_word(text))) for n in words) + " characters"


QUESTION_OPENINGS = ("what", "who", "whom", "whose", "which", "can", "could", "do", "does", "did", "is", "are",
                     "was", "were", "will", "would", "should", "has", "have", "may", "might", "must",
                     "por que", "como", "o que", "quando", "onde", "quem", "qual")
"""Openings of a topic that is a question as it stands ("What makes the sky blue", "Do bees sleep")."""
INDIRECT_OPENINGS = ("why", "how", "when", "where")
"""Openings of a topic that is a question only with its verb put first ("Why the sky is blue")."""


def topic_as_hook(topic: str) -> str:
    """The topic said as an opening line: a question as a question; an indirect one ("Why octopuses have three
    hearts") as "Here's why octopuses have three hearts.", not as a question it is not; else a statement."""
    text = topic.strip().rstrip(".!?。！？")
    text = text[0].upper() + text[1:]
    if unspaced_char(text[-1]):  # Chinese, Japanese: their own full stop
        return text + "。"
    words = text.lower().split()
    if words[0] in INDIRECT_OPENINGS:
        if len(words) > 1 and words[1] in QUESTION_OPENINGS:  # "How do bees make honey"
            return text + "?"
        return f"Here's {text[0].lower()}{text[1:]}."
    question = any(words[: len(opening.split())] == opening.split() for opening in QUESTION_OPENINGS)
    return text + ("?" if question else ".")


def on_topic(sentence: str, topical: set[str]) -> bool:
    """Shares a content word (or its stem) with the topic: a hook about nothing in particular is no hook."""
    stems = {word[:5] for word in topical}
    return any(word[:5] in stems for word in content_words(sentence)) if topical else True


def stutters(sentence: str) -> bool:
    words = [w.strip(".,!?;:").lower() for w in sentence.split()]
    return any(a == b for a, b in zip(words, words[1:]))


def plain(text: str) -> bool:
    return not (markup_left(text) or ECHO.search(text) or looks_binary(text))


# --- the fallback ladder: a valid topic always ends in a script -----------------------------

STOCK_CLOSING = {
    "en": "Follow for more stories like this one.",
    "pt": "Siga para ver mais histórias como esta.",
    "es": "Síguenos para ver más historias como esta.",
    "fr": "Abonne-toi pour d'autres histoires comme celle-ci.",
    "hi": "ऐसी और कहानियों के लिए फ़ॉलो करें।",
    "it": "Seguici per altre storie come questa.",
    "ja": "こんな話をもっと知りたい方はフォローしてください。",
    "zh": "关注我们，了解更多这样的故事。",
}
CLOSE_ENOUGH = 0.15
"""A first answer within 15% of the word range is mended by the ladder rather than asked for again."""
MIN_FALLBACK_WORDS = 25
"""The ladder's last rung accepts a script this short rather than none: a short short beats an error."""


def close_enough(draft: Draft, low: int, high: int) -> bool:
    """A draft whose only faults the ladder mends without cost: plain prose, a little short or long."""
    prose = all(plain(sentence) for sentence in draft.sentences)
    return prose and len(draft.body) >= 2 and low * (1 - CLOSE_ENOUGH) <= draft.word_total <= high * (1 + CLOSE_ENOUGH)


def rescue(draft: Draft, theme: Theme, lang: str, limits: tuple[int, int], ctx: StageContext) -> Draft:
    """Repair the model's best draft, one rung at a time, until it passes; say which rungs it took.

    The rungs: unusable sentences dropped; the topic as the hook when the model gave none
    that fits; a stock closing line when it gave no call to action; facts past the word
    budget dropped from the end; and last, a script shorter than the budget's minimum
    (never under MIN_FALLBACK_WORDS) accepted. A draft with no usable sentence at all
    is still a StageError: there is nothing honest left to narrate.
    """
    low, high = limits
    taken: list[str] = []
    sentences = [s for s in draft.sentences if usable_sentence(s) or s in (draft.hook, draft.cta) and plain(s)]
    if len(sentences) < len(draft.sentences):
        taken.append("unusable sentences dropped")
    hook = draft.hook if draft.hook in sentences and word_count(draft.hook) <= MAX_HOOK_WORDS else ""
    cta = draft.cta if draft.cta in sentences and CTA.search(draft.cta) else ""
    body = [s for s in sentences if s not in (hook, cta)]
    if not hook:
        hook = topic_as_hook(theme.topic)
        if word_count(hook) > MAX_HOOK_WORDS:  # a long topic cannot open the short; its shortest fact can
            hook = min(body, key=word_count, default=hook)
            body = [s for s in body if s != hook]
        taken.append("the topic as the hook")
    if not cta:
        cta = STOCK_CLOSING[lang]
        taken.append("a stock closing line")
    while len(body) > 1 and sum(map(word_count, [hook, cta, *body])) > high:
        body.pop()
        if "facts past the word budget dropped" not in taken:
            taken.append("facts past the word budget dropped")
    repaired = Draft(hook, body, cta, list(draft.queries))
    if problems(repaired, low, high) and not problems(repaired, min(low, MIN_FALLBACK_WORDS), high):
        text = " ".join(repaired.sentences)
        taken.append(f"a shorter script than asked ({_length(text)}, wanted {_limit(text, low, high)})")
    elif problems(repaired, low, high):
        raise StageError(
            f"the model wrote nothing usable about {theme.topic!r} ({'; '.join(problems(repaired, low, high))});"
            " use a stronger model (--llm openai), or pass your own text with --script FILE"
        )
    ctx.log(f"fallbacks used: {', '.join(taken)}")
    repaired.fallbacks = taken
    return repaired


_SEPARATOR = re.compile(
    r"^\s*(?:-{3,}|={3,}|\*{3,}|_{3,}"
    r"|(?:b-?roll|visuals?|visual (?:search )?(?:phrases|queries)|search (?:phrases|queries)|stock footage"
    r"|buscas?|imagens)\b[^:]*:)\s*$",
    re.IGNORECASE,
)


def parse_whole(answer: str) -> Draft:
    """Split an answer into narration and queries, stripping what is trivially fixable (labels, bullets, bold)."""
    lines = answer.strip().splitlines()
    while lines and (not lines[0].strip() or _SEPARATOR.match(lines[0])):
        lines = lines[1:]  # a separator before any narration (a model echoing the prompt's "---") ends nothing
    cut = next((i for i, line in enumerate(lines) if _SEPARATOR.match(line)), len(lines))
    # A markdown heading is a title, not narration: dropped rather than read aloud as the hook.
    narration = [clean_line(line) for line in lines[:cut] if not re.match(r"\s*#{1,6}\s", line)]
    # A preamble such as "Here is your script:" is dropped; anything else ending in ":" stays and fails validation.
    if narration and narration[0].endswith(":") and ECHO.search(narration[0]):
        narration = narration[1:]
    sentences = split_sentences("\n".join(line for line in narration if line))
    queries = [q for q in (_clean_query(line) for line in lines[cut + 1:]) if q]
    if len(sentences) < 3:
        return Draft(sentences[0] if sentences else "", sentences[1:], "", queries)
    return Draft(sentences[0], sentences[1:-1], sentences[-1], queries)


def _clean_query(line: str) -> str:
    text = clean_line(line).strip(" .,;:!?")
    n = word_count(text)
    if not 1 <= n <= 6 or markup_left(text) or looks_binary(text) or not words(text) or ECHO.search(text):
        return ""
    return text.lower()
