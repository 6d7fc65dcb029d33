"""The theme and script stages: user topics and scripts used as written, LLM output validated.

The OpenAI-compatible backend runs against a real loopback HTTP server that
answers with scripted text; the local SmolLM2 backend runs for real in the
slow test at the end.
"""

from __future__ import annotations

import re

import pytest

from aishorts.ipc.artifacts import Script, Theme
from aishorts.ipc.params import CATEGORIES, LlmParams, ScriptParams, ThemeParams
from llm_server import ChatServer, chat, closed_port_url
from script_helpers import THEME, llm
from aishorts.stages.common.context import StageError
from aishorts.stages.script.drafts import topic_as_hook
from aishorts.stages.script.stage import MAX_HOOK_WORDS


GOOD_SCRIPT = """An octopus has three hearts, and two of them take breaks.
Two small hearts push blood through the gills, where it picks up oxygen.
The third heart sends that blood around the rest of the body.
Octopus blood is blue, because it carries oxygen with copper instead of iron.
That copper works well in cold water, but it is not very efficient.
So the main heart needs help from the two smaller ones.
When an octopus swims, the main heart simply stops beating.
That is why octopuses prefer to crawl along the sea floor.
Swimming tires them out fast, so they save it for escapes.
Next time you see an octopus crawling, you will know why.
Follow for more strange facts about the ocean.
---
octopus crawling on sea floor
blue blood cells
octopus swimming
coral reef"""

PORTUGUESE_SCRIPT = """O polvo tem três corações, e dois deles fazem pausas.
Dois corações pequenos empurram o sangue pelas brânquias, onde ele pega oxigênio.
O terceiro coração manda esse sangue para o resto do corpo.
O sangue do polvo é azul, porque leva o oxigênio com cobre em vez de ferro.
Esse cobre funciona bem na água fria, mas não é muito eficiente.
Por isso o coração principal precisa da ajuda dos dois menores.
Quando um polvo nada, o coração principal simplesmente para de bater.
É por isso que os polvos preferem rastejar pelo fundo do mar.
Nadar cansa rápido, então ele guarda o nado para fugas.
Quando vir um polvo rastejando, você vai saber o motivo.
Siga para mais fatos estranhos sobre o oceano.
---
octopus crawling on sea floor
blue blood cells
octopus swimming"""

# Right length, right shape, but markup that no cleaning can make speakable: a table and a link.
MARKDOWN_SCRIPT = GOOD_SCRIPT.replace(
    "Octopus blood is blue,",
    "| Heart | Job |\n|-------|-----|\nRead [the study](https://example.com/octopus) first.\nOctopus blood is blue,",
)


def words_of(script: Script) -> list[str]:
    return [w.lower() for s in script.sentences for w in re.findall(r"[^\W\d_]+", s)]


# --- theme ---------------------------------------------------------------------------------


def test_a_user_topic_is_used_as_is_with_keywords_from_its_own_words(run_stage_inline, tmp_path):
    theme, events = run_stage_inline(tmp_path, "theme", ThemeParams(topic="  Why octopuses   have three hearts "))
    assert isinstance(theme, Theme)
    assert theme.topic == "Why octopuses have three hearts"
    assert theme.backend == "user" and theme.angle == ""
    assert {"octopuses", "hearts"} <= set(theme.keywords)
    assert not {"why", "have"} & set(theme.keywords)
    assert (tmp_path / "theme" / "artifact.json").is_file()


def test_a_user_topic_wins_over_a_category_which_is_kept(run_stage_inline, tmp_path):
    theme, _ = run_stage_inline(tmp_path, "theme", ThemeParams(topic="Tides", category="nature"))
    assert (theme.topic, theme.category, theme.backend) == ("Tides", "nature", "user")


@pytest.mark.parametrize(
    ("topic", "message"),
    [
        ("", "topic is empty"),
        ("   \n\t ", "topic is empty"),
        ("octopus " * 700, "at most 200 characters"),
        ("\x00\x01\x02binary\xff", "not readable text"),
        ("?!", "has no words"),
    ],
)
def test_a_topic_that_cannot_be_a_subject_is_refused(run_stage_inline, tmp_path, topic, message):
    with pytest.raises(StageError, match=message):
        run_stage_inline(tmp_path, "theme", ThemeParams(topic=topic))


