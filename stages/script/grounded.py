"""A script written from source passages in one call, then checked sentence by sentence against them.

Responsible for: gathering the sources of a script (the user's `--source`s,
else the wiki lookup), choosing the passages that fit the topic within the
model's context (for a local model writing a Latin-alphabet language, the
passages' best sentences, numbered, for it to retell one by one), asking the
model once for the whole script in a JSON shape (hook, body sentences, call
to action, queries) that llama.cpp's grammar or the endpoint's
`response_format` enforces, checking each hook and body
sentence against the passages (stages/grounding/checks.py), asking once for
the unsupported ones again when the supported ones cannot fill the budget,
choosing among the answer's sentences a set that fits the word budget (the
answer holds more than it needs: the schema fixes their number and bounds
their words), the source's own sentences only when those fall short, and
writing `sources.txt`. Not responsible for the ungrounded ways of writing
(stages/script/stage.py) nor for reading sources (stages/grounding/sources.py,
stages/grounding/wiki.py).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path

from aishorts.ipc.artifacts import SentenceSupport, SourceRef, Theme
from aishorts.ipc.languages import LANGUAGES, normalise, unspaced_char
from aishorts.ipc.params import PLATFORMS, ScriptParams
from aishorts.ipc.sizes import MiB
from aishorts.stages.common.broll_queries import choose_queries
from aishorts.stages.common.context import StageContext, StageError
from aishorts.stages.common.outputs import write_text
from aishorts.stages.common.writing import (
    ENDS, SENTENCE_WORDS, clean_line, content_words, duplicate, preview, split_sentences, usable_sentence, word_count,
)
from aishorts.stages.grounding.checks import (
    SOURCE_SENTENCE_WORDS, Support, source_numbers, source_sentences, support,
)
from aishorts.stages.grounding.passages import Passage, select, split_passages
from aishorts.stages.grounding.sources import Source, SourceProblem, read_sources
from aishorts.stages.grounding.wiki import lookup
from aishorts.stages.llm.chat import ChatBackend
from aishorts.stages.llm.prompts import (
    BOUNDED_LANGUAGES, ScriptShape, grounded_prompt, rewrite_prompt, rewrite_schema, script_schema,
)
from aishorts.stages.script.drafts import (
    CTA, MAX_HOOK_WORDS, STOCK_CLOSING, Draft, parse_whole, plain, problems, rescue, topic_as_hook,
)
from aishorts.stages.script.language_check import source_language

LOCAL_PASSAGE_WORDS = 600
"""Passages given to a local model: with the rules and the answer they fit its 2,048-token context."""
ENDPOINT_PASSAGE_WORDS = 1500
HOOK_WORDS = (5, MAX_HOOK_WORDS)
CTA_WORDS = (5, 14)
ASKED_SENTENCE_WORDS = (10, 20)
"""What the prompt asks a body sentence to hold."""
SENTENCE_WORDS_ALLOWED = (8, 36)
"""What the schema lets a body sentence hold. At most 22, Qwen ran into the bound in a third of its sentences (the
sources' own run to 25) and was cut mid-clause ("...absorbed high in the."); at most 30, still 3 of 9 on the sky
source; one that reaches the bound is taken as cut. At least 6, one answer held 9 sentences in 83 words."""
TYPICAL_SENTENCE_WORDS = 17
"""Qwen's body sentences asked for 10-20 words from the bench sources: 8-22 words, median 17."""
TYPICAL_FRAME_WORDS = 16
"""Its hook and call to action together: 12-19 words."""
SPARE_SHARE = 1.5
"""Body sentences asked for beyond what the budget needs (50% more words), so that after the checks drop the
unsupported and repeated ones the stage still chooses, among the answer's own, a set that fits the budget. At 30%
more, 4 of 9 bench scripts came from the first answer alone: the checks dropped 2-6 of its sentences in the rest."""
MAX_CTA_WORDS = 20
LEAST_FACT_SHARE = 1.25
"""Facts worth retelling: a short source's (the bench's sky text holds 144 words of them for a body of 109) still
leave the stage a choice; retold at RETELL_TEMPERATURE, they came out at 0.9-1.05 times their words (0.74 at 0.7)."""
RETELL_TEMPERATURE = 0.3
"""Sampling for retelling facts: a paraphrase wants few surprises (at 0.7, Qwen strayed from the facts' order and
wrote "Forager bees are the only bees that can make honey")."""
MAX_FACTS = 16
"""Facts retold in one answer at the most: the answer's tokens grow with them."""
TOKENS_PER_WORD = 1.6
"""Qwen's tokens per word of JSON-quoted English with its punctuation, with a margin (Portuguese runs longer)."""
ITEM_TOKENS = 12
"""A retold fact's `{"fact": 12, "say": "...."}` around its sentence."""
REWRITE_TOKENS_EACH = 45
"""A rewritten sentence of up to about 30 words; a tiny model's rambling string is cut there."""
NOT_GROUNDED = "not grounded: facts unchecked"
SOURCES_FILE = "sources.txt"
EMBED_NEED = 200 * MiB
"""What MiniLM adds to the stage (onnxruntime, the int8 model, a few dozen texts): +120 MiB measured, with a margin.
Under a ceiling with less room than this left above the stage's RSS, words and numbers alone check (an
`embed_need` in the stage's thresholds of a limits file overrides it)."""
EMBED_LANGUAGES = ("en",)
"""all-MiniLM-L6-v2 is an English model: on the Portuguese bench source an off-topic sentence scored 0.33-0.41
against the passages and one of the source's own 0.54, so no threshold separates them there."""


@dataclass
class Grounds:
    sources: list[Source]
    why: str


def gather(params: ScriptParams, theme: Theme, ctx: StageContext) -> Grounds:
    """The user's sources when given (a source that cannot be read is an error), else the wiki's articles."""
    query = " ".join([theme.topic, *theme.keywords])
    if params.sources:
        try:
            found = read_sources(params.sources, theme.topic)
        except SourceProblem as exc:
            raise StageError(str(exc)) from None
        found = in_language(found, params.language, ctx)
        return Grounds(found, f"{len(found)} text(s) from --source")
    with ctx.phase("wiki_lookup"):
        result = lookup(theme.topic if len(theme.topic.split()) > 1 else query, params.wiki_url, params.language)
    return Grounds(result.sources, result.why)


def in_language(sources: list[Source], code: str, ctx: StageContext) -> list[Source]:
    """The sources written in the short's language: a script is checked against its sources word by word and mended
    with their own sentences, so one in another language grounds nothing (its sentences would be refused as the
    wrong language). None left: an error saying what to give instead."""
    kept, other = [], []
    for source in sources:
        written_in = source_language(source.text, code)
        (other if written_in else kept).append((source, written_in))
    for source, written_in in other:
        ctx.log(f"source {source.origin} left out: it is in {written_in}, the short in {_language_name(code)}")
    if sources and not kept:
        source, written_in = other[0]
        name = _language_name(code)
        raise StageError(
            f"the source {source.origin} is in {written_in} and the short is in {name}: a script is checked against"
            f" its source and mended with its sentences, so it must be in the short's language. Give a source in"
            f" {name}, or make the short in {written_in} (--language {_code_of(written_in)})")
    return [source for source, _ in kept]


def _language_name(code: str) -> str:
    return LANGUAGES[normalise(code)].name


def _code_of(name: str) -> str:
    return next(code for code, lang in LANGUAGES.items() if lang.name == name).split("-")[0]


def passages_for(grounds: Grounds, theme: Theme, budget_words: int) -> list[Passage]:
    passages = split_passages([s.text for s in grounds.sources])
    return select(passages, " ".join([theme.topic, theme.angle, *theme.keywords]), budget_words)


def script_shape(low: int, high: int) -> ScriptShape:
    """The script to ask for so that the budget can be met from the answer's own sentences: enough body sentences of
    a typical length to hold SPARE_SHARE times the words the budget leaves the body, each bounded by the schema."""
    body_words = max(1, high - TYPICAL_FRAME_WORDS)
    count = max(3, -(-round(SPARE_SHARE * body_words) // TYPICAL_SENTENCE_WORDS))
    return ScriptShape(count, ASKED_SENTENCE_WORDS, SENTENCE_WORDS_ALLOWED, HOOK_WORDS, CTA_WORDS)


def facts_for(passages: list[Passage], theme: Theme, body_words: int, lang: str = "en") -> list[str]:
    """The source's own sentences a local model retells one by one: the best for the topic (source_sentences) until
    they hold SPARE_SHARE times the body's words, in the source's order (its story's); none when they hold less than
    LEAST_FACT_SHARE times, and the model then picks from the passages themselves.

    A sentence that opens on a pronoun is told with what it points back to: after the sentence before it when that
    is a fact too, joined to it when it was too short to be one ("Octopus blood is blue. It carries oxygen with
    hemocyanin, ..."), and left out otherwise (a retold "It carries oxygen ..." told nobody what carries it)."""
    ranked = source_sentences(passages, " ".join([theme.topic, theme.angle, *theme.keywords]), [])
    before = sentence_before(passages)
    position = {sentence: i for i, sentence in enumerate(s for p in passages for s in p.sentences)}
    chosen: dict[str, str] = {}  # each chosen sentence of the source: the fact it is told as
    while ranked and sum(map(word_count, chosen.values())) < SPARE_SHARE * body_words and len(chosen) < MAX_FACTS:
        sentence = ranked.pop(0)
        if before.get(sentence, "") in chosen:
            chosen[sentence] = sentence
        elif told := told_alone(sentence, before, lang):
            chosen[sentence] = told
    if sum(map(word_count, chosen.values())) < LEAST_FACT_SHARE * body_words or len(chosen) < 3:
        return []
    return [chosen[s] for s in sorted(chosen, key=lambda sentence: position.get(sentence, len(position)))]


def sentence_before(passages: list[Passage]) -> dict[str, str]:
    """Each sentence of the passages: the one before it in its passage."""
    return {now: earlier for p in passages for earlier, now in zip(p.sentences, p.sentences[1:])}


def told_alone(sentence: str, before: dict[str, str], lang: str = "en") -> str | None:
    """The sentence as it can be told on its own: itself, unless it opens on a word that points back (POINTING_BACK);
    then joined after the sentence it points back to when that one is too short to be told by itself, else None
    (nobody would know what "It" is)."""
    opening = POINTING_BACK.get(lang)
    if opening is None or not opening.match(sentence):
        return sentence
    earlier = before.get(sentence, "")
    return f"{earlier} {sentence}" if earlier and word_count(earlier) < SOURCE_SENTENCE_WORDS[0] else None


def _opening(words: str) -> re.Pattern[str]:
    return re.compile(rf"^(?:{'|'.join(words.split())})\b")


POINTING_BACK = {
    "en": _opening("It Its They Their Them This These That Those He She His Her"),
    "pt": _opening("Ele Ela Eles Elas Isso Isto Esse Essa Esses Essas Seu Sua Seus Suas"),
    "es": _opening("Él Ella Ellos Ellas Esto Eso Este Esta Estos Estas Ese Esa Esos Esas Su Sus"),
    "fr": _opening("Il Elle Ils Elles Ce Cela Ceci Cette Ces Son Sa Ses Leur Leurs"),
    "it": _opening("Esso Essa Essi Esse Questo Questa Questi Queste Ciò Suo Sua Suoi Sue Loro Lui Lei"),
}
"""Openings that point back to the sentence before, by prompt language: a pronoun, a demonstrative or a possessive
(French "Il" is a pronoun, Italian "Il" an article). A sentence whose subject is dropped ("Tiene tres corazones")
points back unseen."""


def answer_tokens(shape: ScriptShape) -> int:
    """Room for the longest answer the schema allows, so that the JSON is never cut before it closes."""
    most = shape.body * shape.sentence_words[1] + shape.hook_words[1] + shape.cta_words[1] + 5 * 4
    return round(most * TOKENS_PER_WORD) + 40 + ITEM_TOKENS * shape.body


def write_grounded(
    backend: ChatBackend, theme: Theme, params: ScriptParams, lang: str, limits: tuple[int, int],
    passages: list[Passage], ctx: StageContext,
) -> tuple[Draft, int, list[tuple[str, Support | None, str]]]:
    """(draft, answers asked for, per sentence: (text, its support, how it came)) of a script from `passages`."""
    low, high = limits
    seconds = int(PLATFORMS[params.platform].max_duration_s)
    shape = script_shape(low, high)
    texts = [p.text for p in passages]
    bounded = backend.label.startswith("local:")
    retold = bounded and lang in BOUNDED_LANGUAGES
    facts = facts_for(passages, theme, high - TYPICAL_FRAME_WORDS, lang) if retold else []
    if facts:
        shape = replace(shape, body=len(facts))
        ctx.log(f"{len(facts)} facts of the source, {sum(map(word_count, facts))} words, to be retold one by one")
    messages = grounded_prompt(theme, lang, seconds, shape, texts, facts)
    schema = script_schema(shape, lang, bounded, facts)
    draft, attempts = None, 0
    for attempt in range(1, max(1, min(params.max_attempts, 2)) + 1):
        attempts = attempt
        answer = backend.complete(messages, max_tokens=answer_tokens(shape),
                                  temperature=min(params.llm.temperature, RETELL_TEMPERATURE) if facts else
                                  params.llm.temperature, seed=params.llm.seed + attempt - 1, schema=schema)
        draft = parse_answer(answer)
        if draft.body:
            break
        ctx.log(f"answer {attempt} had no usable body: {preview(answer, 160)!r}")
    first_words = draft.word_total if draft else 0
    ctx.log(f"first answer: {first_words} words in {len(draft.body) if draft else 0} body sentences, for a budget of"
            f" {low}-{high} after {attempts} answer(s)")
    if draft is None or not draft.body:
        draft = Draft("", [], "", fallbacks=["the source's own sentences (the model wrote no usable script)"])
    if bounded:
        draft = without_cut(draft, shape, ctx)
    draft = without_repeats(draft, theme, ctx)
    checker = Checker(passages, source_numbers(texts), use_embedding(ctx, lang))
    hook_words = word_count(topic_as_hook(theme.topic))
    checked = check_and_mend(backend, draft, checker, lang, params, limits, hook_words, ctx)
    draft, how = fit_budget(checked, theme, checker, lang, (low, high), ctx)
    draft.queries = choose_queries(draft.queries, draft.sentences, theme)
    return draft, attempts, how


def without_cut(draft: Draft, shape: ScriptShape, ctx: StageContext) -> Draft:
    """The draft without the sentences the schema's word bound ended: one as long as the bound was cut mid-clause."""
    body = [s for s in draft.body if word_count(s) < shape.sentence_words[1]]
    hook = draft.hook if word_count(draft.hook) < shape.hook_words[1] else ""
    cut = len(draft.body) - len(body) + (hook != draft.hook)
    if cut:
        ctx.log(f"{cut} sentence(s) the word bound cut short left out")
    return Draft(hook, body, draft.cta, draft.queries, draft.fallbacks)


def parse_answer(answer: str) -> Draft:
    """The JSON script an answer holds; an endpoint that ignored the schema may have written plain lines."""
    data = _json_object(answer)
    if data is None:
        return parse_whole(answer)  # plain narration, as asked for without a schema
    hook = _sentence(data.get("hook"))
    items = [item.get("say") if isinstance(item, dict) else item for item in data.get("body") or []]  # retold facts
    body = [s for item in items if isinstance(item, str)
            for s in split_sentences(clean_line(_without_keys(item))) if s and not _JSON_LEFT.search(s)]
    cta = _sentence(data.get("cta"))
    queries = [clean_line(q).lower() for q in data.get("queries") or [] if isinstance(q, str) and q.strip()]
    return Draft(hook, body, cta, queries)


_JSON_KEY = re.compile(r'^\s*"?[A-Za-z_]+"\s*:\s*"?')
_JSON_LEFT = re.compile(r'"\s*:|:\s*"|",\s*"')


def _without_keys(item: str) -> str:
    """A body string without a JSON key the model wrote into it (`hook": "Descubra ...`, seen from Qwen in pt-br)."""
    return _JSON_KEY.sub("", item)


def _json_object(answer: str) -> dict | None:
    match = re.search(r"\{.*\}", answer, re.DOTALL)
    if not match:
        return None
    try:
        data = json.loads(match.group())
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _sentence(value: object) -> str:
    if not isinstance(value, str):
        return ""
    text = clean_line(value)
    if text and text[-1] not in ENDS:
        text += "。" if unspaced_char(text[-1]) else "."
    return text


def without_repeats(draft: Draft, theme: Theme, ctx: StageContext) -> Draft:
    """The draft with no body sentence that says again what the hook or an earlier one said."""
    topical = set(content_words(theme.topic))
    body: list[str] = []
    for sentence in draft.body:
        if not duplicate(sentence, [s for s in (draft.hook, *body) if s], topical):
            body.append(sentence)
    if len(body) < len(draft.body):
        ctx.log(f"{len(draft.body) - len(body)} repeated sentence(s) dropped")
        draft.fallbacks = [*draft.fallbacks, f"{len(draft.body) - len(body)} repeated sentence(s) dropped"]
        draft.body = body
    return draft


# --- checking against the passages -----------------------------------------------------------


class Checker:
    """Each sentence's support by the passages: by words and numbers, and by MiniLM's nearness when it was affordable."""

    def __init__(self, passages: list[Passage], numbers: set[float], embed: bool) -> None:
        self.passages = passages
        self.numbers = numbers
        self._vectors = None
        if embed and passages:
            from aishorts.stages.common.text_embedding import embed_texts

            self._vectors = embed_texts([p.text for p in passages])

    def __call__(self, sentence: str) -> Support:
        similarity = None
        if self._vectors is not None:
            from aishorts.stages.common.text_embedding import embed_texts

            similarity = (embed_texts([sentence]) @ self._vectors.T)[0].tolist()
        return support(sentence, self.passages, self.numbers, similarity)


def use_embedding(ctx: StageContext, lang: str) -> bool:
    """Whether the nearest passage by MiniLM joins the checks: an English script, room under the ceiling, the model."""
    if lang not in EMBED_LANGUAGES:
        ctx.log(f"checked by words and numbers only: MiniLM is an English model, the script is {lang}")
        return False
    need = ctx.thresholds.get("embed_need", EMBED_NEED)
    if ctx.ceiling_bytes:
        import psutil

        now = psutil.Process().memory_info().rss
        if now + need > ctx.ceiling_bytes:
            ctx.log(f"checked by words and numbers only: MiniLM needs about {need >> 20}M more, and the stage holds"
                    f" {now >> 20}M of its {ctx.ceiling_bytes >> 20}M ceiling")
            return False
    try:
        from aishorts.stages.common.text_embedding import load_model

        with ctx.phase("load_embedding"):
            load_model()
    except StageError as exc:
        ctx.log(f"checked by words and numbers only: {exc}")
        return False
    return True


@dataclass
class Checked:
    hook: tuple[str, Support | None, str]
    body: list[tuple[str, Support, str]]
    cta: str
    queries: list[str]
    fallbacks: list[str]


def check_and_mend(
    backend: ChatBackend, draft: Draft, checker: Checker, lang: str, params: ScriptParams, limits: tuple[int, int],
    hook_words: int, ctx: StageContext,
) -> Checked:
    """Every hook and body sentence checked; the unsupported ones asked for again once when the supported ones fall
    short of the budget (else they are only dropped), then replaced or dropped. `hook_words`: the words of the hook
    that replaces an unsupported one."""
    passages = checker.passages
    sentences = [s for s in (draft.hook, *draft.body) if s]
    supports = [_checked(s, checker) for s in sentences]
    weak = [i for i, found in enumerate(supports) if not found.supported]
    how = ["written"] * len(sentences)
    fallbacks = list(draft.fallbacks)
    if weak:
        ctx.log(f"{len(weak)} of {len(sentences)} sentences not supported by the source: "
                + "; ".join(preview(sentences[i], 70) for i in weak))
    if weak and enough_supported(draft, supports, hook_words, limits[0]):
        ctx.log(f"{len(weak)} unsupported sentence(s) not asked for again: the supported ones fill the budget")
        weak = []
    if weak:
        # Only sentences that say something are worth rewriting; debris (a word, a label) is replaced outright.
        claims = [i for i in weak if word_count(sentences[i]) >= SENTENCE_WORDS[0] and plain(sentences[i])]
        rewritten = _rewrite(backend, [sentences[i] for i in claims], passages, lang, params) if claims else []
        for index, new in zip(claims, rewritten):
            found = _checked(new, checker)
            if found.supported and new:
                sentences[index], supports[index], how[index] = new, found, "rewritten"
        fixed = sum(1 for i in weak if how[i] == "rewritten")
        if fixed:
            fallbacks.append(f"{fixed} unsupported sentence(s) rewritten from the source")
    hook_text = sentences[0] if draft.hook else ""
    hook = (hook_text, supports[0], how[0]) if draft.hook else ("", None, "written")
    start = 1 if draft.hook else 0
    body = [(s, f, h) for s, f, h in zip(sentences[start:], supports[start:], how[start:])]
    return Checked(hook, body, draft.cta, list(draft.queries), fallbacks)


def enough_supported(draft: Draft, supports: list[Support], hook_words: int, low: int) -> bool:
    """Whether the supported sentences, with the call to action (and a replacement hook, when the hook is not
    supported), reach `low` words: then a second call to rewrite the others would buy nothing."""
    sentences = [s for s in (draft.hook, *draft.body) if s]
    words = sum(word_count(s) for s, found in zip(sentences, supports) if found.supported)
    if not (draft.hook and supports[0].supported):
        words += hook_words
    return words + word_count(draft.cta) >= low


def _checked(sentence: str, checker: Checker) -> Support:
    """Its support; a sentence no narration can use (too long, markup, first person) counts as unsupported."""
    found = checker(sentence)
    if found.supported and not usable_sentence(sentence):
        return replace(found, supported=False)
    return found


def _rewrite(backend: ChatBackend, sentences: list[str], passages: list[Passage], lang: str,
             params: ScriptParams) -> list[str]:
    answer = backend.complete(rewrite_prompt(lang, sentences, [p.text for p in passages]),
                              max_tokens=REWRITE_TOKENS_EACH * len(sentences) + 20,
                              temperature=params.llm.temperature, seed=params.llm.seed + 101,
                              schema=rewrite_schema(len(sentences)))
    data = _json_object(answer) or {}
    items = data.get("sentences") if isinstance(data.get("sentences"), list) else []
    return [_sentence(item) for item in items][: len(sentences)] + [""] * (len(sentences) - len(items))


def fit_budget(
    checked: Checked, theme: Theme, checker: Checker, lang: str, limits: tuple[int, int], ctx: StageContext,
) -> tuple[Draft, list[tuple[str, Support | None, str]]]:
    """The word budget met from the answer's supported sentences, the earliest kept where a choice exists; the
    source's own sentences join them only when those fall short. Hook and closing line replaced when unusable."""
    low, high = limits
    passages = checker.passages
    fallbacks = list(checked.fallbacks)
    hook, hook_support, hook_how = checked.hook
    if not hook or not hook_support or not hook_support.supported or word_count(hook) > MAX_HOOK_WORDS:
        hook, hook_support, hook_how = topic_as_hook(theme.topic), None, "unchecked"
        if word_count(hook) <= MAX_HOOK_WORDS:
            fallbacks.append("the topic as the hook")
    fits = checked.cta and CTA.search(checked.cta) and word_count(checked.cta) <= MAX_CTA_WORDS and plain(checked.cta)
    cta = checked.cta if fits else STOCK_CLOSING[lang]
    if cta != checked.cta:
        fallbacks.append("a stock closing line")
    body = [entry for entry in checked.body if entry[1].supported]
    dropped = len(checked.body) - len(body)
    if dropped:
        fallbacks.append(f"{dropped} unsupported sentence(s) dropped")
    frame = word_count(hook) + word_count(cta)
    room = (low - frame, high - frame)
    chosen = choose_sentences([word_count(s) for s, _, _ in body], *room)
    if chosen is not None:
        if len(chosen) < len(body):
            ctx.log(f"{len(chosen)} of the answer's {len(body)} supported body sentences chosen to fit {low}-{high}"
                    " words")
        body = [body[i] for i in chosen]
    else:  # the answer's supported sentences cannot fill the budget: the source's own join them, after them
        ranked = source_sentences(passages, " ".join([theme.topic, *theme.keywords]), [hook, *(s for s, _, _ in body)])
        before = sentence_before(passages)
        spare = list(dict.fromkeys(told for s in ranked if (told := told_alone(s, before, lang))))
        pool = body + [(s, checker(s), "from_source") for s in spare]
        chosen = choose_sentences([word_count(s) for s, _, _ in pool], *room)
        body = [pool[i] for i in chosen] if chosen is not None else pool
        taken = sum(1 for _, _, made in body if made == "from_source")
        if taken:
            fallbacks.append(f"{taken} sentence(s) taken from the source as written")
    total = lambda: sum(map(word_count, [hook, cta, *(s for s, _, _ in body)]))  # noqa: E731
    while len(body) > 1 and total() > high:
        body.pop(-1)
    draft = Draft(hook, [s for s, _, _ in body], cta, checked.queries, fallbacks)
    if problems(draft, low, high):
        mended = rescue(draft, theme, lang, limits, ctx)
        mended.fallbacks = fallbacks + [f for f in mended.fallbacks if f not in fallbacks]
        kept = {s for s in mended.body}
        body = [entry for entry in body if entry[0] in kept]
        draft = Draft(mended.hook, [s for s, _, _ in body], mended.cta, mended.queries, mended.fallbacks)
    if fallbacks:
        ctx.log(f"grounded script mended: {', '.join(draft.fallbacks)}")
    return draft, [(hook, hook_support, hook_how), *body]


def choose_sentences(lengths: list[int], least: int, most: int) -> list[int] | None:
    """Indices, in order, of sentences whose words add up to `least`-`most`, the earliest kept wherever a choice
    exists (the answer's own order tells its story; the source's sentences come after it); None when none fits."""

    @cache
    def search(index: int, total: int) -> tuple[int, ...] | None:
        if total > most:
            return None
        if index == len(lengths):
            return () if total >= least else None
        taken = search(index + 1, total + lengths[index])
        return (index, *taken) if taken is not None else search(index + 1, total)

    found = search(0, 0)
    return None if found is None else list(found)


# --- the record: support per sentence, sources.txt ------------------------------------------


def support_records(
    how: list[tuple[str, Support | None, str]], cta: str, passages: list[Passage],
) -> list[SentenceSupport]:
    records = []
    for index, (text, found, made) in enumerate(how):
        if found is None:
            records.append(SentenceSupport(text=text, part="hook" if index == 0 else "body", how="unchecked"))
            continue
        passage = passages[found.passage] if found.passage >= 0 else None
        records.append(SentenceSupport(
            text=text, part="hook" if index == 0 else "body", supported=found.supported, share=found.share,
            source=passage.source if passage else -1, passage=passage.text if passage else "",
            missing_numbers=list(found.missing_numbers), how=made, similarity=found.similarity,
            novel_words=list(found.novel_words),
        ))
    records.append(SentenceSupport(text=cta, part="cta", how="unchecked"))
    return records


def source_refs(sources: list[Source]) -> list[SourceRef]:
    return [SourceRef(title=s.title, origin=s.origin, licence=s.licence, credit=s.credit) for s in sources]


def sources_text(refs: list[SourceRef], grounding: str) -> str:
    """sources.txt: what the narration was written from and what publishing it owes each source."""
    if not refs:
        return (f"{grounding}.\nThe narration of this short was written without a source: its facts were not"
                " checked. Check them before publishing, or make it again with --source FILE or online.\n")
    lines = [f"{grounding}.", "The narration of this short retells these sources. Credit them where you publish it:", ""]
    for number, ref in enumerate(refs, 1):
        lines.append(f"{number}. {ref.title}")
        lines.append(f"   {ref.origin}")
        if ref.licence:
            lines.append(f"   Licence: {ref.licence}")
        if ref.credit:
            lines.append(f"   Credit: {ref.credit}" + (" (adapted)" if "CC BY-SA" in ref.licence else ""))
        lines.append("")
    if any("CC BY-SA" in ref.licence for ref in refs):
        lines.append("CC BY-SA text: name the article and its contributors, link the article and the licence,"
                     " and say the narration adapts it; the narration is shared under the same licence.")
    return "\n".join(lines).rstrip() + "\n"


def write_sources_file(ctx: StageContext, refs: list[SourceRef], grounding: str) -> Path:
    """sources.txt in the stage's folder and, beside final.mp4, at the top of the run directory."""
    path = ctx.out_dir / SOURCES_FILE
    write_text(path, sources_text(refs, grounding))
    top = ctx.run_dir / SOURCES_FILE
    write_text(top, sources_text(refs, grounding))
    return path
