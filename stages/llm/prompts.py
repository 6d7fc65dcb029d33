"""What the stages ask the LLM: every prompt of the theme and script stages, with its worked examples.

Responsible for: the messages sent for a topic, an angle, a whole script (and
the firmer follow-up after a rejected one), and the hook, fact and
call-to-action questions for a model that must be asked in parts, in English
and Portuguese; the whole and grounded scripts also in Spanish, French, Hindi,
Italian, Japanese and Mandarin (English rules, a closing order in the
language itself, lengths in characters where words are not spaced). Not responsible for sending them (stages/llm/chat.py) nor for
judging the answers (the theme and script stages).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from aishorts.ipc.artifacts import Theme
from aishorts.ipc.languages import LANGUAGES
from aishorts.stages.common.writing import WORDS_PER_MINUTE, split_sentences
from aishorts.stages.llm.chat import Message


def few_shot(ask: str, shots: tuple[tuple[str, str], ...], subject: str) -> list[Message]:
    """`ask` about each example subject answered by its example, then `ask` about `subject`."""
    messages: list[Message] = []
    for example, answer in shots:
        messages += [{"role": "user", "content": ask.format(example)}, {"role": "assistant", "content": answer}]
    return [*messages, {"role": "user", "content": ask.format(subject)}]


# --- theme: a topic and an angle -----------------------------------------------------------


TOPIC_SHOTS = (
    ("animals", "Why octopuses have three hearts"),
    ("history", "How Roman roads lasted two thousand years"),
    ("technology", "The tiny chip inside every credit card"),
)
ANGLE_SHOTS = (
    ("Why octopuses have three hearts", "Two of the hearts stop beating whenever an octopus swims."),
    ("How Roman roads lasted two thousand years", "Roman engineers built roads in layers, like a cake of stone."),
)


def topic_prompts(category: str) -> list[list[Message]]:
    """Worked examples first: a 135M model copies a format far better than it follows "answer with X only"."""
    asks = (
        "Subject for a short video about {}:",
        "Name one surprising subject for a short video about {}, in a few words:",
        "A specific {} subject for a one-minute video, 3 to 8 words:",
    )
    system = {
        "role": "system", "content": "You suggest subjects for short educational videos. Reply with the subject only.",
    }
    return [[system, *few_shot(ask, TOPIC_SHOTS, category)] for ask in asks]


def angle_prompts(topic: str) -> list[list[Message]]:
    asks = (
        "The most surprising thing about: {}",
        "One surprising fact about: {}, in one plain sentence.",
        "{}: one surprising fact, in one short sentence.",
    )
    return [few_shot(ask, ANGLE_SHOTS, topic) for ask in asks]


# --- script: the whole narration at once ------------------------------------------------


def whole_prompt(theme: Theme, lang: str, low: int, high: int, seconds: int, hook_words: int) -> list[Message]:
    angle = f" ({theme.angle})" if theme.angle else ""
    if lang in TONGUES:
        return _whole_prompt_in(TONGUES[lang], theme.topic + angle, low, high, seconds, hook_words)
    if lang == "pt":
        system = "Você escreve a narração de vídeos verticais curtos. Responda só com texto falado."
        user = (
            "Escreva, em português do Brasil, a narração de um vídeo vertical de até"
            f" {seconds} segundos sobre: {theme.topic}{angle}\n"
            f"Regras:\n- Cerca de {(low + high) // 2} palavras no total (nunca menos de {low} nem mais de {high}).\n"
            f"- Primeira linha: uma frase de abertura com no máximo {hook_words} palavras.\n"
            "- Depois, frases curtas faladas, uma por linha.\n"
            "- Última linha da narração: um convite para seguir o canal ou comentar.\n"
            "- Só texto simples: sem markdown, sem títulos, sem marcadores, sem emojis, sem rótulos.\n"
            "- Depois da narração, uma linha só com \"---\" e então de 3 a 5 buscas visuais curtas para vídeos"
            " de banco de imagens (2 a 4 palavras, coisas concretas que uma câmera pode filmar), uma por linha."
        )
    else:
        system = "You write narration for vertical short videos. You answer with plain spoken text only."
        user = (
            f"Write the narration for a vertical video of at most {seconds} seconds about: {theme.topic}{angle}\n"
            f"Rules:\n- About {(low + high) // 2} words in total (never fewer than {low} or more than {high}).\n"
            f"- First line: a hook of at most {hook_words} words.\n"
            "- Then short spoken sentences, one per line.\n"
            "- Last line of the narration: invite viewers to follow or comment.\n"
            "- Plain text only: no markdown, no headings, no bullet points, no emojis, no labels.\n"
            "- After the narration, a line with only \"---\", then 3 to 5 short visual search phrases for stock"
            " footage (2 to 4 words, concrete things a camera can film), one per line."
        )
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def firmer(lang: str, reasons: list[str], low: int, high: int, hook_words: int) -> Message:
    """The follow-up to a rejected script: what was wrong with it, and the rules again."""
    listed = "; ".join(reasons)
    if lang in TONGUES:
        tongue = TONGUES[lang]
        return {"role": "user", "content": (
            f"That answer was rejected: {listed}. Write it again in {tongue.english} following every rule:"
            f" {tongue.size(low)} to {tongue.size(high)} {tongue.unit}, a hook of at most"
            f" {tongue.size(hook_words)} {tongue.unit}, spoken {tongue.english} only with no labels or markdown,"
            f" then \"---\" and the visual search phrases in English.\n{tongue.order}")}
    if lang == "pt":
        text = (
            f"Essa resposta foi rejeitada: {listed}. Escreva de novo seguindo todas as regras: entre {low} e {high}"
            f" palavras, abertura com no máximo {hook_words} palavras, só texto falado,"
            " sem rótulos nem markdown, depois \"---\" e as buscas visuais."
        )
    else:
        text = (
            f"That answer was rejected: {listed}. Write it again following every rule: {low} to {high} words,"
            f" a hook of at most {hook_words} words, spoken text only with no labels or markdown, then \"---\""
            " and the visual search phrases."
        )
    return {"role": "user", "content": text}


# --- script: in parts, for the tiny local model ------------------------------------------


@dataclass(frozen=True)
class PartPrompts:
    """What the tiny model is asked, with worked examples: it copies a format far better than it follows rules."""

    hook_ask: str
    hook_shots: tuple[tuple[str, str], ...]
    cta_asks: tuple[str, ...]
    cta_shots: tuple[tuple[tuple[str, str], ...], ...]
    fact_asks: tuple[str, ...]
    fact_shots: tuple[tuple[str, str], ...]

    def examples(self) -> list[str]:
        """The example answers: the model sometimes repeats them, and they must not reach the script."""
        shots = [*self.hook_shots, *self.fact_shots, *(s for group in self.cta_shots for s in group)]
        return [sentence for _, answer in shots for sentence in split_sentences(answer)]


PARTS = {
    "en": PartPrompts(
        hook_ask="Write a one-line hook for a short video about: {}",
        hook_shots=(
            ("how bees make honey", "Every spoonful of honey took bees a lifetime of work."),
            ("why the sky is blue", "The sky is not blue for the reason you think."),
        ),
        cta_asks=(
            "Write the closing line of a short video about: {}. Ask viewers to follow.",
            "Write a closing question for viewers of a short video about: {}. Ask them to comment.",
        ),
        cta_shots=(
            (("volcanoes", "Follow for more secrets of our restless planet."),
             ("ancient Rome", "Follow for more stories from the ancient world.")),
            (("volcanoes", "Which volcano would you visit first? Tell us in the comments."),
             ("ancient Rome", "Would you have survived in ancient Rome? Comment below.")),
        ),
        fact_asks=(
            "Tell me two short, surprising facts about: {}",
            "Explain in two short sentences something people rarely know about: {}",
        ),
        fact_shots=(
            ("how bees make honey", "A single bee makes only a twelfth of a teaspoon of honey in its whole life."
             " Bees fan the nectar with their wings until most of the water is gone."),
            ("the Moon", "The Moon is slowly drifting away from Earth, about four centimetres every year."
             " Long ago, a day on Earth lasted only a few hours."),
        ),
    ),
    "pt": PartPrompts(
        hook_ask="Escreva uma frase de abertura curta para um vídeo sobre: {}",
        hook_shots=(
            ("como as abelhas fazem mel", "Cada colher de mel custou a vida inteira de uma abelha."),
            ("por que o céu é azul", "O céu não é azul pelo motivo que você imagina."),
        ),
        cta_asks=(
            "Escreva a frase final de um vídeo curto sobre: {}. Peça para seguir o canal.",
            "Escreva uma pergunta final para quem assistiu a um vídeo sobre: {}. Peça um comentário.",
        ),
        cta_shots=(
            (("vulcões", "Siga para descobrir mais segredos da Terra."),
             ("Roma antiga", "Siga para mais histórias do mundo antigo.")),
            (("vulcões", "Qual vulcão você visitaria primeiro? Conte nos comentários."),
             ("Roma antiga", "Você sobreviveria na Roma antiga? Comente aqui.")),
        ),
        fact_asks=(
            "Conte dois fatos curtos e surpreendentes sobre: {}",
            "Explique em duas frases curtas algo que poucas pessoas sabem sobre: {}",
        ),
        fact_shots=(
            ("como as abelhas fazem mel", "Uma abelha produz só um duodécimo de colher de chá de mel na vida"
             " inteira. As abelhas abanam o néctar com as asas até quase toda a água evaporar."),
            ("a Lua", "A Lua se afasta da Terra cerca de quatro centímetros por ano."
             " Há muito tempo, um dia na Terra durava só algumas horas."),
        ),
    ),
}


# --- script: the other languages Kokoro speaks -------------------------------------------


@dataclass(frozen=True)
class Tongue:
    """A script language asked for in English rules with a closing order in the language itself: Qwen2.5 follows
    English rules best, and the order in the language keeps it from answering in English."""

    code: str
    """Kokoro's code (ipc/languages.py)."""
    english: str
    native: str
    order: str
    """"Write the narration in <language>", in the language."""

    @property
    def unit(self) -> str:
        return "words" if LANGUAGES[self.code].spaced else "characters"

    def size(self, words: int) -> int:
        """`words` as this language counts its length: words, or the characters that take as long to say."""
        per_minute = LANGUAGES[self.code].chars_per_minute
        return words if not per_minute else round(words * per_minute / WORDS_PER_MINUTE)


