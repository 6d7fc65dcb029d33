"""Script stage: the narration of the short, sentence by sentence, and its b-roll queries.

Two sources. The user's own text (`ScriptParams.script_text`) is split into
sentences and used as written; it is refused only when it is empty, is not
text, or would clearly run past the platform's maximum duration. Otherwise an
LLM (`stages.llm.chat`) writes it: a model that follows instructions is asked for
the whole script at once and retried with a firmer instruction while its
answer fails validation; the tiny local model, which ignores length requests,
is asked for a hook, short facts and a call to action in separate calls whose
sentences are cleaned, deduplicated and assembled up to the word budget.
Either way the result is validated (word count, hook length, no markup or
leftover prompt text, and its language: stages/script/language_check.py) and a script
that still fails is a `StageError`. Chinese and Japanese are asked for and
counted in characters (their characters count as the words that take as long
to say, `stages.common.writing.word_count`).

B-roll queries come from the model when it wrote them cleanly, topped up with
phrases of adjacent content words from the narration itself
(`stages.common.broll_queries`). The prompts are in `stages.llm.prompts`, the text
helpers in `stages.common.writing`, the draft, its validation and the fallback ladder
that mends a nearly right one in `stages.script.drafts`.

`Script.attempts` counts the whole-script answers asked for, or, in parts mode,
the model calls made. This module does not time the speech (that is `stages.tts`).
"""

from __future__ import annotations


from aishorts.ipc.artifacts import Script, Theme
from aishorts.ipc.languages import LANGUAGES, Language, LanguageError
from aishorts.ipc.languages import normalise as normalise_language
from aishorts.ipc.params import PLATFORMS, ScriptParams
from aishorts.ipc.text import looks_binary
from aishorts.stages.common.broll_queries import choose_queries, derive_queries
from aishorts.stages.common.context import StageContext, StageError
from aishorts.stages.common.writing import (
    WORDS_PER_MINUTE, char_count, clean_line, content_words, duplicate, preview, split_sentences, strip_list_marks,
    usable_sentence, word_count, words,
)
from aishorts.stages.harness import stage_main
from aishorts.stages.llm.chat import ChatBackend, Message, open_backend
from aishorts.stages.llm.prompts import PARTS, PartPrompts, few_shot, firmer, whole_prompt
from aishorts.stages.script import grounded
from aishorts.stages.script.drafts import (
    CTA, MAX_HOOK_WORDS, Draft, close_enough, on_topic, parse_whole, plain, problems, rescue, stutters, topic_as_hook,
)
from aishorts.stages.script.language_check import language_problem

Params = ScriptParams

OVERRUN_TOLERANCE = 1.1
"""A user script is refused only when it would run more than 10% past the limit: speaking rates vary."""
FACT_MAX_TOKENS = 72
LINE_MAX_TOKENS = 32
FACT_CALLS_PER_ATTEMPT = 6

def run(ctx: StageContext, params: ScriptParams, *, theme: Theme) -> Script:
    script = narration(ctx, params, theme)
    if params.broll_terms:
        script.broll_queries = choose_queries(_distinct(params.broll_terms), script.sentences, theme)
        ctx.log(f"b-roll terms: yours first ({'; '.join(script.broll_queries)})")
    return script


def _distinct(terms: list[str]) -> list[str]:
    """The user's terms with spacing tidied, each once (case aside), in their order."""
    seen: dict[str, str] = {}
    for term in terms:
        tidy = " ".join(term.split())
        if tidy and tidy.lower() not in seen:
            seen[tidy.lower()] = tidy
    return list(seen.values())


