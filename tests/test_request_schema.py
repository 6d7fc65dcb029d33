"""One request schema, four front ends: every option reaches a short the same way from each, and none drifts.

`ipc.request.ShortRequest` is the one list of what a user may set for a short. The command line,
batch files, the HTTP body and the web page are derived from it; these tests set each field through
each front end and demand the very same request, and check that every name a front end accepts maps
back to a field (or to one of the few run-level or compatibility names listed here).
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import get_type_hints

import msgspec
import pytest

from aishorts.ipc.params import CATEGORIES, PipelineParams
from aishorts.ipc.request import FIELDS, LANGUAGES, RequestError, ShortRequest, field_info, json_schema, request_from
from aishorts.runner.batchfile import ROW_FIELDS, batch_row
from aishorts.runner.cli import build_parser, request_from_args
from aishorts.runner.errors import UsageError
from aishorts.serve.requests import MPT_ALIASES, FieldError, VideoRequest, _merge_mpt, decode

ROOT = Path(__file__).resolve().parent.parent
STATIC = ROOT / "serve" / "static"
RUN_LEVEL_HTTP = {"max_ram", "limits", "pipeline"}
"""Run-level names of the HTTP body: the job's budget and ceilings, not what the short is."""
MPT_MAPPED = {*MPT_ALIASES, "video_language", "voice_name", "bgm_type", "video_aspect", "video_source", "video_materials",
              "video_count", "subtitle_position", "custom_position", "video_terms"}
BATCH_ONLY = {"limit", "no_music"}
SET_BY_HAND = {"topic", "category"}
"""Fields `runner.options.build_params` applies itself (a topic and a category replace each other)."""
SAMPLE_TEXT = {"topic": "Why octopuses have three hearts", "voice": "am_adam", "llm_url": "http://127.0.0.1:9/v1",
               "llm_model": "SmolLM2-135M-Instruct", "llm_key_env": "MY_KEY", "clip_model": "openai/clip-vit-base-patch32",
               "wiki_url": "http://127.0.0.1:9/wiki", "caption_color": "#FFD700", "caption_stroke_color": "#102030"}


def sample(name: str, tmp_path: Path):
    """A value the schema accepts for field `name`, as the HTTP body and a JSON batch row would write it."""
    info = field_info()[name]
    if info.choices:
        return info.choices[-1]
    if info.extra.get("file"):
        return "Octopuses have three hearts. Two pump blood through the gills."
    if info.extra.get("folder"):
        (tmp_path / "clips").mkdir(exist_ok=True)
        return str(tmp_path / "clips")
    if info.extra.get("path"):
        return str(tmp_path / "track.mp3")
    if info.kind is bool:
        return False  # the value its command-line flag gives
    if info.kind is list:
        return ["https://example.com/clip.mp4"]
    if info.kind is float:
        low, high = info.meta.ge or 0.0, info.meta.le or 10.0
        return (low + high) / 2
    if info.kind is int:
        return max(7, info.meta.ge or 0)
    return SAMPLE_TEXT.get(name, "x")


def via_cli(name: str, value, tmp_path: Path) -> ShortRequest:
    info = field_info()[name]
    if info.kind is bool:
        argv = [info.flag]
    elif info.extra.get("file"):
        (tmp_path / "words.txt").write_text(value)
        argv = [info.flag, str(tmp_path / "words.txt")]
    elif info.kind is list:
        argv = [part for item in value for part in (info.flag, item)]
    else:
        argv = [info.flag, str(value)]
    return request_from_args(build_parser().parse_args(argv))


def via_batch(name: str, value, tmp_path: Path) -> ShortRequest:
    if field_info()[name].extra.get("file"):
        (tmp_path / "words.txt").write_text(value)
        value = "words.txt"
    row = {name: value} if name in ("topic", "script", "category") else {"topic": "x", name: value}
    values = msgspec.json.decode(json.dumps(row))
    request = batch_row(values, tmp_path, strict=True).request
    return request if name == "topic" else msgspec.structs.replace(request, topic=None)


def via_http(name: str, value) -> ShortRequest:
    return _merge_mpt(decode(json.dumps({name: value}).encode(), VideoRequest))[0]


@pytest.mark.parametrize("name", FIELDS)
def test_every_field_reaches_the_same_request_from_the_cli_a_batch_row_and_the_http_body(name, tmp_path):
    value = sample(name, tmp_path)
    expected = request_from({name: value})
    assert getattr(expected, name) is not None
    assert via_cli(name, value, tmp_path) == expected
    assert via_batch(name, value, tmp_path) == expected
    assert via_http(name, value) == expected