TONGUES = {
    "es": Tongue("es", "Spanish", "español", "Escribe toda la narración en español."),
    "fr": Tongue("fr-fr", "French", "français", "Écris toute la narration en français."),
    "hi": Tongue("hi", "Hindi", "हिन्दी", "पूरा वर्णन हिन्दी में, देवनागरी लिपि में लिखें।"),
    "it": Tongue("it", "Italian", "italiano", "Scrivi tutta la narrazione in italiano."),
    "ja": Tongue("ja", "Japanese", "日本語", "ナレーションはすべて日本語で書いてください。"),
    "zh": Tongue("zh", "Mandarin Chinese", "简体中文", "请用简体中文写全部旁白。"),
}
"""The script languages besides English and Portuguese (which have prompts of their own), by prompt key."""


def _whole_prompt_in(tongue: Tongue, subject: str, low: int, high: int, seconds: int, hook_words: int) -> list[Message]:
    system = (f"You write narration for vertical short videos in {tongue.english} ({tongue.native})."
              f" You answer with plain spoken {tongue.english} text only.")
    user = (
        f"Write, in {tongue.english}, the narration for a vertical video of at most {seconds} seconds about:"
        f" {subject}\n"
        f"Rules:\n- Every sentence of the narration in {tongue.english} ({tongue.native}), not English.\n"
        f"- About {tongue.size((low + high) // 2)} {tongue.unit} in total (never fewer than {tongue.size(low)}"
        f" or more than {tongue.size(high)}).\n"
        f"- First line: a hook of at most {tongue.size(hook_words)} {tongue.unit}.\n"
        "- Then short spoken sentences, one per line.\n"
        "- Last line of the narration: invite viewers to follow or comment.\n"
        "- Plain text only: no markdown, no headings, no bullet points, no emojis, no labels.\n"
        "- After the narration, a line with only \"---\", then 3 to 5 short visual search phrases in English for"
        " stock footage (2 to 4 words, concrete things a camera can film), one per line.\n"
        f"{tongue.order}"
    )
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def _grounded_prompt_in(
    tongue: Tongue, subject: str, seconds: int, shape: ScriptShape, passages: list[str], facts: list[str],
) -> list[Message]:
    given = "facts" if facts else "source passages"
    system = (f"You write narration for vertical short videos in {tongue.english} ({tongue.native}) using only"
              f" the {given} you are given. You answer with JSON only.")
    sizes = f"{tongue.size(shape.asked_words[0])} to {tongue.size(shape.asked_words[1])} {tongue.unit}"
    body = (f"- body: exactly {shape.body} short spoken sentences of {sizes}, one item per fact, in order:"
            " \"fact\" is the fact's number, \"say\" retells it close to its words, adding nothing.\n" if facts else
            f"- body: exactly {shape.body} short spoken sentences of {sizes}, each telling a different fact from the"
            " passages, close to their words.\n")
    user = (
        (f"Facts:\n{facts_block(facts)}\n\n" if facts else f"Source passages:\n{passages_block(passages)}\n\n")
        + f"Write, in {tongue.english}, the narration for a vertical video of at most {seconds} seconds about:"
        f" {subject}\n"
        f"Rules:\n- Say only what the {given} say: no fact, number or name that is not in them.\n"
        f"- hook, body and cta in {tongue.english} ({tongue.native}), not English.\n"
        f"- hook: one sentence of at most {tongue.size(shape.asked_hook_words)} {tongue.unit} that makes viewers"
        " curious.\n"
        + body +
        "- cta: one sentence inviting viewers to follow or comment.\n"
        "- queries: 3 to 5 short visual search phrases in English (2 to 4 words, concrete things a camera can"
        " film).\n"
        f"- Spoken text only: no markdown, no emojis, no {'fact' if facts else 'passage'} numbers.\n"
        f"{tongue.order}"
    )
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