def narration(ctx: StageContext, params: ScriptParams, theme: Theme) -> Script:
    """The user's own text as written, else the model's, from sources when it has any."""
    if params.script_text is not None:
        script = script_from_text(params.script_text, theme, params)
        size = (f"{script.word_count} words" if _unspaced_language(params.language) is None
                else f"{sum(char_count(s) for s in script.sentences)} characters")
        ctx.progress(f"your script: {size}, {len(script.sentences)} sentences", 1.0)
        return script
    low, high = word_range(params)
    lang = prompt_language(params.language)
    grounds = grounded.gather(params, theme, ctx)
    backend = open_backend(params.llm, ctx, language=lang, from_source=bool(grounds.sources))
    budget = grounded.LOCAL_PASSAGE_WORDS if backend.label.startswith("local:") else grounded.ENDPOINT_PASSAGE_WORDS
    passages = grounded.passages_for(grounds, theme, budget) if grounds.sources else []
    unspaced = _unspaced_language(params.language)
    aim = (f"{low}-{high} words" if unspaced is None else
           "-".join(str(round(n * unspaced.chars_per_minute / WORDS_PER_MINUTE)) for n in (low, high)) + " characters")
    ctx.progress(f"writing {aim} for {params.platform} with {backend.label}", 0.05)
    with ctx.phase("generate"):
        if passages:
            draft, attempts, how = grounded.write_grounded(backend, theme, params, lang, (low, high), passages, ctx)
        elif backend.follows_length_requests:
            draft, attempts = write_whole(backend, theme, params, lang, (low, high), ctx)
        else:
            draft, attempts = write_in_parts(backend, theme, params, lang, (low, high), ctx)
    check_language(draft, params.language, backend)
    ctx.progress(f"script ready: {script_size(draft, params.language)}", 1.0)
    script = _script(draft, theme, params.language, backend.label, attempts)
    script.backend_reason = backend.reason
    if passages:
        used = sorted({p.source for p in passages})
        script.sources = grounded.source_refs([grounds.sources[i] for i in used])
        renumber = {old: new for new, old in enumerate(used)}
        script.support = grounded.support_records(how, draft.cta, passages)
        for record in script.support:
            record.source = renumber.get(record.source, -1)
        script.grounding = f"grounded in {len(script.sources)} source{'s' if len(script.sources) != 1 else ''}"
    else:
        script.grounding = f"{grounded.NOT_GROUNDED} ({grounds.why or 'no source gave a passage'})"
    ctx.note(f"{script.grounding}: {grounds.why}" if passages else script.grounding)
    grounded.write_sources_file(ctx, script.sources, script.grounding)
    return script


# --- the user's own text -------------------------------------------------------------------


def script_from_text(text: str, theme: Theme, params: ScriptParams) -> Script:
    """The user's narration as written: hook = first sentence, CTA = last one when there are 3 or more."""
    if looks_binary(text):
        raise StageError("the script is not readable text (binary data or control characters); pass a plain text file")
    if not text.strip():
        raise StageError("the script is empty; write the narration in a plain text file")
    sentences = [s for s in (strip_list_marks(s) for s in split_sentences(text)) if words(s)]
    if not sentences:
        raise StageError("the script has no words to narrate")
    unspaced = _unspaced_language(params.language)
    if unspaced is None:
        check_duration(sum(word_count(s) for s in sentences), params.platform)
    else:  # words are not spaced: characters are counted
        check_duration(sum(char_count(s) for s in sentences), params.platform, unspaced.chars_per_minute, "characters")
    hook, rest = sentences[0], sentences[1:]
    cta = rest.pop() if len(sentences) >= 3 else ""
    draft = Draft(hook, rest, cta)
    draft.queries = derive_queries(draft.sentences, theme)
    return _script(draft, theme, params.language, "user", 1)


def check_duration(words_total: int, platform: str, per_minute: int = WORDS_PER_MINUTE, unit: str = "words") -> None:
    """Refuse narration that would clearly run past the platform's limit, read at `per_minute` `unit` a minute
    (WORDS_PER_MINUTE words; characters for languages written without spaces)."""
    limit_s = PLATFORMS[platform].max_duration_s
    spoken_s = words_total * 60 / per_minute
    if spoken_s > limit_s * OVERRUN_TOLERANCE:
        fits = int(limit_s * per_minute / 60)
        longer = [f"{name} ({p.max_duration_s:g} s)" for name, p in PLATFORMS.items() if p.max_duration_s > limit_s]
        hint = f", or choose a longer platform: {', '.join(longer)}" if longer else ""
        raise StageError(
            f"the script has {words_total} {unit}, about {spoken_s:.0f} s of narration at {per_minute} {unit}"
            f" a minute, past the {limit_s:g} s limit of {platform}; cut it to about {fits} {unit}{hint}"
        )


def _unspaced_language(typed: str) -> Language | None:
    """The script's language when it is written without spaces between words (Chinese, Japanese), else None."""
    try:
        lang = LANGUAGES[normalise_language(typed)]
    except LanguageError:
        return None
    return None if lang.spaced else lang


# --- limits and languages ------------------------------------------------------------------


def word_range(params: ScriptParams) -> tuple[int, int]:
    """The words to aim for: the asked-for range, capped by what the platform's duration can hold."""
    fits = int(PLATFORMS[params.platform].max_duration_s * WORDS_PER_MINUTE / 60)
    high = min(params.max_words, fits)
    low = min(params.min_words, high)
    if low < 1 or high < low:
        raise StageError(
            f"invalid word range {params.min_words}-{params.max_words}: min_words must be at least 1"
            " and at most max_words"
        )
    return low, high


