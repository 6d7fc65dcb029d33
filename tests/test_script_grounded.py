"""The script stage writes from sources: one shaped answer, each sentence checked, sources.txt beside the short.

The OpenAI-compatible backend runs against the loopback chat server
(tests/llm_server.py), the wiki against the loopback MediaWiki
(tests/wiki_server.py), and the sources are real files made by the tests.
"""

from __future__ import annotations

import json

import pytest

from aishorts.ipc.params import LlmParams, ScriptParams
from llm_server import ChatServer, chat, raw
from script_helpers import THEME, llm
from source_files import OCTOPUS
from aishorts.stages.grounding.checks import numbers_in, source_numbers, support
from aishorts.stages.grounding.passages import split_passages
from wiki_server import WikiServer

pytestmark = pytest.mark.usefixtures("own_cache")

TRUE_BODY = [
    "Two branchial hearts pump blood through the gills.",
    "A systemic heart pumps that blood through the body.",
    "The systemic heart stops beating when the octopus swims.",
    "That is why octopuses tire quickly and prefer to crawl.",
    "Octopus blood is blue because of hemocyanin.",
    "Hemocyanin is a protein that contains copper and carries oxygen.",
    "It carries oxygen well in cold water with little oxygen.",
    "Each of the eight arms is lined with suckers that taste what they touch.",
    "About two thirds of its neurons lie in its arms.",
    "Swimming makes octopuses tire quickly, so they crawl instead.",
]
INVENTED = "Octopuses have nine hearts and sing to each other at night."


def script_json(body: list[str], hook: str = "A giant Pacific octopus has three hearts.") -> str:
    return json.dumps({"hook": hook, "body": body, "cta": "Follow for more strange facts about the ocean.",
                       "queries": ["octopus crawling", "blue blood", "octopus arms"]})


@pytest.fixture
def source_file(tmp_path):
    path = tmp_path / "octopus.txt"
    path.write_text("Octopus\n\n" + OCTOPUS["Octopus"] + "\n")
    return path


def test_a_script_from_a_source_is_asked_for_in_its_shape_checked_and_cited(run_stage_inline, tmp_path, source_file):
    body = [*TRUE_BODY[:-1], "The giant Pacific octopus can weigh 50 kilograms."]  # (TRUE_BODY's last repeats)
    with ChatServer([chat(script_json(body, hook="Octopuses have three hearts."))]) as server:
        params = ScriptParams(min_words=100, sources=[str(source_file)], llm=llm(server))
        script, events = run_stage_inline(tmp_path / "run", "script", params, theme=THEME)
    [request] = server.requests
    assert request.body["response_format"]["type"] == "json_schema"
    assert request.body["response_format"]["json_schema"]["schema"]["required"] == ["hook", "body", "cta", "queries"]
    assert "Two branchial hearts pump blood through the gills" in request.text()
    assert script.grounding == "grounded in 1 source"
    assert script.body == body[:-1] or script.body == body
    assert script.fallbacks == [] and script.attempts == 1
    assert script.broll_queries[:3] == ["octopus crawling", "blue blood", "octopus arms"]
    assert [s.title for s in script.sources] == ["octopus"] and script.sources[0].origin == "octopus.txt"
    checked = [s for s in script.support if s.part != "cta"]
    assert len(checked) == len(script.sentences) - 1
    assert all(s.supported and s.source == 0 and s.passage for s in checked if s.how != "unchecked")
    cited = (tmp_path / "run" / "sources.txt").read_text()
    assert "grounded in 1 source" in cited and "octopus.txt" in cited
    assert any("grounded in 1 source" in e.message for e in events if e.kind == "note")