def test_without_topic_or_known_category_the_theme_stage_says_what_it_needs(run_stage_inline, tmp_path):
    with pytest.raises(StageError, match="needs a topic or a category"):
        run_stage_inline(tmp_path / "a", "theme", ThemeParams())
    with pytest.raises(StageError, match=r"invalid parameters \(Invalid enum value 'gossip' - at `\$.category`\)"):
        run_stage_inline(tmp_path / "b", "theme", ThemeParams(category="gossip"))


def test_a_category_theme_comes_from_the_llm_after_rejecting_a_rambling_answer(run_stage_inline, tmp_path):
    rambling = ("Space is a vast and wonderful place full of stars and planets and galaxies that people have"
                " studied for thousands of years with telescopes and rockets")
    replies = [chat(rambling), chat('"How black holes bend light"'), chat("A black hole can bend light into a ring.")]
    with ChatServer(replies) as server:
        theme, events = run_stage_inline(tmp_path, "theme", ThemeParams(category="space", llm=llm(server), wiki_url="off"))
    assert theme.topic == "How black holes bend light"
    assert theme.angle == "A black hole can bend light into a ring."
    assert theme.category == "space" and theme.backend == "openai:test-model"
    assert {"black", "holes", "bend", "light"} <= set(theme.keywords)
    assert len(server.requests) == 3
    assert "space" in server.requests[0].text() and "space" in server.requests[1].text()
    assert "How black holes bend light" in server.requests[2].text()
    assert any(e.kind == "phase" and e.message == "generate" for e in events)


def test_a_category_theme_from_an_llm_that_never_answers_usefully_is_an_error(run_stage_inline, tmp_path):
    with ChatServer([chat("# Topics\n\n* **1.** | space | stars |")]) as server:
        with pytest.raises(StageError, match="did not give a space topic after 5 attempts.*pass --topic"):
            run_stage_inline(tmp_path, "theme", ThemeParams(category="space", llm=llm(server), wiki_url="off"))


def test_a_category_theme_without_a_usable_angle_keeps_the_topic_and_says_so(run_stage_inline, tmp_path):
    with ChatServer([chat("How black holes bend light"), chat("I'm sorry, I cannot help with that.")]) as server:
        theme, events = run_stage_inline(tmp_path, "theme", ThemeParams(category="space", llm=llm(server), wiki_url="off"))
    assert (theme.topic, theme.angle) == ("How black holes bend light", "")
    assert len(server.requests) == 1 + 5
    assert any(e.kind == "log" and "no usable angle after 5 attempts" in e.message for e in events)


def test_a_category_theme_with_the_llm_down_is_a_clear_error(run_stage_inline, tmp_path):
    params = ThemeParams(category=CATEGORIES[0], llm=LlmParams(backend="openai", base_url=closed_port_url(), model="m"),
                         wiki_url="off")
    with pytest.raises(StageError, match="cannot reach the LLM endpoint"):
        run_stage_inline(tmp_path, "theme", params)


# --- script from the user's text -----------------------------------------------------------


def test_a_user_script_is_split_into_hook_body_and_call_to_action(run_stage_inline, tmp_path):
    text = ("Octopuses have three hearts. Two hearts pump blood through the gills.\n"
            "The third heart feeds the body while copper turns their blood blue!\n\nFollow for more ocean facts.")
    script, events = run_stage_inline(tmp_path, "script", ScriptParams(script_text=text), theme=THEME)
    assert script.hook == "Octopuses have three hearts."
    assert script.body == ["Two hearts pump blood through the gills.",
                           "The third heart feeds the body while copper turns their blood blue!"]
    assert script.cta == "Follow for more ocean facts."
    assert script.backend == "user" and script.title == THEME.topic and script.word_count == 28
    assert 3 <= len(script.broll_queries) <= 5
    text_words = set(words_of(script)) | set(THEME.keywords)
    for query in script.broll_queries:
        assert set(query.split()) <= text_words, query
    assert len(set(script.broll_queries)) == len(script.broll_queries)


