"""Passages of source texts, and the ones that fit a topic best within a word budget (BM25).

Responsible for cutting each source's text into passages of a few sentences
(paragraphs kept whole when short; reference lists, headings and captions
left out), scoring them against the topic with BM25 over crude stems (the
first five letters of each content word, which serves English and Portuguese
alike), and keeping the best ones that fit the model's context budget, in the
order they stood in their source. Not responsible for reading sources
(stages/grounding/sources.py, stages/grounding/wiki.py) nor for checking a script against them
(stages/grounding/checks.py).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass

from aishorts.ipc.languages import unspaced_char
from aishorts.stages.common.writing import content_words, split_sentences, word_count

PASSAGE_WORDS = 90
"""A passage holds whole sentences up to about this many words."""
MIN_SENTENCE_WORDS = 5
BM25_K1 = 1.5
BM25_B = 0.75
_NOT_PROSE = re.compile(
    r"^(?:=+.*=+|references|see also|external links|further reading|notes|bibliography|sources|"
    r"referências|ver também|ligações externas|bibliografia|notas)\s*$",
    re.IGNORECASE,
)
_END_SECTIONS = re.compile(
    r"^=+\s*(?:references|see also|external links|further reading|notes|bibliography|sources|"
    r"referências|ver também|ligações externas|bibliografia|notas)\s*=+\s*$",
    re.IGNORECASE | re.MULTILINE,
)


@dataclass(frozen=True)
class Passage:
    source: int
    """Index of its source in the list the passages were cut from."""
    text: str

    @property
    def sentences(self) -> list[str]:
        return split_sentences(self.text)


def stems(text: str) -> list[str]:
    """Content words cut to their first five letters: "hearts" and "heart", "coração" and "corações" meet.
    Chinese and Japanese, written without spaces, give each pair of adjacent characters instead ("心脏", "脏是")."""
    found: list[str] = []
    for word in content_words(text):
        if any(unspaced_char(char) for char in word):
            found.extend(word[i:i + 2] for i in range(max(1, len(word) - 1)))
        else:
            found.append(word[:5])
    return found


def prose_lines(text: str) -> list[str]:
    """The lines of a text that read as sentences: no section headings, no reference lists after them."""
    cut = _END_SECTIONS.search(text)
    text = text[: cut.start()] if cut else text
    kept = []
    for line in text.splitlines():
        line = " ".join(line.split())
        if not line or _NOT_PROSE.match(line):
            continue
        if line[-1] not in ".!?…\"”'»)。！？」।" and word_count(line) < 12:
            continue  # a heading, caption or menu line
        kept.append(line)
    return kept


def split_passages(texts: list[str]) -> list[Passage]:
    """Each text's prose in passages of whole sentences, at most about PASSAGE_WORDS words each."""
    passages: list[Passage] = []
    for index, text in enumerate(texts):
        for line in prose_lines(text):
            current: list[str] = []
            for sentence in split_sentences(line):
                if not current and word_count(sentence) < MIN_SENTENCE_WORDS and not _short_statement(sentence):
                    continue  # a label opening the line ("Octopus.", "Main article: X")
                if current and sum(map(word_count, current)) + word_count(sentence) > PASSAGE_WORDS:
                    passages.append(Passage(index, " ".join(current)))
                    current = []
                current.append(sentence)
            if current and sum(map(word_count, current)) >= MIN_SENTENCE_WORDS:
                passages.append(Passage(index, " ".join(current)))
    return passages


def _short_statement(sentence: str) -> bool:
    """A short sentence that still says something ("Octopus blood is blue."): the next may point back to it."""
    return word_count(sentence) >= 3 and sentence[-1] in ".!?" and ":" not in sentence


def bm25_scores(query: str, passages: list[Passage]) -> list[float]:
    """Okapi BM25 of each passage for the query's stems."""
    terms = set(stems(query))
    bags = [Counter(stems(p.text)) for p in passages]
    if not passages or not terms:
        return [0.0] * len(passages)
    average = sum(sum(bag.values()) for bag in bags) / len(bags) or 1.0
    frequency = {t: sum(1 for bag in bags if t in bag) for t in terms}
    count = len(passages)
    scores = []
    for bag in bags:
        length = sum(bag.values())
        score = 0.0
        for term in terms:
            tf = bag.get(term, 0)
            if not tf:
                continue
            idf = math.log(1 + (count - frequency[term] + 0.5) / (frequency[term] + 0.5))
            score += idf * tf * (BM25_K1 + 1) / (tf + BM25_K1 * (1 - BM25_B + BM25_B * length / average))
        scores.append(score)
    return scores


def select(passages: list[Passage], query: str, budget_words: int) -> list[Passage]:
    """The passages that match `query` best (score above zero), as many as fit `budget_words`, in source order.

    With no passage matching at all, the first ones of the first source: the user
    named the source for this short, so its opening says what it is about.
    """
    scores = bm25_scores(query, passages)
    ranked = sorted((i for i, s in enumerate(scores) if s > 0), key=lambda i: -scores[i])
    if not ranked:
        ranked = list(range(len(passages)))
    chosen, used = [], 0
    for index in ranked:
        size = word_count(passages[index].text)
        if used + size > budget_words:
            continue
        chosen.append(index)
        used += size
    return [passages[i] for i in sorted(chosen)]