def test_an_unsupported_sentence_is_rewritten_once_from_the_source(run_stage_inline, tmp_path, source_file):
    body = [*TRUE_BODY[:5], INVENTED, *TRUE_BODY[5:9]]
    rewritten = json.dumps({"sentences": ["Octopuses have three hearts and prefer to crawl."]})
    with ChatServer([chat(script_json(body)), chat(rewritten)]) as server:
        params = ScriptParams(sources=[str(source_file)], llm=llm(server))
        script, _ = run_stage_inline(tmp_path / "run", "script", params, theme=THEME)
    assert len(server.requests) == 2
    assert INVENTED in server.requests[1].text()
    assert server.requests[1].body["response_format"]["json_schema"]["schema"]["properties"]["sentences"]["maxItems"] == 1
    assert INVENTED not in script.body and "Octopuses have three hearts and prefer to crawl." in script.body
    [record] = [s for s in script.support if s.how == "rewritten"]
    assert record.supported and record.share >= 0.6
    assert any("rewritten" in f for f in script.fallbacks)


def test_a_sentence_still_unsupported_after_its_rewrite_is_replaced_by_the_sources_own(
    run_stage_inline, tmp_path, source_file,
):
    body = [*TRUE_BODY[:5], INVENTED, "The giant Pacific octopus can weigh 90 kilograms.", *TRUE_BODY[5:9]]
    still_wrong = json.dumps({"sentences": ["Octopuses sing at night in nine voices.", "It can weigh 90 kilograms."]})
    with ChatServer([chat(script_json(body, hook="Octopuses have three hearts.")), chat(still_wrong)]) as server:
        params = ScriptParams(min_words=100, sources=[str(source_file)], llm=llm(server))
        script, _ = run_stage_inline(tmp_path / "run", "script", params, theme=THEME)
    assert not any("nine" in s or "90" in s or "sing" in s for s in script.sentences)
    assert 100 <= script.word_count <= 125
    taken = [s for s in script.support if s.how == "from_source"]
    assert taken and all(s.supported and s.text in OCTOPUS["Octopus"] for s in taken)
    assert any("dropped" in f for f in script.fallbacks)


def test_the_sources_own_sentences_that_fill_the_budget_never_open_on_a_pronoun_told_alone(run_stage_inline, tmp_path):
    """"It carries oxygen ..." after a long sentence would leave the viewer asking what "it" is: it is left out, or
    told after its subject when that one is too short to be chosen by itself."""
    source = tmp_path / "octopus.txt"
    source.write_text("Octopus\n\n" + OCTOPUS["Octopus"] + " Octopus ink is dark. It hides an octopus from its"
                      " enemies while it escapes into the rocks. The common octopus lives in warm coastal waters"
                      " around the world, from the Mediterranean Sea to the Caribbean Sea. It hunts crabs and"
                      " clams at night among the octopus rocks of those warm coastal waters.\n")
    body = [TRUE_BODY[0], INVENTED, "Octopuses fly to the Moon every winter to lay their eggs.", TRUE_BODY[4]]
    still_wrong = json.dumps({"sentences": ["Octopuses sing at night in nine voices.", "They fly to the Moon."]})
    with ChatServer([chat(script_json(body)), chat(still_wrong)]) as server:
        params = ScriptParams(min_words=100, sources=[str(source)], llm=llm(server))
        script, _ = run_stage_inline(tmp_path / "run", "script", params, theme=THEME)
    taken = [s.text for s in script.support if s.how == "from_source"]
    assert taken, "the budget was filled from the source"
    assert not any(text.startswith(("It ", "They ")) for text in taken), taken
    assert not any("hunts crabs" in text for text in taken), "its subject was too long to join: left out"
    assert all(text in source.read_text() for text in taken)


def test_an_endpoint_that_refuses_the_schema_is_asked_in_plain_words(run_stage_inline, tmp_path, source_file):
    plain = "\n".join(["An octopus has three hearts that share the work.", *TRUE_BODY,
                       "Follow for more strange facts about the ocean.", "---", "octopus crawling"])
    refusal = raw(400, '{"error": {"message": "response_format json_schema is not supported"}}')
    with ChatServer([refusal, chat(plain)]) as server:
        params = ScriptParams(sources=[str(source_file)], llm=llm(server))
        script, _ = run_stage_inline(tmp_path / "run", "script", params, theme=THEME)
    assert "response_format" in server.requests[0].body and "response_format" not in server.requests[1].body
    assert script.grounding == "grounded in 1 source" and TRUE_BODY[0] in script.body


