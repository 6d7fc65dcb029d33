"""MoneyPrinterTurbo's media fields in `POST /api/v1/videos`: `video_aspect`, `video_source`, `video_materials`,
`video_terms`.

Read by the server's own request code (serve/requests.py) into our request schema, as a MoneyPrinterTurbo
client sends them (its `VideoParams`: video_aspect "9:16" by default, video_source "pexels", video_materials a
list of {provider, url, duration}).
"""

from __future__ import annotations

import pytest

from aishorts.serve.requests import FieldError, VideoRequest, _merge_mpt


def merged(**body):
    short, ignored, _named = _merge_mpt(VideoRequest(video_subject="Why the sea is salty", **body))
    return short, ignored


@pytest.mark.parametrize(("given", "aspect"), [("9:16", "9:16"), ("16:9", "16:9"), ("1:1", "1:1"),
                                               ("landscape", "16:9"), ("portrait", "9:16"), ("square", "1:1")])
def test_video_aspect_and_its_names_set_the_frame(given, aspect):
    assert merged(video_aspect=given)[0].aspect == aspect


def test_an_aspect_we_do_not_make_is_refused_naming_video_aspect():
    with pytest.raises(FieldError) as refused:
        merged(video_aspect="4:3")
    assert refused.value.field == "video_aspect" and "9:16, 16:9, 1:1" in refused.value.reason


@pytest.mark.parametrize("source", ["pexels", "pixabay"])
def test_video_source_picks_the_stock_footage_source(source):
    short, ignored = merged(video_source=source)
    assert short.broll == source and "video_source" not in ignored


def test_an_unknown_video_source_is_refused():
    with pytest.raises(FieldError) as refused:
        merged(video_source="shutterstock")
    assert refused.value.field == "video_source" and refused.value.status == 400


def test_local_materials_become_the_local_folder(tmp_path):
    clips = [tmp_path / "a.mp4", tmp_path / "b.mp4"]
    materials = [{"provider": "local", "url": str(c), "duration": 0} for c in clips]
    short, ignored = merged(video_source="local", video_materials=materials)
    assert (short.broll, short.broll_dir) == ("local", str(tmp_path))
    assert not {"video_source", "video_materials"} & set(ignored)


def test_local_materials_in_several_folders_are_refused(tmp_path):
    materials = [{"provider": "local", "url": str(tmp_path / "a" / "x.mp4")},
                 {"provider": "local", "url": str(tmp_path / "b" / "y.mp4")}]
    with pytest.raises(FieldError) as refused:
        merged(video_source="local", video_materials=materials)
    assert refused.value.field == "video_materials" and "one folder" in refused.value.reason


def test_web_materials_become_clip_urls():
    materials = [{"provider": "pexels", "url": "https://videos.example.org/1.mp4", "duration": 5}]
    short, _ = merged(video_materials=materials)
    assert (short.broll, short.broll_url) == ("urls", ["https://videos.example.org/1.mp4"])


def test_local_without_materials_is_listed_as_ignored():
    short, ignored = merged(video_source="local")
    assert short.broll is None and "video_source" in ignored


@pytest.mark.parametrize("terms", [["coral reef", " deep sea "], "coral reef, deep sea", "coral reef，deep sea,"])
def test_video_terms_as_a_list_or_one_string_become_the_broll_terms(terms):
    short, ignored = merged(video_terms=terms)
    assert short.broll_term == ["coral reef", "deep sea"] and "video_terms" not in ignored


@pytest.mark.parametrize("terms", [None, "", [], " , "])
def test_no_video_terms_leave_the_scripts_own(terms):
    assert merged(video_terms=terms)[0].broll_term is None


def test_video_terms_that_are_no_text_are_refused_naming_video_terms():
    with pytest.raises(FieldError) as refused:
        merged(video_terms=[1, 2])
    assert refused.value.field == "video_terms" and refused.value.status == 422


def test_a_term_too_long_is_refused_naming_video_terms():
    with pytest.raises(FieldError) as refused:
        merged(video_terms=["x" * 81])
    assert refused.value.field == "video_terms"

