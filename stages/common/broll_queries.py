"""B-roll search phrases from a script: what the footage for a narration should show.

Responsible for: deriving short visual phrases (noun-phrase-like runs of
content words) from the narration's sentences, and topping up the phrases a
model wrote with them, 3 to 5 in all. Not responsible for searching or
fetching anything with them (the broll stage), nor for cleaning what a model
wrote (the script stage).
"""

from __future__ import annotations

import re
from collections import Counter

from aishorts.ipc.artifacts import Theme
from aishorts.stages.common.writing import STOPWORDS, content_words

QUERIES = (3, 5)
"""How many queries a script carries: at least, at most."""


def choose_queries(written: list[str], sentences: list[str], theme: Theme) -> list[str]:
    """The model's queries (`written`) when it wrote usable ones, topped up from the narration's `sentences`."""
    chosen: list[str] = []
    for query in written:
        if query not in chosen and len(chosen) < QUERIES[1]:
            chosen.append(query)
    if len(chosen) < QUERIES[0]:
        for query in derive_queries(sentences, theme):
            if len(chosen) >= QUERIES[1]:
                break
            if not any(set(query.split()) <= set(c.split()) for c in chosen):
                chosen.append(query)
    return chosen


def derive_queries(sentences: list[str], theme: Theme, count: int = QUERIES[1]) -> list[str]:
    """Short visual phrases from the text: noun-phrase-like runs of content words, best first.

    Without a part-of-speech tagger this cannot tell nouns from verbs for sure.
    It leans on two cues: a run of content words right after a determiner or
    number ("the *sea floor*", "three *hearts*") or at the start of a sentence
    is almost always a noun phrase, and words the text keeps repeating, or that
    name the topic, are what the footage should show.
    """
    phrases: Counter[str] = Counter()
    nounish: Counter[str] = Counter()
    first_seen: dict[str, int] = {}
    for sentence in sentences:
        for run, after_determiner in _content_runs(sentence):
            phrase = " ".join(run[:2] if after_determiner else run[-2:])
            phrases[phrase] += 1
            nounish[phrase] += after_determiner
            first_seen.setdefault(phrase, len(first_seen))
    frequency = Counter(w for s in sentences for w in content_words(s))
    topical = set(theme.keywords) | set(content_words(theme.topic))

    def score(phrase: str) -> tuple[float, int]:
        parts = phrase.split()
        weight = phrases[phrase] + 1.5 * min(nounish[phrase], 1) + sum(frequency[w] for w in parts) / len(parts)
        weight += 2.0 * any(w in topical for w in parts) + 0.5 * (len(parts) > 1)
        weight -= 1.5 * sum(_VERBISH.search(w) is not None for w in parts) / len(parts)
        return -weight, first_seen[phrase]

    chosen: list[str] = []
    for phrase in sorted(phrases, key=score):
        if len(chosen) == count:
            break
        if not any(set(phrase.split()) & set(c.split()) for c in chosen):
            chosen.append(phrase)
    for extra in [*theme.keywords, theme.topic.lower()]:
        if len(chosen) >= QUERIES[0]:
            break
        if extra and not any(extra in c.split() for c in chosen):
            chosen.append(extra)
    return chosen


# Past participles and gerunds (en, pt) are rarely what a camera films.
_VERBISH = re.compile(r"..(?:ed|ing|ando|endo|indo|ado|ido)$")

DETERMINERS = frozenset(
    "a an the this that these those its their his her our your my some many every each no any of"
    " two three four five six seven eight nine ten hundred hundreds thousand thousands million millions"
    " o a os as um uma uns umas do da dos das no na nos nas seu sua seus suas este esta esse essa"
    " dois duas três quatro cinco seis sete oito nove dez cem mil milhões".split()
)


def _content_runs(sentence: str) -> list[tuple[list[str], bool]]:
    """Runs of adjacent content words, each with whether a determiner (or the sentence start) led into it."""
    runs: list[tuple[list[str], bool]] = []
    current: list[str] = []
    led = True
    for token in re.findall(r"[^\W_]+(?:['’-][^\W_]+)*|[^\w\s]", sentence):
        word = token.lower().replace("’", "'")
        if word.isalpha() and len(word) > 2 and word not in STOPWORDS and word not in DETERMINERS:
            current.append(word)
            continue
        if current:
            runs.append((current, led))
            current = []
        led = word in DETERMINERS
    if current:
        runs.append((current, led))
    return runs
