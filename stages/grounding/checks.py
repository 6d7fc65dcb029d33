"""Checking a sentence against source passages: does one passage say it, and is every number in the sources?

Responsible for the support of one sentence: the passage it rests on (the
one holding the largest share of the sentence's content words, by crude stem,
among the passages near it in meaning when their MiniLM similarities are
given), that share, and the numbers it states (digits, number words in English
and Portuguese, Chinese and Japanese numerals such as 三 or 两千) that appear
nowhere in the sources. A sentence is supported
when the share reaches SUPPORT_SHARE in a passage near it (MIN_SIMILARITY,
when similarities are given), no number is missing, and it brings few words
the passages never use (NOVEL_WORDS_EACH: none in a sentence of fewer than
five content words, where one invented word is the claim); a sentence with
no content word says nothing a source could support. Also the source's own
sentences that a script may use in place of an unsupported one. Not
responsible for asking a model to rewrite anything (stages/script/grounded.py)
nor for reading sources (stages/grounding/sources.py).

What this does not prove: a sentence made of the passage's words can still
recombine them into a claim the passage does not make. It catches invented
numbers, names and topics; it cannot catch every wrong relation.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from aishorts.stages.common.writing import duplicate, usable_sentence, word_count
from aishorts.stages.common.writing import content_words
from aishorts.stages.grounding.passages import Passage, bm25_scores, stems

SUPPORT_SHARE = 0.6
"""At least this share of a sentence's content words must appear in one passage."""
NOVEL_WORDS_EACH = 5
"""A sentence may use one content word that no passage uses for every five content words it has: below five, none.
A share alone let "An octopus is a fish with three hearts." through (3 of 4 words in the source, 0.75): in a short
sentence the one new word is the claim. Measured on 35 of Qwen's sentences retelling the octopus and sky sources:
every invented claim among them fails it ("a heart of gold", "an extra sense of touch and awareness", "giving the
sky its characteristic blue hue"), and so do 6 the share alone passed; faithful retellings with one new word in
nine ("helping", "phenomenon") still pass."""
MIN_SIMILARITY = 0.25
"""MiniLM cosine below which a passage is not about what the sentence says. Measured with the nearest passage: the
bench sources' own sentences 0.42-0.93 (median 0.76), faithful paraphrases 0.33-0.76, off-topic and empty ones
("This is a fact.", bees against octopuses, the sky) 0.01-0.07, a source's words recombined into nothing ("It makes
most of its life.") 0.22."""

NUMBER_WORDS = {
    # English ("one" is left out: "one of the" states no number)
    "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10,
    "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15, "sixteen": 16, "seventeen": 17,
    "eighteen": 18, "nineteen": 19, "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60,
    "seventy": 70, "eighty": 80, "ninety": 90, "hundred": 100, "thousand": 1000, "million": 10**6,
    "billion": 10**9, "twice": 2, "double": 2, "triple": 3, "half": 0.5, "dozen": 12,
    # Portuguese ("um", "uma" are articles)
    "dois": 2, "duas": 2, "três": 3, "quatro": 4, "cinco": 5, "seis": 6, "sete": 7, "oito": 8, "nove": 9,
    "dez": 10, "onze": 11, "doze": 12, "treze": 13, "catorze": 14, "quatorze": 14, "quinze": 15,
    "dezesseis": 16, "dezessete": 17, "dezoito": 18, "dezenove": 19, "vinte": 20, "trinta": 30,
    "quarenta": 40, "cinquenta": 50, "sessenta": 60, "setenta": 70, "oitenta": 80, "noventa": 90,
    "cem": 100, "cento": 100, "mil": 1000, "milhão": 10**6, "milhões": 10**6, "bilhão": 10**9,
    "bilhões": 10**9, "dobro": 2, "metade": 0.5, "dúzia": 12,
}
_DIGITS = re.compile(r"\d+(?:[.,]\d+)*")
CJK_DIGITS = {"〇": 0, "零": 0, "一": 1, "二": 2, "两": 2, "兩": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8,
              "九": 9}
CJK_UNITS = {"十": 10, "拾": 10, "百": 100, "佰": 100, "千": 1000, "仟": 1000}
CJK_MYRIADS = {"万": 10**4, "萬": 10**4, "亿": 10**8, "億": 10**8}
_CJK_NUMERAL = re.compile(f"[{''.join([*CJK_DIGITS, *CJK_UNITS, *CJK_MYRIADS])}]+")
_MYRIAD_AFTER = re.compile(f"[{''.join(CJK_MYRIADS)}]")
_WORD = re.compile(r"[^\W\d_]+", re.UNICODE)


@dataclass(frozen=True)
class Support:
    supported: bool
    share: float
    passage: int
    """Index of the nearest passage (-1 when there are none)."""
    missing_numbers: list[str]
    similarity: float | None = None
    """MiniLM cosine of the sentence and that passage; None when checked by words only."""
    novel_words: tuple[str, ...] = ()
    """Its content words (by crude stem) that no passage uses."""