def prompt_language(language: str) -> str:
    """The prompts' key for a Kokoro language: `en` for en-us and en-gb, `pt` for pt-br, `fr` for fr-fr, ..."""
    try:
        return normalise_language(language).split("-")[0]
    except LanguageError as exc:
        raise StageError(f"{exc}; or write the narration yourself and pass it with --script FILE") from None


def script_size(draft: Draft, language: str) -> str:
    """The draft's length as its language counts it: words, or characters for Chinese and Japanese."""
    if _unspaced_language(language) is None:
        return f"{draft.word_total} words"
    return f"{sum(char_count(s) for s in draft.sentences)} characters"


def check_language(draft: Draft, language: str, backend: ChatBackend) -> None:
    """StageError when the finished script is not in `language`: a wrong-language narration is never spoken."""
    wrong = language_problem(draft.sentences, language)
    if wrong:
        raise StageError(
            f"{backend.label} did not write the script in {LANGUAGES[normalise_language(language)].name}"
            f" ({wrong}); use --llm openai with a model that writes it, or pass your own text with --script FILE"
        )


# --- whole-script generation (models that follow instructions) -----------------------------


def write_whole(
    backend: ChatBackend, theme: Theme, params: ScriptParams, lang: str, limits: tuple[int, int], ctx: StageContext,
) -> tuple[Draft, int]:
    low, high = limits
    seconds = int(PLATFORMS[params.platform].max_duration_s)
    base = whole_prompt(theme, lang, low, high, seconds, MAX_HOOK_WORDS)
    messages = base
    best: Draft | None = None
    best_wrong: str | None = None
    tries = max(1, params.max_attempts)
    for attempt in range(1, tries + 1):
        ctx.progress(f"attempt {attempt} of {tries}", 0.1 + 0.8 * (attempt - 1) / tries)
        answer = backend.complete(
            messages, max_tokens=params.llm.max_tokens, temperature=params.llm.temperature,
            seed=params.llm.seed + attempt - 1,
        )
        draft = parse_whole(answer)
        reasons = problems(draft, low, high)
        wrong = language_problem(draft.sentences, params.language)
        if wrong:
            reasons.append(f"not in the language asked for: {wrong}")
        if not reasons:
            draft.queries = choose_queries(draft.queries, draft.sentences, theme)
            return draft, attempt
        ctx.log(f"attempt {attempt} rejected: {'; '.join(reasons)}")
        if close_enough(draft, low, high) and not wrong:  # another 20-40 s of generation would buy a few words
            draft = rescue(draft, theme, lang, (low, high), ctx)
            draft.queries = choose_queries(draft.queries, draft.sentences, theme)
            return draft, attempt
        if best is None or (not wrong, draft.word_total) > (not best_wrong, best.word_total):
            best, best_wrong = draft, wrong  # a draft in the language asked for beats a longer one that is not
        messages = [*base, {"role": "assistant", "content": answer}, firmer(lang, reasons, low, high, MAX_HOOK_WORDS)]
    try:
        draft = rescue(best or Draft("", [], ""), theme, lang, (low, high), ctx)
    except StageError:
        if lang not in PARTS:  # the parts' worked examples are in English and Portuguese only
            raise
        # Whole answers were too thin to mend: ask for the script in short parts instead (hook, facts,
        # call to action), as for the tiny model; that ladder ends in the same mending.
        ctx.log("whole answers too thin to mend; writing the script in parts")
        draft, calls = write_in_parts(backend, theme, params, lang, (low, high), ctx)
        draft.fallbacks.insert(0, "written in parts after thin whole answers")
        return draft, tries + calls
    draft.queries = choose_queries(draft.queries, draft.sentences, theme)
    return draft, tries


# --- generation in parts (the tiny local model) --------------------------------------------