def test_with_no_source_the_wiki_article_grounds_the_script_and_is_credited(run_stage_inline, tmp_path):
    with WikiServer(OCTOPUS, formatversion=1) as wiki, ChatServer([chat(script_json(TRUE_BODY))]) as server:
        params = ScriptParams(wiki_url=wiki.url, llm=llm(server))
        script, _ = run_stage_inline(tmp_path / "run", "script", params, theme=THEME)
    assert script.grounding == "grounded in 1 source"
    [source] = script.sources
    assert source.origin == f"{wiki.url}/wiki/Octopus" and "Share Alike" in source.licence
    cited = (tmp_path / "run" / "sources.txt").read_text()
    assert f"{wiki.url}/wiki/Octopus" in cited and "Credit:" in cited


def test_with_no_source_and_the_wiki_off_the_script_is_written_and_says_it_is_unchecked(run_stage_inline, tmp_path):
    from test_stage_theme_script import GOOD_SCRIPT

    with ChatServer([chat(GOOD_SCRIPT)]) as server:
        params = ScriptParams(wiki_url="off", llm=llm(server))
        script, events = run_stage_inline(tmp_path / "run", "script", params, theme=THEME)
    assert "response_format" not in server.requests[0].body
    assert script.grounding.startswith("not grounded: facts unchecked") and script.sources == []
    assert "not checked" in (tmp_path / "run" / "sources.txt").read_text()
    assert any(e.message.startswith("not grounded") for e in events if e.kind == "note")


def test_a_source_that_cannot_be_read_stops_the_stage_with_its_name(run_stage_inline, tmp_path):
    from aishorts.stages.common.context import StageError

    params = ScriptParams(sources=[str(tmp_path / "gone.pdf")], llm=LlmParams(backend="openai", model="m"))
    with pytest.raises(StageError, match="gone.pdf: no such file"):
        run_stage_inline(tmp_path / "run", "script", params, theme=THEME)


def test_numbers_a_sentence_states_must_be_in_the_source_in_digits_or_words():
    passages = split_passages([OCTOPUS["Octopus"]])
    known = source_numbers([p.text for p in passages])
    assert [v for _, v in numbers_in("It weighs 1,500 kg, twice as much, in 3.5 years.")] == [1500, 3.5, 2]
    assert support("The giant Pacific octopus can weigh 50 kilograms.", passages, known).supported
    assert support("An octopus has 3 hearts.", passages, known).supported  # "three" in the source
    weak = support("The giant Pacific octopus can weigh 90 kilograms.", passages, known)
    assert not weak.supported and weak.missing_numbers == ["90"]
    assert not support(INVENTED, passages, known).supported


def test_the_local_model_writes_a_grounded_script_in_the_schemas_shape(run_stage_inline, tmp_path, source_file):
    """Real llama.cpp (SmolLM2): the grammar from the JSON schema gives a parseable script on the first answer,
    and whatever the tiny model invents is checked away: every body sentence kept is supported."""
    params = ScriptParams(min_words=40, max_words=80, sources=[str(source_file)],
                          llm=LlmParams(backend="local", model="SmolLM2-135M-Instruct", seed=3))
    script, events = run_stage_inline(tmp_path / "run", "script", params, theme=THEME)
    assert script.grounding == "grounded in 1 source"
    assert 40 <= script.word_count <= 80
    assert script.attempts == 1
    assert any(e.message.startswith("first answer:") for e in events if e.kind == "log")
    body = [s for s in script.support if s.part == "body"]
    assert body and all(s.supported for s in body)
    assert 3 <= len(script.broll_queries) <= 5


QWEN = "Qwen2.5-Coder-1.5B-Instruct"


def test_the_local_model_refuses_a_language_it_does_not_write_and_names_those_it_does(run_stage_inline, tmp_path):
    from aishorts.stages.common.context import StageError

    params = ScriptParams(language="fr-fr", wiki_url="off", llm=LlmParams(backend="local", model=QWEN))
    with pytest.raises(StageError, match=r"cannot write fr narration \(it writes en, es, pt\); use --llm openai"):
        run_stage_inline(tmp_path / "run", "script", params, theme=THEME)