# --- script: from source passages, in one call ------------------------------------------


@dataclass(frozen=True)
class ScriptShape:
    """The grounded script asked for: how many body sentences, and the words of each part, as the prompt says them
    and as the JSON schema bounds them (stages/script/grounded.py sizes it for the word budget)."""

    body: int
    """Body sentences, exactly: a few more than the budget needs, so the stage can choose among them."""
    asked_words: tuple[int, int]
    """Words per body sentence the prompt asks for."""
    sentence_words: tuple[int, int]
    """Words per body sentence the schema allows: wider than asked, so the grammar seldom cuts a sentence."""
    hook_words: tuple[int, int]
    """Words the schema allows the hook; the prompt asks for at most two fewer, so the bound seldom cuts one."""
    cta_words: tuple[int, int]

    @property
    def asked_hook_words(self) -> int:
        return self.hook_words[1] - 2


def passages_block(passages: list[str]) -> str:
    return "\n".join(f"[{i}] {text}" for i, text in enumerate(passages, 1))


def facts_block(facts: list[str]) -> str:
    return "\n".join(f"{i}. {text}" for i, text in enumerate(facts, 1))


def grounded_prompt(
    theme: Theme, lang: str, seconds: int, shape: ScriptShape, passages: list[str], facts: Sequence[str] = (),
) -> list[Message]:
    """The whole script from the passages, answered as JSON: hook, body sentences, call to action, queries.

    With `facts` (exactly `shape.body` of the source's own sentences, in its order) the passages are left out and
    body sentence k retells fact k: a small model paraphrases one given sentence far more faithfully than it picks
    distinct facts out of up to 600 words (it repeated itself and padded with claims the source lacks), and the
    prompt carries about 160 words of source instead."""
    angle = f" ({theme.angle})" if theme.angle else ""
    hook_words, (least, most) = shape.asked_hook_words, shape.asked_words
    facts = list(facts)
    if lang in TONGUES:
        return _grounded_prompt_in(TONGUES[lang], theme.topic + angle, seconds, shape, passages, facts)
    if lang == "pt":
        given = "fatos" if facts else "trechos"
        system = (f"Você escreve a narração de vídeos verticais curtos usando só os {given} que recebe."
                  " Responda só com JSON.")
        body = (f"- body: exatamente {shape.body} frases curtas faladas de {least} a {most} palavras: um item por fato,"
                " na ordem: \"fact\" é o número do fato, \"say\" o reconta com as palavras dele, sem"
                " acrescentar nada.\n" if facts else
                f"- body: exatamente {shape.body} frases curtas faladas de {least} a {most} palavras, cada uma"
                " contando um fato diferente dos trechos, com as palavras deles.\n")
        user = (
            (f"Fatos:\n{facts_block(facts)}\n\n" if facts else f"Trechos da fonte:\n{passages_block(passages)}\n\n")
            + f"Escreva, em português do Brasil, a narração de um vídeo vertical de até {seconds} segundos sobre:"
            f" {theme.topic}{angle}\n"
            f"Regras:\n- Diga só o que os {given} dizem: nenhum fato, número ou nome que não esteja neles.\n"
            f"- hook: uma frase de abertura com no máximo {hook_words} palavras que desperte curiosidade.\n"
            + body +
            "- cta: uma frase convidando para seguir o canal ou comentar.\n"
            "- queries: de 3 a 5 buscas visuais curtas (2 a 4 palavras, coisas que uma câmera pode filmar).\n"
            f"- Só texto falado: sem markdown, sem emojis, sem números de {'fato' if facts else 'trecho'}."
        )
    else:
        given = "facts" if facts else "source passages"
        system = (f"You write narration for vertical short videos using only the {given} you are given."
                  " You answer with JSON only.")
        body = (f"- body: exactly {shape.body} short spoken sentences of {least} to {most} words: one item per"
                " fact, in order: \"fact\" is the fact's number, \"say\" retells it close to its words, adding"
                " nothing.\n" if facts else
                f"- body: exactly {shape.body} short spoken sentences of {least} to {most} words, each telling a"
                " different fact from the passages in the passages' own words.\n")
        user = (
            (f"Facts:\n{facts_block(facts)}\n\n" if facts else f"Source passages:\n{passages_block(passages)}\n\n")
            + f"Write the narration for a vertical video of at most {seconds} seconds about: {theme.topic}{angle}\n"
            f"Rules:\n- Say only what the {given} say: no fact, number or name that is not in them.\n"
            f"- hook: one sentence of at most {hook_words} words that makes viewers curious.\n"
            + body +
            "- cta: one sentence inviting viewers to follow or comment.\n"
            "- queries: 3 to 5 short visual search phrases (2 to 4 words, concrete things a camera can film).\n"
            f"- Spoken text only: no markdown, no emojis, no {'fact' if facts else 'passage'} numbers."
        )
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