def test_emoji_are_left_out_of_the_narration_and_a_line_of_only_emoji_is_no_sentence(run_stage_inline, tmp_path):
    text = "Octopuses 🐙 have three hearts.\nTheir blood is blue because of copper! 💙\n🐠\nFollow for more ocean facts."
    script, _ = run_stage_inline(tmp_path, "script", ScriptParams(script_text=text), theme=THEME)
    assert (script.hook, script.body, script.cta) == (
        "Octopuses have three hearts.", ["Their blood is blue because of copper!"], "Follow for more ocean facts.")


def test_the_users_broll_terms_come_first_tidied_and_once_each_then_the_scripts_own(run_stage_inline, tmp_path):
    text = ("Octopuses have three hearts. Two hearts pump blood through the gills.\n"
            "The third heart feeds the body while copper turns their blood blue!\n\nFollow for more ocean facts.")
    params = ScriptParams(script_text=text, broll_terms=["  coral   reef ", "Coral Reef", "deep sea"])
    script, events = run_stage_inline(tmp_path, "script", params, theme=THEME)
    assert script.broll_queries[:2] == ["coral reef", "deep sea"]
    assert len(script.broll_queries) == 5  # fewer than three given: topped up from the script's words
    for query in script.broll_queries[2:]:
        assert set(query.split()) <= set(words_of(script)) | set(THEME.keywords), query
    assert any("b-roll terms: yours first" in e.message for e in events)


def test_the_users_broll_terms_replace_the_models_queries(run_stage_inline, tmp_path):
    terms = ["octopus heart", "copper", "gills", "sea floor", "ink cloud", "kelp"]
    with ChatServer([chat(GOOD_SCRIPT)]) as server:
        script, _ = run_stage_inline(tmp_path, "script", ScriptParams(llm=llm(server), broll_terms=terms),
                                     theme=THEME)
    assert script.broll_queries == terms[:5]  # as many as a script carries
    assert script.hook == "An octopus has three hearts, and two of them take breaks."  # the narration is the model's


def test_a_two_sentence_user_script_has_no_call_to_action(run_stage_inline, tmp_path):
    script, _ = run_stage_inline(
        tmp_path, "script", ScriptParams(script_text="Cats sleep a lot. They dream too"), theme=THEME,
    )
    assert (script.hook, script.body, script.cta) == ("Cats sleep a lot.", ["They dream too"], "")
    assert "cats" in " ".join(script.broll_queries)


def test_a_portuguese_user_script_keeps_its_language_and_gets_portuguese_queries(run_stage_inline, tmp_path):
    text = ("Os polvos têm três corações. O sangue deles é azul por causa do cobre."
            " Siga para mais curiosidades do oceano.")
    theme = Theme(topic="Por que os polvos têm três corações", angle="", keywords=["polvos", "corações"])
    script, _ = run_stage_inline(tmp_path, "script", ScriptParams(script_text=text, language="pt-br"), theme=theme)
    assert script.language == "pt-br"
    assert script.hook == "Os polvos têm três corações." and script.cta.startswith("Siga")
    assert "polvos" in script.broll_queries or any("polvos" in q for q in script.broll_queries)
    assert not {"para", "por", "do", "os"} & set(" ".join(script.broll_queries).split())


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "script is empty"),
        ("  \n\n \t ", "script is empty"),
        ("\x7fELF\x02\x01\x01\x00\x00\x00" + "\x00" * 40, "not readable text"),
        ("PK\x03\x04\ufffd\ufffd\x14\x00 word", "not readable text"),
        ("%$#@ 1234 5678 !!!! ???? 0000 ---- ++++ ====", "not readable text"),
    ],
)
def test_a_user_script_that_is_not_narration_is_refused(run_stage_inline, tmp_path, text, message):
    with pytest.raises(StageError, match=message):
        run_stage_inline(tmp_path, "script", ScriptParams(script_text=text), theme=THEME)