@pytest.mark.slow
def test_given_a_source_the_local_model_opens_for_portuguese():
    from aishorts.stages.llm.chat import LocalGguf

    backend = LocalGguf.open(LlmParams(backend="local", model=QWEN), None, "pt", from_source=True)
    assert backend.label == f"local:{QWEN}"


def test_json_the_model_wrote_inside_a_body_string_is_never_narrated():
    from aishorts.stages.script.grounded import parse_answer

    answer = json.dumps({"hook": "O polvo tem três corações.", "cta": "Siga para mais.", "queries": [],
                         "body": ['hook": "Descubra por que o polvo tem três corações!', "O sangue do polvo é azul.",
                                  'Ele nada pouco.", "cta": "Siga para mais.']})
    assert parse_answer(answer).body == ["Descubra por que o polvo tem três corações!", "O sangue do polvo é azul."]


def test_the_budget_is_met_from_the_answers_own_sentences_the_earliest_kept():
    from aishorts.stages.script.grounded import choose_sentences

    # 20 + 30 + 15 = 65 fits 60-70; the third (25) would pass 70 and is left out
    assert choose_sentences([20, 30, 25, 15, 18], 60, 70) == [0, 1, 3]
    # the first must go when every choice that keeps it misses the budget
    assert choose_sentences([50, 30, 35], 60, 70) == [1, 2]
    assert choose_sentences([40, 40], 50, 70) is None  # one is too few, both too many
    assert choose_sentences([10, 12], 50, 70) is None  # all of them too few


def test_the_stage_asks_for_spare_sentences_and_keeps_those_that_fit_with_no_second_request(
    run_stage_inline, tmp_path, source_file,
):
    from aishorts.stages.script.grounded import script_shape

    shape = script_shape(60, 75)
    body = TRUE_BODY[:9]
    assert sum(len(s.split()) for s in body) > 75  # the answer holds more than the budget
    with ChatServer([chat(script_json(body, hook="Octopuses have three hearts."))]) as server:
        params = ScriptParams(min_words=60, max_words=75, sources=[str(source_file)], llm=llm(server))
        script, events = run_stage_inline(tmp_path / "run", "script", params, theme=THEME)
    [request] = server.requests
    schema = request.body["response_format"]["json_schema"]["schema"]
    assert schema["properties"]["body"]["minItems"] == schema["properties"]["body"]["maxItems"] == shape.body
    assert f"exactly {shape.body} short spoken sentences" in request.text()
    assert 60 <= script.word_count <= 75 and script.fallbacks == []
    assert script.body == [s for s in body if s in script.body] and script.body[0] == body[0]
    assert any("supported body sentences chosen to fit 60-75" in e.message for e in events if e.kind == "log")


def test_the_local_models_sentences_are_bounded_word_by_word_by_the_schema():
    """Real llama.cpp (SmolLM2): the schema's patterns become grammar, so every body sentence of the answer has
    a word count inside the bounds, one sentence per item, in the Latin alphabet, whatever the tiny model wanted."""
    import re

    from aishorts.stages.llm.chat import LocalGguf
    from aishorts.stages.llm.prompts import LATIN_WORD, grounded_prompt, script_schema
    from aishorts.stages.script.grounded import answer_tokens, parse_answer, script_shape

    shape = script_shape(60, 80)
    backend = LocalGguf.open(LlmParams(backend="local", model="SmolLM2-135M-Instruct"), None, "en")
    messages = grounded_prompt(THEME, "en", 60, shape, [OCTOPUS["Octopus"]])
    answers = [backend.complete(messages, max_tokens=answer_tokens(shape), temperature=0.7, seed=seed,
                                schema=script_schema(shape, "en")) for seed in (1, 2, 3)]
    # The grammar bounds every word and sentence, not the answer's tokens: at some seeds and thread counts this
    # tiny model spells digit after digit (a token each) until the answer's tokens run out, unclosed.
    closed = [json.loads(answer) for answer in answers if _closes(answer)]
    assert closed, answers
    least, most = shape.sentence_words
    word = re.compile(LATIN_WORD)
    for data, answer in zip(closed, [a for a in answers if _closes(a)]):
        assert len(data["body"]) == shape.body
        for sentence in [*data["body"], data["hook"], data["cta"]]:
            assert sentence[-1] in ".!?" and not re.search(r"[.!?]\s", sentence)
            assert all(word.fullmatch(w.rstrip(".!?")) for w in sentence.split())
        assert all(least <= len(s.split()) <= most for s in data["body"])
        assert shape.hook_words[0] <= len(data["hook"].split()) <= shape.hook_words[1]
        assert len(parse_answer(answer).body) == shape.body