LATIN_WORD = r"[A-Za-z0-9'’¿¡À-ÖØ-öø-ÿŒœ-]{1,20}[,;:]?"
"""A word of a language written in the Latin alphabet, as the schema lets a sentence spell it: letters (with the
accents of Portuguese, Spanish, French and Italian), digits, apostrophes and hyphens, up to 20 of them, then a comma
at most. With any character but a space allowed, Qwen escaped a word bound by gluing words with commas and writing
Chinese inside English sentences ("Octopuses,with,its,unique,suckers,can,feel,..." as one "word")."""
BOUNDED_LANGUAGES = ("en", "pt", "es", "fr", "it")
"""Prompt languages whose sentences the schema bounds word by word: spaced, in the Latin alphabet."""


def sentence_schema(words: tuple[int, int]) -> dict:
    """One sentence of `words[0]` to `words[1]` words, one space between them, ending in . ! or ?: a pattern
    llama.cpp's json-schema-to-grammar turns into grammar, so the count is kept by the sampler, not the model."""
    least, most = words
    return {"type": "string", "pattern": f"^{LATIN_WORD}( {LATIN_WORD}){{{least - 1},{most - 1}}}[.!?]$"}


def query_schema() -> dict:
    """A visual search phrase of one to four words: bounded too, or a tiny model rambles on in it until the answer's
    tokens run out and the JSON never closes (SmolLM2 did)."""
    return {"type": "string", "pattern": f"^{LATIN_WORD}( {LATIN_WORD}){{0,3}}$"}