def test_a_user_script_too_long_for_the_platform_is_refused_with_what_to_do(run_stage_inline, tmp_path):
    text = "The ocean hides many strange animals in the deep dark water. " * 20  # 220 words, ~106 s
    with pytest.raises(StageError, match=r"220 words, about 106 s .* past the 60 s limit of shorts; cut it to about 125"
                                         r" words, or choose a longer platform: reels \(90 s\)"):
        run_stage_inline(tmp_path / "a", "script", ScriptParams(script_text=text), theme=THEME)
    shorter = "The ocean hides many strange animals in the deep dark water. " * 16  # 176 words, ~84 s
    reels = ScriptParams(script_text=shorter, platform="reels")
    script, _ = run_stage_inline(tmp_path / "b", "script", reels, theme=THEME)
    assert script.word_count == 176


# --- script written by an OpenAI-compatible model ------------------------------------------


def test_a_generated_script_is_validated_and_uses_the_model_queries(run_stage_inline, tmp_path):
    with ChatServer([chat(GOOD_SCRIPT)]) as server:
        script, _ = run_stage_inline(tmp_path, "script", ScriptParams(llm=llm(server)), theme=THEME)
    assert script.backend == "openai:test-model" and script.attempts == 1
    assert script.hook == "An octopus has three hearts, and two of them take breaks."
    assert script.cta == "Follow for more strange facts about the ocean."
    assert len(script.body) == 9 and 110 <= script.word_count <= 150
    assert script.broll_queries == [
        "octopus crawling on sea floor", "blue blood cells", "octopus swimming", "coral reef",
    ]
    [seen] = server.requests
    asked = seen.text()
    assert THEME.topic in asked
    assert "never fewer than 110 or more than 125" in asked  # 160 asked for, capped by 60 s at 150 words a minute
    assert "at most 60 seconds" in asked


def test_labels_and_bullets_are_stripped_when_that_is_all_that_is_wrong(run_stage_inline, tmp_path):
    lines = GOOD_SCRIPT.split("---")[0].strip().splitlines()
    labelled = "\n".join(
        ["Here is your script about octopus hearts:", f"**A hook:** {lines[0]}", "The body:"]
        + [f"- {line}" for line in lines[1:-1]] + [f"CTA: {lines[-1]}"]
    )
    with ChatServer([chat(labelled)]) as server:
        script, _ = run_stage_inline(tmp_path, "script", ScriptParams(llm=llm(server)), theme=THEME)
    assert script.attempts == 1
    assert script.hook == lines[0] and script.cta == lines[-1] and script.body == lines[1:-1]
    assert 3 <= len(script.broll_queries) <= 5  # none written by the model: taken from the narration


def test_markdown_debris_is_rejected_and_retried_with_a_firmer_instruction(run_stage_inline, tmp_path):
    with ChatServer([chat(MARKDOWN_SCRIPT), chat(GOOD_SCRIPT)]) as server:
        script, events = run_stage_inline(tmp_path, "script", ScriptParams(llm=llm(server)), theme=THEME)
    assert script.attempts == 2
    assert script.hook.startswith("An octopus has three hearts")
    first, second = server.requests
    assert "rejected" not in first.text()
    assert "That answer was rejected" in second.text() and "Write it again" in second.text()
    assert second.body["messages"][-2] == {"role": "assistant", "content": MARKDOWN_SCRIPT}
    assert second.body["seed"] != first.body["seed"]
    assert any(e.kind == "log" and "attempt 1 rejected" in e.message and "a table in" in e.message for e in events)


def test_leftover_prompt_text_is_rejected_and_retried(run_stage_inline, tmp_path):
    leftover = GOOD_SCRIPT.replace("\n---", "\nWord count: 124 (within the requested range)\n---")
    with ChatServer([chat(leftover), chat(GOOD_SCRIPT)]) as server:
        script, events = run_stage_inline(tmp_path, "script", ScriptParams(llm=llm(server)), theme=THEME)
    assert script.attempts == 2
    assert not any("count" in s.lower() for s in script.sentences)
    assert any(e.kind == "log" and "leftover prompt text in 'Word count: 124" in e.message for e in events)


def test_a_script_that_never_passes_validation_is_an_error_not_a_bad_video(run_stage_inline, tmp_path):
    short = "Octopuses have three hearts.\nThey are strange.\nFollow for more."
    with ChatServer([chat(short)]) as server:
        with pytest.raises(StageError, match=r"nothing usable about .*--script FILE"):
            run_stage_inline(tmp_path, "script", ScriptParams(llm=llm(server), max_attempts=2), theme=THEME)
    # two whole answers, then the parts ladder's bounded calls: hook and closing line (2 tries each prompt), 12 facts
    assert 2 < len(server.requests) <= 2 + 2 + 2 * 2 + 6 * 2