def _closes(answer: str) -> bool:
    try:
        json.loads(answer)
    except ValueError:
        return False
    return True


def test_a_local_model_is_given_the_sources_best_sentences_in_their_order_to_retell_one_by_one():
    from aishorts.ipc.artifacts import Theme
    from aishorts.stages.common.writing import word_count
    from aishorts.stages.script.grounded import SPARE_SHARE, facts_for

    passages = split_passages([OCTOPUS["Octopus"]])
    facts = facts_for(passages, THEME, 50)
    sentences = [s for p in passages for s in p.sentences]
    assert facts == [s for s in sentences if s in facts]  # the source's order: its story's
    assert sum(map(word_count, facts)) >= SPARE_SHARE * 50 > sum(map(word_count, facts[:-1]))
    assert facts_for(passages, Theme(topic="Octopus hearts", angle="", keywords=[]), 200) == []  # too little to retell


def test_a_fact_that_points_back_is_told_with_what_it_points_to_or_not_at_all():
    from aishorts.stages.script.grounded import facts_for

    text = ("Octopus blood is blue. It carries oxygen with hemocyanin, a protein that contains copper."
            " The giant squid (Architeuthis dux) has the largest eyes of any animal in the sea."
            " They are as wide as dinner plates in the largest squid ever measured."
            " Octopuses have three hearts that pump blood through the gills and the body."
            " An octopus can taste with the suckers on its eight arms.")
    facts = facts_for(split_passages([text]), THEME, 20)
    assert facts == [  # "They are as wide ...": its squid was no fact (brackets), so neither is it
        "Octopus blood is blue. It carries oxygen with hemocyanin, a protein that contains copper.",
        "Octopuses have three hearts that pump blood through the gills and the body.",
        "An octopus can taste with the suckers on its eight arms.",
    ]


def test_what_points_back_is_read_in_the_sources_language():
    """French "Il" is a pronoun: told after its short subject, or left out; Italian "Il" is an article and opens a
    fact that stands alone."""
    from aishorts.ipc.artifacts import Theme
    from aishorts.stages.script.grounded import facts_for

    theme = Theme(topic="Pourquoi la pieuvre a trois cœurs", angle="", keywords=["pieuvre", "cœurs", "polpo", "cuori"])
    french = ("Le sang est bleu. Il transporte l'oxygène grâce à l'hémocyanine, une protéine qui contient du cuivre."
              " Le calmar géant (Architeuthis dux) a les plus grands yeux de tous les animaux de la mer."
              " Ils sont aussi larges que des assiettes chez le plus grand calmar jamais mesuré."
              " Les pieuvres ont trois cœurs qui pompent le sang dans les branchies et dans le corps."
              " Une pieuvre peut goûter avec les ventouses de ses huit bras.")
    assert facts_for(split_passages([french]), theme, 25, "fr") == [
        "Le sang est bleu. Il transporte l'oxygène grâce à l'hémocyanine, une protéine qui contient du cuivre.",
        "Les pieuvres ont trois cœurs qui pompent le sang dans les branchies et dans le corps.",
        "Une pieuvre peut goûter avec les ventouses de ses huit bras.",
    ]
    italian = split_passages([
        "Il polpo ha tre cuori che pompano il sangue blu nelle branchie e in tutto il corpo dell'animale."
        " Il cuore sistemico del polpo smette di battere quando nuota, e per questo il polpo si stanca presto."
        " Questo spiega perché il polpo preferisce strisciare sul fondo del mare invece di nuotare a lungo."])
    told = facts_for(italian, theme, 30, "it")
    assert [fact.split()[0] for fact in told] == ["Il", "Il", "Questo"]  # "Questo" after the fact it points to
    assert facts_for(italian, theme, 30, "fr") == [], "read as French, both of its 'Il' sentences would point back"