@pytest.mark.parametrize("name", FIELDS)
def test_every_field_sets_stage_parameters_that_exist_and_hold_its_values(name, tmp_path):
    """The last step of a new option: the stage parameter its `params` names (ipc/params.py), which the stage reads."""
    info = field_info()[name]
    targets = info.extra.get("params", ())
    assert targets or name in SET_BY_HAND, f"{name} sets no stage parameter: add params=(\"stage.field\",)"
    value = getattr(request_from({name: sample(name, tmp_path)}), name)
    for target in targets:
        *parents, leaf = target.split(".")
        struct = functools.reduce(lambda kind, part: get_type_hints(kind)[part], parents, PipelineParams)
        hints = get_type_hints(struct)
        assert leaf in hints, f"{name} sets {target}, which {struct.__name__} lacks"
        assert msgspec.convert(value, hints[leaf]) == value, f"{target} cannot hold {name}'s {value!r}"


def test_every_name_a_front_end_accepts_maps_back_to_a_field():
    what = next(group for group in build_parser()._action_groups if group.title == "what to make")
    cli_names = {action.dest for action in what._group_actions} - {"topics_file"}
    assert cli_names == set(FIELDS)
    assert set(ROW_FIELDS) - BATCH_ONLY == set(FIELDS)
    http = set(VideoRequest.__struct_fields__)
    assert http - set(FIELDS) == RUN_LEVEL_HTTP | MPT_MAPPED
    assert set(MPT_ALIASES.values()) <= set(FIELDS)


def test_the_page_gets_every_field_with_the_choices_the_schema_allows():
    schema = json_schema()
    properties = schema["$defs"]["ShortRequest"]["properties"]
    assert list(properties) == list(FIELDS)
    for name, info in field_info().items():
        inner = next(p for p in properties[name]["anyOf"] if p.get("type") != "null")
        assert inner["description"] == info.help
        if info.choices:
            assert sorted(inner["enum"]) == sorted(info.choices)


def test_the_page_hard_codes_no_choice_and_sends_only_names_the_api_knows():
    page = (STATIC / "index.html").read_text()
    script = (STATIC / "app.js").read_text()
    assert "<option" not in page and "<datalist" not in page  # every choice comes from the schema
    for select in re.findall(r'<select id="(\w+)"', page):
        assert select in FIELDS or select in RUN_LEVEL_HTTP
    sent = set(re.findall(r"request\.(\w+) =", script))
    sent |= set(re.findall(r'"(\w+)"', re.search(r"for \(const field of \[([^\]]*)\]\)", script).group(1)))
    assert sent and sent <= set(FIELDS) | RUN_LEVEL_HTTP
    fields = re.findall(r'data-field="(\w+)"', page)  # inputs sent by the name they carry (app.js lookAndSound)
    assert fields and set(fields) <= set(FIELDS)
    assert all(re.search(rf'id="{name}" data-field="{name}"', page) for name in fields)  # and take the schema's help
    assert 'api("GET", "/api/v1/schema")' in script


def test_the_narrator_speaks_every_language_the_schema_offers_and_the_schema_refuses_the_others():
    from aishorts.stages.tts.stage import check_language

    for code in LANGUAGES:
        assert check_language(code) == code
    assert request_from({"language": "EN"}).language == "en-us"  # spelled as users write it
    with pytest.raises(RequestError) as refused:
        request_from({"language": "xx-yy"})
    assert refused.value.field == "language" and "en-us" in refused.value.reason
    assert set(field_info()["category"].choices) == set(CATEGORIES)


@pytest.mark.parametrize(("values", "field", "kind"), [
    ({"speed": 9}, "speed", "value"),
    ({"speed": "fast"}, "speed", "type"),
    ({"platform": "vhs"}, "platform", "value"),
    ({"voice": "Heart!"}, "voice", "value"),
    ({"topic": "   "}, "topic", "value"),
    ({"script": "1234 5678"}, "script", "value"),
    ({"colour": "red"}, "colour", "unknown"),
])
def test_a_refusal_is_one_typed_error_naming_the_field(values, field, kind):
    with pytest.raises(RequestError) as refused:
        request_from(values)
    assert (refused.value.field, refused.value.kind) == (field, kind)


def test_each_front_end_says_a_refusal_in_its_own_words(tmp_path):
    with pytest.raises(UsageError, match=r"^--speed 9: use a value between 0.5 and 2.0$"):
        request_from_args(build_parser().parse_args(["--speed", "9"]))
    with pytest.raises(UsageError, match=r"^speed 9: use a value between 0.5 and 2.0$"):
        batch_row({"topic": "x", "speed": 9}, tmp_path, strict=True)
    with pytest.raises(UsageError, match=r"^no_music maybe: Expected `bool`"):
        batch_row({"topic": "x", "no_music": "maybe"}, tmp_path, strict=False)
    with pytest.raises(FieldError) as refused:
        _merge_mpt(decode(b'{"voice_rate": 9}', VideoRequest))
    assert (refused.value.field, refused.value.status) == ("voice_rate", 400)
    assert refused.value.reason == "voice_rate 9.0: use a value between 0.5 and 2.0"