def test_a_hook_longer_than_twelve_words_does_not_open_the_short(run_stage_inline, tmp_path):
    long_hook = "Did you know that every single octopus swimming in the ocean today has three hearts?"
    body = GOOD_SCRIPT.replace("An octopus has three hearts, and two of them take breaks.", long_hook)
    with ChatServer([chat(body)]) as server:
        script, events = run_stage_inline(tmp_path, "script", ScriptParams(llm=llm(server), max_attempts=1),
                                          theme=THEME)
    assert any("the hook has 15 words" in e.message for e in events)
    assert len(script.hook.split()) <= MAX_HOOK_WORDS and script.hook != long_hook
    assert "the topic as the hook" in script.fallbacks


OPENING_LINES = {
    "Why octopuses have three hearts": "Here's why octopuses have three hearts.",
    "how honey bees make honey": "Here's how honey bees make honey.",
    "How do bees make honey": "How do bees make honey?",
    "What makes the sky blue": "What makes the sky blue?",
    "Why is the sky blue?": "Why is the sky blue?",
    "Dolphins sleep with one eye open": "Dolphins sleep with one eye open.",  # "do...", not a question
    "Islands of Greece": "Islands of Greece.",
    "Como as abelhas fazem mel": "Como as abelhas fazem mel?",
    "Comida de rua": "Comida de rua.",
    "章鱼的三颗心脏": "章鱼的三颗心脏。",
}
"""Topics, and the opening line each is said as when the script's own hook cannot be used."""


def test_the_topic_said_as_the_opening_line_is_a_question_only_when_it_is_one():
    assert {topic: topic_as_hook(topic) for topic in OPENING_LINES} == OPENING_LINES


def test_portuguese_generation_asks_in_portuguese(run_stage_inline, tmp_path):
    with ChatServer([chat(PORTUGUESE_SCRIPT)]) as server:
        script, _ = run_stage_inline(tmp_path, "script", ScriptParams(llm=llm(server), language="pt-br"), theme=THEME)
    assert script.language == "pt-br"
    assert "português do Brasil" in server.requests[0].text()


def test_generation_in_an_unsupported_language_points_to_a_user_script(run_stage_inline, tmp_path):
    with pytest.raises(StageError, match="'de-de' is not one Kokoro speaks.*--script FILE"):
        run_stage_inline(tmp_path, "script", ScriptParams(language="de-de"), theme=THEME)


def test_the_local_model_is_not_asked_for_a_language_it_failed_in(run_stage_inline, tmp_path):
    with pytest.raises(StageError, match=r"cannot write hi narration \(it writes en, es, pt\); use --llm openai"):
        run_stage_inline(tmp_path, "script", ScriptParams(language="hi"), theme=THEME)


def test_a_longer_platform_raises_the_word_target_only_as_far_as_asked(run_stage_inline, tmp_path):
    with ChatServer([chat(GOOD_SCRIPT)]) as server:
        run_stage_inline(tmp_path, "script", ScriptParams(llm=llm(server), platform="reels"), theme=THEME)
    assert "never fewer than 110 or more than 160" in server.requests[0].text()


# --- the fallback ladder --------------------------------------------------------------------


SHORT_NO_CTA = """---
Octopuses have three hearts, and each one has its own job.
Two small hearts push blood through the gills, where it picks up oxygen.
The third heart sends that blood around the rest of the body.
Octopus blood is blue, because it carries oxygen with copper instead of iron.
That copper works well in cold water, but it is not very efficient.
When an octopus swims, the main heart simply stops beating.
That is why octopuses prefer to crawl along the sea floor.
Swimming tires them out fast, so they save it for escapes."""