def script_schema(shape: ScriptShape, lang: str = "en", bounded: bool = True, facts: Sequence[str] = ()) -> dict:
    """The JSON shape of a grounded script: exactly `shape.body` body sentences and, where `bounded` and the
    language is spaced in the Latin alphabet, the words of every sentence bounded by the schema itself.

    With `facts`, body item k is `{"fact": k, "say": <its retelling>}`, the number fixed by the schema: without it
    Qwen left the order after a few facts and wrote one sentence over and over. (Fixed to the fact's first words
    instead, it went on from them half the time, and "say" held the fact's second half.)

    Bounds in words, not minLength/maxLength: llama.cpp expands a character bound into one nested repetition per
    character, which stalled SmolLM2 (nothing in 300 s). An endpoint is asked with `bounded=False`: not every
    server's structured output takes a pattern, and a model that size keeps to the lengths it is asked for."""
    words = bounded and lang in BOUNDED_LANGUAGES
    text = {"type": "string"}
    sentence = sentence_schema(shape.sentence_words) if words else text
    body: dict = {"type": "array", "items": sentence, "minItems": shape.body, "maxItems": shape.body}
    if facts:
        body = {"type": "array", "minItems": len(facts), "maxItems": len(facts), "prefixItems": [
            {"type": "object", "properties": {"fact": {"const": number}, "say": sentence},
             "required": ["fact", "say"], "additionalProperties": False} for number in range(1, len(facts) + 1)]}
    return {
        "type": "object",
        "properties": {
            "hook": sentence_schema(shape.hook_words) if words else text,
            "body": body,
            "cta": sentence_schema(shape.cta_words) if words else text,
            "queries": {"type": "array", "items": query_schema() if bounded else text, "minItems": 3, "maxItems": 5},
        },
        "required": ["hook", "body", "cta", "queries"],
        "additionalProperties": False,
    }