def numbers_in(text: str) -> list[tuple[str, float]]:
    """(as written, value) of every number `text` states, in digits or in words."""
    found: list[tuple[str, float]] = []
    for match in _DIGITS.finditer(text):
        value = _digits_value(match.group())
        if value is not None:
            found.append((match.group(), value))
            myriad = _MYRIAD_AFTER.match(text, match.end())  # 3万: thirty thousand
            if myriad:
                found[-1] = (match.group() + myriad.group(), value * CJK_MYRIADS[myriad.group()])
    for word in _WORD.findall(text.lower()):
        if word in NUMBER_WORDS:
            found.append((word, float(NUMBER_WORDS[word])))
    for match in _CJK_NUMERAL.finditer(text):
        if match.start() and text[match.start() - 1].isdigit():
            continue  # the 万 of 3万, read with its digits
        value = cjk_numeral_value(match.group())
        if value is not None:
            found.append((match.group(), value))
    return found


def cjk_numeral_value(written: str) -> float | None:
    """The value of Chinese or Japanese numerals (三 3, 十二 12, 两千 2000, 三万五千 35000, 二〇二四 2024); None for
    what states no number: 一 alone ("one", as in 一起 or 一つ, is left out as English "one" is) and units with no
    digit (千万, "by all means")."""
    if not any(char in CJK_DIGITS or char in "十拾" for char in written):
        return None
    total, section, number, after_digit = 0, 0, 0, False
    for char in written:
        if char in CJK_DIGITS:
            number = number * 10 + CJK_DIGITS[char] if after_digit else CJK_DIGITS[char]
            after_digit = True
            continue
        after_digit = False
        if char in CJK_UNITS:
            section += (number or 1) * CJK_UNITS[char]
        else:
            total += (section + number) * CJK_MYRIADS[char]
            section = 0
        number = 0
    value = total + section + number
    return None if value == 1 else float(value)


def _digits_value(written: str) -> float | None:
    if re.fullmatch(r"\d{1,3}(?:[.,]\d{3})+", written):  # 1,000 or 1.000: thousands
        return float(re.sub(r"[.,]", "", written))
    try:
        return float(written.replace(",", "."))
    except ValueError:
        return None


_BRITISH = re.compile(r"our(?=s?$|ed$|ing$|ful|ite)")


def check_stems(text: str) -> list[str]:
    """`stems`, a little kinder to spelling: a plural's s and British "our" ("colours", "colors") dropped first, so
    that "look" meets "looks" and "colors" meets the source's "colours". Words of unspaced scripts as `stems`."""
    found: list[str] = []
    for word in content_words(text):
        if not word.isascii():
            found.extend(stems(word))
            continue
        word = _BRITISH.sub("or", word)
        if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
            word = word[:-1]
        found.append(word[:5])
    return found


def source_numbers(texts: list[str]) -> set[float]:
    return {value for text in texts for _, value in numbers_in(text)}


def support(sentence: str, passages: list[Passage], known_numbers: set[float],
            similarity: Sequence[float] | None = None) -> Support:
    """How well the passages support `sentence`, and the passage it rests on.

    `similarity`: the sentence's MiniLM cosine with each passage, when the stage could afford the model; the passage
    it rests on is then one of those nearest it in meaning, and must be near enough.
    """
    missing = [written for written, value in numbers_in(sentence) if value not in known_numbers]
    mine = set(check_stems(sentence))
    if not passages:
        return Support(False, 0.0, -1, missing)
    if not mine:  # "This is a fact.": nothing a source could support
        return Support(False, 0.0, -1, missing)
    used = [set(check_stems(p.text)) for p in passages]
    novel = tuple(sorted(mine - set().union(*used)))
    plausible = not missing and len(novel) <= len(mine) // NOVEL_WORDS_EACH
    shares = [len(mine & words) / len(mine) for words in used]
    if similarity is None:
        ties = bm25_scores(sentence, passages)
        best = max(range(len(passages)), key=lambda i: (shares[i], ties[i]))
        return Support(shares[best] >= SUPPORT_SHARE and plausible, round(shares[best], 3), best, missing, None, novel)
    # Passage-level similarity is coarse (a sentence can be nearest a passage next to the one that says it):
    # of the passages near it in meaning, it rests on the one holding most of its words, the nearest on a tie.
    near = [i for i in range(len(passages)) if similarity[i] >= MIN_SIMILARITY]
    if not near:
        best = max(range(len(passages)), key=lambda i: similarity[i])
        return Support(False, round(shares[best], 3), best, missing, round(float(similarity[best]), 3), novel)
    best = max(near, key=lambda i: (shares[i], similarity[i]))
    supported = shares[best] >= SUPPORT_SHARE and plausible
    return Support(supported, round(shares[best], 3), best, missing, round(float(similarity[best]), 3), novel)


SOURCE_SENTENCE_WORDS = (6, 28)
"""The words of a source sentence a script can say as it stands."""


def source_sentences(passages: list[Passage], topic: str, avoid: list[str]) -> list[str]:
    """The passages' own sentences a script can say as they stand, best for `topic` first."""
    scores = bm25_scores(topic, passages)
    order = sorted(range(len(passages)), key=lambda i: -scores[i])
    chosen: list[str] = []
    for index in order:
        for sentence in passages[index].sentences:
            if not SOURCE_SENTENCE_WORDS[0] <= word_count(sentence) <= SOURCE_SENTENCE_WORDS[1] \
                    or not usable_sentence(sentence):
                continue
            if re.search(r"[()\[\]]", sentence) or duplicate(sentence, [*avoid, *chosen], set()):
                continue
            chosen.append(sentence)
    return chosen