def test_the_schema_numbers_each_retold_fact_and_the_script_holds_what_was_said_of_each():
    """Real llama.cpp (SmolLM2): body item k is fixed by the grammar to start `{"fact": k, "say": ` and its sentence
    bounded in words; the script keeps the sentences, not the numbers."""
    from dataclasses import replace

    from aishorts.stages.llm.chat import LocalGguf
    from aishorts.stages.llm.prompts import grounded_prompt, script_schema
    from aishorts.stages.script.grounded import answer_tokens, facts_for, parse_answer, script_shape

    passages = split_passages([OCTOPUS["Octopus"]])
    facts = facts_for(passages, THEME, 50)
    shape = replace(script_shape(60, 80), body=len(facts))
    backend = LocalGguf.open(LlmParams(backend="local", model="SmolLM2-135M-Instruct"), None, "en")
    messages = grounded_prompt(THEME, "en", 60, shape, [OCTOPUS["Octopus"]], facts)
    left_out = [s for p in passages for s in p.sentences if s not in facts]
    assert left_out and not any(s in messages[-1]["content"] for s in left_out)  # the facts alone, numbered
    assert all(f"{i}. {fact}" in messages[-1]["content"] for i, fact in enumerate(facts, 1))
    answers = [backend.complete(messages, max_tokens=answer_tokens(shape), temperature=0.7, seed=seed,
                                schema=script_schema(shape, "en", True, facts)) for seed in (1, 2, 3)]
    closed = [answer for answer in answers if _closes(answer)]
    assert closed, answers
    least, most = shape.sentence_words
    for answer in closed:
        body = json.loads(answer)["body"]
        assert [item["fact"] for item in body] == list(range(1, len(facts) + 1))
        assert all(least <= len(item["say"].split()) <= most for item in body)
        assert parse_answer(answer).body == [item["say"] for item in body]


def test_speculation_checks_drafts_from_the_facts_and_the_answer_still_follows_the_schema(monkeypatch):
    """Real llama.cpp (SmolLM2), the retelling asked as the stage asks it: with n-gram speculation the server checks
    drafted tokens (the facts' words) in batches and keeps some, and the grammar still holds every token to the
    schema. (Whether the scripts stay the same is the bench's to say: `tools.bench_grounded --speculation both`.)"""
    from dataclasses import replace

    from aishorts.stages.llm import chat
    from aishorts.stages.llm.prompts import grounded_prompt, script_schema
    from aishorts.stages.script.grounded import answer_tokens, facts_for, script_shape

    facts = facts_for(split_passages([OCTOPUS["Octopus"]]), THEME, 50)
    shape = replace(script_shape(60, 80), body=len(facts))
    request = {
        "messages": grounded_prompt(THEME, "en", 60, shape, [OCTOPUS["Octopus"]], facts),
        "max_tokens": answer_tokens(shape), "temperature": 0.3, "seed": 1,
        "response_format": chat._response_format(script_schema(shape, "en", True, facts)),
    }
    timings = {}
    for speculation in (None, chat.SPECULATIVE_NGRAM):
        monkeypatch.setattr(chat, "SPECULATIVE_NGRAM", speculation)
        backend = chat.LocalGguf.open(LlmParams(backend="local", model="SmolLM2-135M-Instruct"), None, "en")
        answer = backend._server.handle_chat_completions(request)
        timings[speculation] = answer["timings"]
        text = answer["choices"][0]["message"]["content"]
        if _closes(text):
            assert [item["fact"] for item in json.loads(text)["body"]] == list(range(1, len(facts) + 1))
    assert "draft_n" not in timings[None]
    drafted = timings[chat.SPECULATIVE_NGRAM]
    assert drafted["draft_n"] > 0 and 0 < drafted["draft_n_accepted"] <= drafted["draft_n"]