def write_in_parts(
    backend: ChatBackend, theme: Theme, params: ScriptParams, lang: str, limits: tuple[int, int], ctx: StageContext,
) -> tuple[Draft, int]:
    """Hook, facts and call to action in separate short calls, assembled up to the word budget."""
    low, high = limits
    prompts = PARTS[lang]
    asker = _PartAsker(backend, params, ctx)
    topical = set(content_words(theme.topic))
    hook = asker.line(
        [few_shot(prompts.hook_ask, prompts.hook_shots, theme.topic)],
        lambda s: 3 <= word_count(s) <= MAX_HOOK_WORDS and on_topic(s, topical) and not stutters(s),
    )
    ctx.progress(f"hook: {hook or '(none yet)'}", 0.1)
    cta = asker.line(
        [few_shot(ask, shots, theme.topic) for ask, shots in zip(prompts.cta_asks, prompts.cta_shots)],
        lambda s: 3 <= word_count(s) <= 20 and not stutters(s)
        and (bool(CTA.search(s)) or (s.endswith("?") and on_topic(s, topical))),
    )
    ctx.progress(f"call to action: {cta or '(none)'}", 0.2)
    body = _facts(asker, prompts, theme, [s for s in (hook, cta) if s], (low, high), ctx)
    if not hook:
        # The model would not keep a hook short and on topic; its shortest fact can open the short
        # instead, or else the topic itself, asked as the question the short answers.
        short = [s for s in body if word_count(s) <= MAX_HOOK_WORDS and on_topic(s, topical)]
        if short:
            hook = short[0]
            body.remove(hook)
        elif 3 <= word_count(theme.topic) <= MAX_HOOK_WORDS:
            hook = topic_as_hook(theme.topic)
            ctx.log(f"no usable hook from the model; the topic opens the short: {hook!r}")
            while len(body) > 1 and sum(map(word_count, [hook, cta, *body])) > high:
                body.pop()  # the facts were gathered for a script without this hook
    draft = Draft(hook, body, cta)
    if problems(draft, low, high):
        draft = rescue(draft, theme, lang, (low, high), ctx)
    draft.queries = choose_queries(draft.queries, draft.sentences, theme)
    return draft, asker.calls


def _facts(
    asker: _PartAsker, prompts: PartPrompts, theme: Theme, fixed: list[str], limits: tuple[int, int],
    ctx: StageContext,
) -> list[str]:
    """Body sentences from repeated fact calls, new ones only, until the middle of the word range."""
    low, high = limits
    target = (low + high) // 2
    room = high - sum(map(word_count, fixed))
    topical = set(content_words(theme.topic))
    seen = [*fixed, *prompts.examples()]
    asks = [few_shot(ask, prompts.fact_shots, theme.topic) for ask in prompts.fact_asks]
    body: list[str] = []
    for call in range(FACT_CALLS_PER_ATTEMPT * max(1, asker.params.max_attempts)):
        for sentence in asker.sentences(asks[call % len(asks)]):
            fits = sum(map(word_count, body)) + word_count(sentence) <= room
            if fits and not duplicate(sentence, [*seen, *body], topical):
                body.append(sentence)
        done = sum(map(word_count, [*fixed, *body]))
        ctx.progress(f"{done} of ~{target} words after {asker.calls} model calls", 0.2 + 0.75 * min(1.0, done / target))
        if done >= target:
            break
    return body


class _PartAsker:
    """Short calls to the model, each with its own seed so that asking again gives a new answer."""

    def __init__(self, backend: ChatBackend, params: ScriptParams, ctx: StageContext) -> None:
        self.backend = backend
        self.params = params
        self.ctx = ctx
        self.calls = 0

    def _ask(self, messages: list[Message], max_tokens: int) -> str:
        # Greedy decoding would give the same answer every time; these calls always sample.
        temperature = self.params.llm.temperature if self.params.llm.temperature > 0 else 0.7
        answer = self.backend.complete(
            messages, max_tokens=max_tokens, temperature=temperature, seed=self.params.llm.seed + self.calls,
        )
        self.calls += 1
        return answer

    def sentences(self, messages: list[Message]) -> list[str]:
        answer = self._ask(messages, FACT_MAX_TOKENS)
        found = split_sentences("\n".join(clean_line(line) for line in answer.splitlines()))
        kept = [s for s in found if usable_sentence(s)]
        if len(kept) < len(found):
            self.ctx.log(f"kept {len(kept)} of {len(found)} sentences from {preview(answer, 120)!r}")
        return kept

    def line(self, prompts: list[list[Message]], fits) -> str:
        """The first answer whose first line (or first sentence) fits; empty when none did."""
        for _ in range(max(1, self.params.max_attempts)):
            for messages in prompts:
                answer = self._ask(messages, LINE_MAX_TOKENS)
                first_line = next((c for c in map(clean_line, answer.splitlines()) if c), "")
                sentences = split_sentences(first_line)
                for candidate in (first_line, sentences[0] if sentences else ""):
                    if candidate and candidate[-1] in ".!?…" and fits(candidate) and plain(candidate):
                        return candidate
                self.ctx.log(f"rejected {preview(answer, 120)!r}")
        return ""


# --- assembly ------------------------------------------------------------------------------


def _script(draft: Draft, theme: Theme, language: str, backend: str, attempts: int) -> Script:
    return Script(
        title=theme.topic, hook=draft.hook, body=list(draft.body), cta=draft.cta,
        broll_queries=list(draft.queries), language=language, backend=backend, attempts=attempts,
        fallbacks=list(draft.fallbacks),
    )


if __name__ == "__main__":
    stage_main(run, Params)