def test_a_nearly_right_answer_is_mended_by_the_ladder_and_says_so(run_stage_inline, tmp_path):
    # a leading "---" (a model echoing the prompt), no call to action, a little short
    with ChatServer([chat(SHORT_NO_CTA)]) as server:
        script, _ = run_stage_inline(tmp_path, "script", ScriptParams(llm=llm(server), min_words=110, max_words=140),
                                     theme=THEME)
    assert len(server.requests) == 1  # mended, not asked again
    assert script.hook == "Octopuses have three hearts, and each one has its own job."
    assert script.cta == "Follow for more stories like this one."
    assert "a stock closing line" in script.fallbacks
    assert any("shorter script than asked" in f for f in script.fallbacks)
    assert script.body[-1] == "Swimming tires them out fast, so they save it for escapes."  # the model's last line


def test_a_script_written_as_asked_needs_no_fallback(run_stage_inline, tmp_path):
    with ChatServer([chat(GOOD_SCRIPT)]) as server:
        script, _ = run_stage_inline(tmp_path, "script", ScriptParams(llm=llm(server)), theme=THEME)
    assert script.fallbacks == []


def test_answers_with_nothing_usable_still_fail_with_advice(run_stage_inline, tmp_path):
    with ChatServer([chat("| a | b |\n|---|---|")] * 3) as server:
        with pytest.raises(StageError, match="nothing usable.*--script FILE"):
            run_stage_inline(tmp_path, "script", ScriptParams(llm=llm(server)), theme=THEME)


# --- the local models, for real --------------------------------------------------------------


def test_the_strongest_installed_model_that_fits_the_ceiling_is_chosen():
    from aishorts.runner.limits import load_limits
    from aishorts.stages.llm.local_models import CATALOGUE, SMOLLM2, choose

    needs = load_limits().for_stage("script").thresholds  # what the runner hands the stage
    installed = [m for m in CATALOGUE if m.installed()]
    assert SMOLLM2 in installed
    small, why = choose(needs[SMOLLM2.need_key], needs=needs)
    assert small == SMOLLM2 and "fits" in why
    big, _ = choose(0, needs=needs)
    assert big == installed[0]
    named, why = choose(10 * needs[SMOLLM2.need_key], "smollm2-135m-instruct", needs)
    assert named == SMOLLM2 and "--llm-model" in why


def test_a_model_assembled_from_parts_is_checked_and_never_left_half_made(tmp_path, monkeypatch):
    import hashlib

    from aishorts.stages.llm.local_models import ModelUnavailable, _assemble

    parts = []
    for i, data in enumerate((b"first part " * 1000, b"second part " * 1000)):
        parts.append(tmp_path / f"part{i}")
        parts[-1].write_bytes(data)
    whole = b"".join(p.read_bytes() for p in parts)
    target = tmp_path / "cache" / "model.gguf"
    target.parent.mkdir()
    with pytest.raises(ModelUnavailable, match="checksum"):
        _assemble(parts, "0" * 64, target, lambda fraction: None)
    assert not target.exists() and not list(target.parent.iterdir())
    seen = []
    _assemble(parts, hashlib.sha256(whole).hexdigest(), target, seen.append)
    assert target.read_bytes() == whole and seen[-1] == 1.0


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_local_smollm2_backend_writes_a_valid_short_script(run_stage_inline, tmp_path):
    params = ScriptParams(min_words=30, max_words=60,
                          llm=LlmParams(backend="local", model="SmolLM2-135M-Instruct", seed=3))
    script, events = run_stage_inline(tmp_path, "script", params, theme=THEME)
    assert script.backend == "local:SmolLM2-135M-Instruct"
    assert script.backend_reason == ("asked for with --llm local; SmolLM2-135M-Instruct: asked for with"
                                     " --llm-model SmolLM2-135M-Instruct")
    assert 25 <= script.word_count <= 60
    assert script.hook and len(script.hook.split()) <= MAX_HOOK_WORDS
    assert script.body and script.cta
    assert 3 <= len(script.broll_queries) <= 5
    for sentence in script.sentences:
        assert not re.search(r"[#*|`<>_]|hook:|body:", sentence, re.IGNORECASE), sentence
    phases = {e.message: e.phase_s for e in events if e.kind == "phase"}
    assert phases.keys() >= {"load_model", "generate"}
    assert script.attempts >= 3  # hook, call to action and at least one fact call