def rewrite_prompt(lang: str, sentences: list[str], passages: list[str]) -> list[Message]:
    """Ask for each sentence again, saying only what its passage says."""
    listed = "\n".join(f"{i}. {s}" for i, s in enumerate(sentences, 1))
    if lang in TONGUES:
        tongue = TONGUES[lang]
        user = (
            f"Source passages:\n{passages_block(passages)}\n\nThese sentences say things the passages do not say:\n"
            f"{listed}\n\nRewrite each one in {tongue.english}, in the same order, so that it says only what one"
            " passage says, with no number that is not in it. Answer with JSON: {\"sentences\": [...]}."
            f"\n{tongue.order}"
        )
        return [{"role": "user", "content": user}]
    if lang == "pt":
        user = (
            f"Trechos da fonte:\n{passages_block(passages)}\n\nEstas frases dizem coisas que os trechos não dizem:\n"
            f"{listed}\n\nReescreva cada uma, na mesma ordem, para que diga só o que um trecho diz, com as palavras"
            " dele e nenhum número que não esteja nele. Responda com JSON: {\"sentences\": [...]}."
        )
    else:
        user = (
            f"Source passages:\n{passages_block(passages)}\n\nThese sentences say things the passages do not say:\n"
            f"{listed}\n\nRewrite each one, in the same order, so that it says only what one passage says, in its"
            " words, with no number that is not in it. Answer with JSON: {\"sentences\": [...]}."
        )
    return [{"role": "user", "content": user}]


def rewrite_schema(count: int) -> dict:
    return {
        "type": "object",
        "properties": {"sentences": {"type": "array", "items": {"type": "string"}, "minItems": count,
                                     "maxItems": count}},
        "required": ["sentences"],
        "additionalProperties": False,
    }
