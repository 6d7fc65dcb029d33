"""Scripts written in every language Kokoro speaks: asked for in it, checked to be in it, measured as it counts.

The language check runs on real text (the narrations of tools/bench_languages.py, and scripts the local
model wrote); generation runs against the loopback chat server, which answers in the language asked for or
not; the local model's own scripts per language are measured by `python -m tools.bench_languages --scripts N`
(too slow for the suite: a minute or more a script on two shared cores), and one enabled language besides
English is written by it for real in the slow test at the end. Languages the local model failed in are
refused when the request is read, before any stage runs.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from source_files import OCTOPUS

from aishorts.ipc.artifacts import Theme
from aishorts.ipc.languages import LANGUAGES, local_script_refusal
from aishorts.ipc.params import LlmParams, ScriptParams
from aishorts.ipc.request import RequestError, request_from
from llm_server import ChatServer, chat
from script_helpers import THEME, llm
from test_stage_theme_script import GOOD_SCRIPT
from aishorts.runner.options import build_params
from aishorts.stages.common.context import StageError
from aishorts.stages.common.writing import char_count, clean_line, word_count
from aishorts.stages.grounding.checks import numbers_in, source_numbers, support
from aishorts.stages.grounding.passages import split_passages
from aishorts.stages.llm.prompts import whole_prompt
from aishorts.stages.script.drafts import Draft, parse_whole, problems
from aishorts.stages.script.language_check import language_problem
from tests.runner_helpers import run_cli
from tools.bench_languages import SCRIPTS
from tools.bench_languages import TOPICS


SPANISH_SCRIPT = """El pulpo tiene tres corazones, y dos de ellos descansan.
Dos corazones pequeños bombean la sangre hacia las branquias, donde recoge oxígeno.
El tercer corazón envía esa sangre al resto del cuerpo.
La sangre del pulpo es azul, porque transporta el oxígeno con cobre en lugar de hierro.
Ese cobre funciona bien en el agua fría, pero no es muy eficiente.
Por eso el corazón principal necesita la ayuda de los dos pequeños.
Cuando un pulpo nada, su corazón principal deja de latir.
Por eso los pulpos prefieren arrastrarse por el fondo del mar.
Nadar los cansa muy rápido, así que lo guardan para escapar.
La próxima vez que veas un pulpo arrastrándose, sabrás por qué.
Síguenos para descubrir más secretos del océano.
---
octopus crawling on sea floor
blue blood cells
octopus swimming"""

ENGLISH_SCRIPT = GOOD_SCRIPT  # the stage tests' well-formed English answer


# --- is it in the language asked for? -------------------------------------------------------


@pytest.mark.parametrize("code", list(SCRIPTS))
def test_a_narration_in_each_language_passes_its_own_check(code):
    assert language_problem([SCRIPTS[code]], code) is None


@pytest.mark.parametrize(("text_in", "asked", "said"), [
    ("es", "it", "written in Spanish, not Italian"),
    ("it", "es", "written in Italian, not Spanish"),
    ("pt-br", "es", "written in Portuguese (Brazil), not Spanish"),
    ("es", "pt-br", "written in Spanish, not Portuguese"),
    ("fr-fr", "it", "written in French, not Italian"),
    ("en-us", "fr-fr", "written in English (US), not French"),
    ("zh", "ja", "kanji with almost no kana: Chinese, not Japanese"),
    ("ja", "zh", "kana: Japanese, not Mandarin Chinese"),
    ("en-us", "hi", "of its letters are in the writing of Hindi"),
    ("hi", "en-us", "of its letters are in the writing of English"),
])
def test_a_narration_in_another_language_is_caught(text_in, asked, said):
    assert said in language_problem([SCRIPTS[text_in]], asked)


def test_one_english_sentence_in_a_spanish_script_is_caught():
    sentences = parse_whole(SPANISH_SCRIPT).sentences
    assert language_problem(sentences, "es") is None
    sentences[3] = "Octopus blood is blue, because it carries oxygen with copper instead of iron."
    assert language_problem(sentences, "es") == "a sentence in English: 'Octopus blood is blue, because it carries oxygen with copper'"


# --- lengths as each language counts them ---------------------------------------------------


def test_chinese_and_japanese_are_timed_by_their_characters():
    ja, zh = SCRIPTS["ja"], SCRIPTS["zh"]
    assert (char_count(ja), word_count(ja)) == (74, round(74 / 2.4))  # 300 characters a minute against 125 words
    assert (char_count(zh), word_count(zh)) == (42, round(42 / 2.08))  # 260 characters a minute
    assert word_count(SCRIPTS["es"]) == len(SCRIPTS["es"].split())


def test_a_short_japanese_script_is_refused_in_characters():
    draft = Draft("タコには心臓が三つあります。", ["血は青いです。"], "フォローしてください。")
    assert problems(draft, 110, 125) == ["29 characters (wanted 264-300 characters)"]


def test_the_prompt_asks_in_the_language_and_counts_as_it_does():
    [system, user] = whole_prompt(THEME, "ja", 110, 125, 60, 12)
    assert "Japanese" in system["content"]
    assert "never fewer than 264 or more than 300" in user["content"] and "characters" in user["content"]
    assert user["content"].endswith("ナレーションはすべて日本語で書いてください。")
    [_, user] = whole_prompt(THEME, "es", 110, 125, 60, 12)
    assert "never fewer than 110 or more than 125" in user["content"] and "words" in user["content"]
    assert "visual search phrases in English" in user["content"]
    assert user["content"].endswith("Escribe toda la narración en español.")


# --- generation: asked again, then refused ---------------------------------------------------


def test_an_answer_in_the_wrong_language_is_asked_for_again(run_stage_inline, tmp_path):
    with ChatServer([chat(ENGLISH_SCRIPT), chat(SPANISH_SCRIPT)]) as server:
        script, events = run_stage_inline(tmp_path, "script", ScriptParams(llm=llm(server), language="es",
                                                                           wiki_url="off"), theme=THEME)
    assert script.attempts == 2 and script.language == "es"
    assert script.hook == "El pulpo tiene tres corazones, y dos de ellos descansan."
    assert any("not in the language asked for: written in English (US), not Spanish" in e.message for e in events)
    assert "Escribe toda la narración en español." in server.requests[0].text()
    assert "That answer was rejected" in server.requests[1].text()


def test_a_model_that_only_answers_in_another_language_gives_no_script(run_stage_inline, tmp_path):
    with ChatServer([chat(ENGLISH_SCRIPT)]) as server:
        with pytest.raises(StageError, match=r"did not write the script in Spanish \(written in English.*--script FILE"):
            run_stage_inline(tmp_path, "script", ScriptParams(llm=llm(server), language="es", max_attempts=2,
                                                              wiki_url="off"), theme=THEME)


# --- which languages the local model writes -------------------------------------------------


REFUSED = [code for code, lang in LANGUAGES.items() if not lang.local_script]
ENABLED = [code for code, lang in LANGUAGES.items() if lang.local_script and not code.startswith("en")]


def test_english_is_written_locally_and_every_refusal_says_what_to_do():
    assert local_script_refusal("en") is None and local_script_refusal("en-gb") is None
    for code in REFUSED:
        said = local_script_refusal(code)
        assert LANGUAGES[code].name in said and "--script FILE" in said and "--llm openai" in said


@pytest.mark.parametrize("code", REFUSED)
def test_a_language_the_local_model_failed_in_is_refused_when_the_request_is_read(code):
    with pytest.raises(RequestError) as refused:
        build_params(request_from({"topic": "octopus hearts", "language": code, "llm": "local"}), None)
    assert refused.value.field == "language"
    # with a script of the user's, or an online model, the same language is fine
    build_params(request_from({"script": SCRIPTS[code], "language": code, "llm": "local"}), None)
    build_params(request_from({"topic": "octopus hearts", "language": code, "llm": "openai"}), None)


@pytest.mark.parametrize("code", ENABLED)
def test_a_language_the_local_model_writes_is_accepted(code):
    params = build_params(request_from({"topic": TOPICS[code], "language": code, "llm": "local"}), None)
    assert params.script.language == code


@pytest.mark.skipif(not REFUSED, reason="the local model writes every language")
def test_the_cli_refuses_it_before_any_stage_runs(tmp_path):
    out = run_cli("--topic", "octopus hearts", "--language", REFUSED[0], "--llm", "local",
                  "--run-dir", tmp_path / "run", cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    assert f"the local model does not write {LANGUAGES[REFUSED[0]].name} scripts" in out.stderr
    assert "--script FILE" in out.stderr and not (tmp_path / "run").exists()


@pytest.mark.slow
@pytest.mark.timeout(1500)
@pytest.mark.skipif(not ENABLED, reason="the local model writes no language but English")
def test_the_local_model_writes_a_script_in_an_enabled_language(run_stage_inline, tmp_path):
    # the fastest settings: one answer, a short budget (three answers of 400 tokens ran past 900 s on a busy machine)
    code = ENABLED[0]
    params = ScriptParams(language=code, wiki_url="off", max_attempts=1, min_words=40, max_words=80,
                          llm=LlmParams(backend="local", seed=1, max_tokens=250))
    topic = Theme(topic=TOPICS[code], angle="", keywords=[])
    script, _ = run_stage_inline(tmp_path, "script", params, theme=topic)
    assert script.backend == "local:Qwen2.5-Coder-1.5B-Instruct" and script.language == code
    assert language_problem(script.sentences, code) is None
    assert script.hook and script.body and script.cta


# --- written from a source in a language without spaces -------------------------------------

CHINESE_SOURCE = (
    "章鱼\n\n章鱼有三颗心脏。两颗鳃心把血液泵过鳃，让血液吸收氧气。第三颗心脏叫体心，它把血液送到全身。"
    "章鱼游泳的时候，体心会停止跳动。所以章鱼游泳很容易累，它们更喜欢在海底爬行。"
    "章鱼的血液是蓝色的，因为其中含有血蓝蛋白。血蓝蛋白含有铜，可以在寒冷缺氧的水里运输氧气。"
    "章鱼有八条腕，每条腕上都有吸盘，吸盘可以尝到它们碰到的东西。\n"
)
INVENTED_ZH = "章鱼会在夜里唱歌给彼此听。"


def test_a_chinese_script_from_a_source_is_checked_against_it_character_by_character(run_stage_inline, tmp_path,
                                                                                       monkeypatch):
    import json

    monkeypatch.setenv("AISHORTS_CACHE", str(tmp_path / "cache"))
    source = tmp_path / "章鱼.txt"
    source.write_text(CHINESE_SOURCE, encoding="utf-8")
    body = ["两颗鳃心把血液泵过鳃，让血液吸收氧气。", "章鱼游泳的时候，体心会停止跳动。", INVENTED_ZH,
            "章鱼的血液是蓝色的，因为含有血蓝蛋白。"]
    answer = json.dumps({"hook": "你知道章鱼游泳时体心会停止跳动吗？", "body": body, "cta": "关注我们，了解更多海洋趣闻。",
                         "queries": ["octopus swimming", "blue blood"]}, ensure_ascii=False)
    rewrite = json.dumps({"sentences": [INVENTED_ZH]}, ensure_ascii=False)
    with ChatServer([chat(answer), chat(rewrite)]) as server:
        params = ScriptParams(sources=[str(source)], llm=llm(server), language="zh", min_words=20, max_words=60)
        script, _ = run_stage_inline(tmp_path / "run", "script", params,
                                     theme=Theme(topic="章鱼的三颗心脏", angle="", keywords=[]))
    assert "请用简体中文写全部旁白。" in server.requests[0].text()
    assert script.grounding == "grounded in 1 source"
    assert INVENTED_ZH not in script.sentences
    assert "章鱼游泳的时候，体心会停止跳动。" in script.body
    checked = {s.text: s for s in script.support}
    assert checked["两颗鳃心把血液泵过鳃，让血液吸收氧气。"].supported
    assert language_problem(script.sentences, "zh") is None


# --- labels a model heads its lines with, in every language (English too) ----------------------------------

JAPANESE_ANSWER = """タイトル：タコに心臓が三つある理由
タコの健康状態をチェックしよう！
絶対に、タコの体は常に健やかです。
こんな話をもっと知りたい方はフォローしてください。"""
"""The start and end of what Qwen2.5-Coder-1.5B wrote for "タコに心臓が三つある理由" (seed 1, BENCHMARKS.md)."""


def test_a_japanese_title_label_is_cleaned_as_an_english_one_is():
    draft = parse_whole(JAPANESE_ANSWER)
    assert draft.hook == "タコに心臓が三つある理由"
    assert not any("タイトル" in sentence for sentence in draft.sentences)
    assert parse_whole(JAPANESE_ANSWER.replace("タイトル：", "Title: ")).hook == draft.hook


@pytest.mark.parametrize(("line", "said"), [
    # English labels: an article or an ordinal before them too; prose that only starts like one is left alone
    ("A hook: The sky is vast.", "The sky is vast."),
    ("First sentence: Honey is made in the hive.", "Honey is made in the hive."),
    ("Seventh sentence: Bees pollinate plants.", "Bees pollinate plants."),
    ("Step 2: The nectar thickens.", "The nectar thickens."),
    ("A hookworm is a parasite.", "A hookworm is a parasite."),
    ("First, bees gather nectar.", "First, bees gather nectar."),
    ("Gancho: ¿Sabías que el pulpo tiene tres corazones?", "¿Sabías que el pulpo tiene tres corazones?"),
    # Qwen's pt-br answer, seed 2 (BENCHMARKS.md): "Opening:" and "Invitation:" with an opening quote never closed
    ('Abertura: "Desculpe pela confusão anterior.', "Desculpe pela confusão anterior."),
    ('Convite: "Por favor, deixe suas dúvidas e sugestões no canal.', "Por favor, deixe suas dúvidas e sugestões no canal."),
    ('Frase2: "Quando eles se movem, eles fazem uma animação maravilhosa!',  # seed 3
     "Quando eles se movem, eles fazem uma animação maravilhosa!"),
    ("**Título:** Los pulpos y sus tres corazones", "Los pulpos y sus tres corazones"),
    ("Llamada a la acción: Síguenos para más datos del océano.", "Síguenos para más datos del océano."),
    ("Dato 2: La sangre del pulpo es azul.", "La sangre del pulpo es azul."),
    ("Accroche : La pieuvre a trois cœurs.", "La pieuvre a trois cœurs."),
    ("L'accroche : La pieuvre a trois cœurs.", "La pieuvre a trois cœurs."),
    ("Titolo: Perché i polpi hanno tre cuori", "Perché i polpi hanno tre cuori"),
    ("Invito all'azione: Seguici per altre curiosità.", "Seguici per altre curiosità."),
    ("【タイトル】タコに心臓が三つある理由", "タコに心臓が三つある理由"),
    # a JSON key left in a line when Qwen's grounded answer in Hindi was cut short (seed 2, BENCHMARKS.md)
    ('hook": "गलफड़ों के आधार पर खून को गलफड़ों से होकर पंप करता है।', "गलफड़ों के आधार पर खून को गलफड़ों से होकर पंप करता है।"),
    ('"hook": "La pieuvre est une créature marine extraordinaire.', "La pieuvre est une créature marine extraordinaire."),
    ("标题：章鱼为什么有三颗心脏", "章鱼为什么有三颗心脏"),
    ("结尾：关注我们，了解更多海洋趣闻。", "关注我们，了解更多海洋趣闻。"),
    ("शीर्षक: ऑक्टोपस के तीन दिल क्यों होते हैं", "ऑक्टोपस के तीन दिल क्यों होते हैं"),
])
def test_labels_in_every_language_are_cleaned_from_a_line_and_prose_is_left_alone(line, said):
    assert clean_line(line) == said


@pytest.mark.parametrize("line", [
    "Un pulpo: un animal con tres corazones.",  # an article and a noun before a colon is no label
    "La sangre: azul, por la hemocianina.",
    "Il sangue del polpo è blu: contiene rame.",
    "章鱼有三颗心脏：两颗鳃心和一颗体心。",
])
def test_a_sentence_with_a_colon_that_is_no_label_is_kept_whole(line):
    assert clean_line(line) == line


# --- numbers in Chinese and Japanese numerals, checked as digits are -------------------------


def test_chinese_and_japanese_numerals_are_numbers_the_sources_must_hold():
    assert numbers_in(SCRIPTS["ja"]) == [("三", 3), ("二", 2), ("三", 3)]  # 三つ, 二つ, 三つ目
    assert numbers_in(SCRIPTS["zh"]) == [("三", 3), ("两", 2), ("三", 3)]  # 三颗, 两颗, 第三颗
    assert [value for _, value in numbers_in("两千三百零五只，二〇二四年，3万个，十二条")] == [3 * 10**4, 2305, 2024, 12]
    # "one" states no number in English and is left out; so is 一 (一起 "together", 一つ "one"), and 千万 ("by all
    # means") has no digit
    assert numbers_in("我们一起去看看。千万不要错过。") == []


def test_a_chinese_sentence_with_a_numeral_the_source_lacks_is_unsupported():
    passages = split_passages([CHINESE_SOURCE])
    known = source_numbers([CHINESE_SOURCE])
    assert support("章鱼有八条腕，每条腕上都有吸盘。", passages, known).supported
    assert support("章鱼有8条腕，每条腕上都有吸盘。", passages, known).supported  # the same number in digits
    wrong = support("章鱼有九条腕，每条腕上都有吸盘。", passages, known)
    assert not wrong.supported and wrong.missing_numbers == ["九"]
    assert support("章鱼有9条腕，每条腕上都有吸盘。", passages, known).missing_numbers == ["9"]


# --- a source in another language than the short's -------------------------------------------

SPANISH_SOURCE = Path(__file__).resolve().parent.parent / "tools" / "bench_sources" / "pulpo.txt"


def english_source(tmp_path: Path) -> Path:
    path = tmp_path / "octopus.txt"
    path.write_text("Octopus\n\n" + OCTOPUS["Octopus"] + "\n", encoding="utf-8")
    return path


def test_an_english_source_for_a_spanish_short_is_refused_before_any_model_is_asked(run_stage_inline, tmp_path):
    with ChatServer([chat(SPANISH_SCRIPT)]) as server:
        params = ScriptParams(sources=[str(english_source(tmp_path))], llm=llm(server), language="es")
        with pytest.raises(StageError) as refused:
            run_stage_inline(tmp_path / "run", "script", params, theme=THEME)
    said = str(refused.value)
    assert "the source octopus.txt is in English (US) and the short is in Spanish" in said
    assert "Give a source in Spanish, or make the short in English (US) (--language en)" in said
    assert server.requests == []


def test_beside_a_source_in_the_shorts_language_one_in_another_is_left_out(run_stage_inline, tmp_path):
    import json

    body = ["El corazón sistémico deja de latir cuando el pulpo nada.",
            "La sangre del pulpo es azul y transporta el oxígeno con la hemocianina."]
    answer = json.dumps({"hook": "¿Sabías que el pulpo tiene tres corazones?", "body": body,
                         "cta": "Síguenos para más datos curiosos del océano.", "queries": ["octopus"]},
                        ensure_ascii=False)
    with ChatServer([chat(answer)]) as server:
        params = ScriptParams(sources=[str(english_source(tmp_path)), str(SPANISH_SOURCE)], llm=llm(server),
                              language="es", min_words=20, max_words=60)
        script, events = run_stage_inline(tmp_path / "run", "script", params,
                                          theme=Theme(topic="El pulpo y sus tres corazones", angle="", keywords=[]))
    assert any("source octopus.txt left out: it is in English (US), the short in Spanish" in e.message for e in events)
    assert [source.origin for source in script.sources] == ["pulpo.txt"]
    assert "Octopus blood" not in server.requests[0].text()
    assert language_problem(script.sentences, "es") is None
