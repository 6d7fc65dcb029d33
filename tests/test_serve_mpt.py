"""MoneyPrinterTurbo's clients against `aishorts-runner serve`: its request bodies replayed, its answers expected.

The bodies are `MPT_DEFAULTS`, a transcription (ours, from its public
`app/models/schema.py`) of MoneyPrinterTurbo's `VideoParams` with every field
at its default, as its clients send them. What they rely on: a task made from
such a body whatever extra fields it carries, 400 in its envelope for a body
it cannot use (never a random-topic job), state 4 while queued or running,
`videos[0]` an absolute URL under `/tasks/{id}/` that plain HTTP clients fetch
as given (GET, HEAD, Range), and DELETE removing a finished task (200, then
404) or cancelling a running one. Balloon pipelines stand in for the models;
one real short (slow) is made and fetched end to end.
"""

from __future__ import annotations

import http.client
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from aishorts.stages.common.media import ffmpeg_exe, probe
from tests.runner_helpers import balloon_pipeline, wait_for
from tests.serve_helpers import finished, running_server, submit, task, wait_task

MPT_DEFAULTS = {
    "video_subject": "", "video_script": "", "video_terms": None, "video_aspect": "9:16",
    "video_concat_mode": "random", "video_transition_mode": None, "video_clip_duration": 5, "video_count": 1,
    "video_source": "pexels", "video_materials": None, "video_style": "", "output_bg_color": "black",
    "custom_audio_file": None, "video_language": "", "multi_scene_enabled": False, "scenes": None,
    "host_visible": True, "voice_name": "", "voice_volume": 1.8, "voice_rate": 1.0, "voice_emotion": "",
    "tts_server": "azure-tts-v1", "bgm_type": "random", "bgm_file": "", "bgm_volume": 0.2,
    "subtitle_enabled": True, "subtitle_position": "bottom", "custom_position": 70.0, "subtitle_margin": 0.1,
    "font_name": "STHeitiMedium.ttc", "text_fore_color": "#FFFFFF", "text_background_color": True,
    "font_size": 60, "stroke_color": "#000000", "stroke_width": 1.5, "n_threads": 2, "paragraph_number": 1,
    "title_enabled": False, "title_text": "", "title_duration": 3.0, "title_font_name": "MicrosoftYaHeiBold.ttc",
    "title_font_size": 72, "title_text_color": "#FFFFFF", "title_stroke_color": "#000000",
    "title_stroke_width": 2.0, "title_background_color": "transparent", "title_position": "center",
    "title_margin": 0.05, "title_margin_left": 0.05, "title_margin_right": 0.05, "title_animation": "none",
    "title_animation_duration": 0.5, "title_background_overlay": False, "title_overlay_color": "rgba(0,0,0,0.5)",
    "title_align": "center",
}
"""MoneyPrinterTurbo's `VideoParams()` as its clients serialise it (model_dump), every field at its default."""
NOT_OURS = {"video_style", "output_bg_color", "custom_audio_file", "multi_scene_enabled", "scenes", "host_visible",
            "voice_emotion", "tts_server", "subtitle_margin", "title_enabled", "title_align", "video_concat_mode",
            "video_transition_mode", "video_clip_duration", "font_name", "text_background_color", "n_threads",
            "paragraph_number"}
"""Its fields with no counterpart here (some of them newer than the API we copy): accepted, listed in
`ignored_fields`."""


def mpt_body(**changes) -> dict:
    return {**MPT_DEFAULTS, **changes}


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("mpt")
    balloon_pipeline(work / "balloons.toml", {"name": "grow", "ceiling": "300M", "params": {"mb": 20}})
    balloon_pipeline(work / "forever.toml", {"name": "hold", "ceiling": "300M", "params": {"mb": 20, "hold_s": 600}})
    return work


@pytest.fixture(scope="module")
def server(work):
    with running_server(work / "runs", "--pipeline", work / "balloons.toml", "--pipeline", work / "forever.toml") as s:
        yield s


def small_video(path: Path) -> Path:
    """A real two-second MP4 (ffmpeg's test pattern), standing in for a render stage's output."""
    subprocess.run([ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i", "testsrc=size=108x192:rate=10:duration=2",
                    "-pix_fmt", "yuv420p", str(path)], check=True, timeout=120)
    return path


def finished_with_video(client: httpx.Client, runs: Path, **changes) -> dict:
    """A task made from MoneyPrinterTurbo's body on the balloon pipeline, finished, with a real final.mp4."""
    task_id = submit(client, **mpt_body(video_subject="Tides", pipeline="balloons", **changes))
    assert finished(client, task_id)["state"] == 1
    small_video(runs / task_id / "final.mp4")
    return task(client, task_id)


@pytest.mark.parametrize("body", [b"{}", b"", b"  ", None], ids=["{}", "empty", "blank", "defaults"])
def test_a_body_without_a_subject_is_a_400_in_its_envelope_and_starts_nothing(server, work, body):
    with server.client() as client:
        if body is None:  # VideoParams() as is: video_subject ""
            response = client.post("/api/v1/videos", json=mpt_body())
        else:
            response = client.post("/api/v1/videos", content=body, headers={"Content-Type": "application/json"})
        assert response.status_code == 400, response.text
        answer = response.json()
        assert answer["status"] == 400 and answer["message"] and "data" in answer
        if body not in (b"", b"  "):
            assert answer["field"] == "video_subject"
        assert not [t for t in client.get("/api/v1/tasks").json()["data"]["tasks"] if t["title"] == "short"]


@pytest.mark.parametrize("changes, field", [
    ({"video_subject": 5}, "video_subject"),
    ({"voice_rate": "fast"}, "voice_rate"),
    ({"video_subject": "Tides", "bgm_type": "custom"}, "bgm_type"),
])
def test_a_malformed_field_is_a_400_naming_it(server, changes, field):
    with server.client() as client:
        before = client.get("/api/v1/tasks").json()["data"]["total"]
        response = client.post("/api/v1/videos", json=mpt_body(**changes))
        assert response.status_code == 400, response.text
        assert response.json()["status"] == 400 and response.json()["field"] == field
        assert client.get("/api/v1/tasks").json()["data"]["total"] == before


def test_its_default_body_with_a_subject_and_unknown_fields_makes_a_task_listing_what_was_ignored(server):
    with server.client() as client:
        response = client.post("/api/v1/videos", json=mpt_body(video_subject="Why tides turn", pipeline="balloons",
                                                                 a_field_from_next_year={"x": 1}))
        assert response.status_code == 200, response.text
        data = response.json()["data"]
        assert {"a_field_from_next_year", *NOT_OURS} <= set(data["ignored_fields"])
        assert "video_subject" not in data["ignored_fields"] and "pipeline" not in data["ignored_fields"]
        done = finished(client, data["task_id"])
        assert (done["state"], done["status"], done["title"]) == (1, "done", "Why tides turn")


def test_queued_reads_as_state_4_at_progress_0_with_our_status_beside_it_and_delete_cancels(server):
    with server.client() as client:
        running = submit(client, **mpt_body(video_subject="Holding", pipeline="forever"))
        wait_task(client, running, lambda t: t["status"] == "running")
        queued = submit(client, **mpt_body(video_subject="Waiting", pipeline="balloons"))

        waiting = task(client, queued)
        assert (waiting["state"], waiting["progress"], waiting["status"]) == (4, 0, "queued")
        assert task(client, running)["state"] == 4

        assert client.delete(f"/api/v1/tasks/{queued}").status_code == 200
        never = finished(client, queued)
        assert never["status"] == "interrupted" and never["message"] == "cancelled before it started"
        assert client.delete(f"/api/v1/tasks/{running}").status_code == 200
        stopped = finished(client, running)
        assert stopped["status"] == "interrupted" and stopped["message"].startswith("cancelled; resume it")


def test_videos_0_is_an_absolute_url_fetched_as_given_with_head_and_range(server, work):
    with server.client() as client:
        done = finished_with_video(client, work / "runs")
    url = done["videos"][0]
    assert url == f"{server.url}/tasks/{done['task_id']}/final-1.mp4"
    assert done["combined_videos"] == [f"{server.url}/tasks/{done['task_id']}/combined-1.mp4"]
    expected = (work / "runs" / done["task_id"] / "final.mp4").read_bytes()

    whole = httpx.get(url)  # no base URL: exactly as a client given only the answer would
    assert whole.status_code == 200 and whole.headers["content-type"] == "video/mp4" and whole.content == expected
    assert httpx.get(done["combined_videos"][0]).content == expected

    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    connection.request("HEAD", parts.path)
    head = connection.getresponse()
    assert head.status == 200 and int(head.getheader("content-length")) == len(expected) and head.read() == b""
    connection.request("GET", parts.path, headers={"Range": "bytes=100-199"})
    ranged = connection.getresponse()
    assert ranged.status == 206 and ranged.read() == expected[100:200]
    connection.close()
    assert probe(work / "runs" / done["task_id"] / "final.mp4").duration_s > 1


@pytest.mark.parametrize("aspect", ["9:16", "16:9", "1:1"])
def test_each_of_its_aspects_makes_a_task_for_that_frame_fetched_as_given(server, work, aspect):
    from aishorts.runner.rundir import read_manifest

    with server.client() as client:
        done = finished_with_video(client, work / "runs", video_aspect=aspect)
    params = read_manifest(work / "runs" / done["task_id"] / "run.json").params
    assert (params.broll.aspect, params.timeline.aspect) == (aspect, aspect)
    fetched = httpx.get(done["videos"][0])
    assert fetched.status_code == 200 and fetched.content == (work / "runs" / done["task_id"] / "final.mp4").read_bytes()


def test_its_custom_subtitle_position_reaches_the_timeline_and_its_default_body_keeps_the_bottom(server, work):
    from aishorts.runner.rundir import read_manifest

    with server.client() as client:
        custom = client.post("/api/v1/videos", json=mpt_body(video_subject="Tides", pipeline="balloons",
                                                              subtitle_position="custom", custom_position=30))
        default = client.post("/api/v1/videos", json=mpt_body(video_subject="Tides", pipeline="balloons"))
    assert custom.status_code == default.status_code == 200, custom.text + default.text
    custom, default = custom.json()["data"], default.json()["data"]
    timelines = [read_manifest(work / "runs" / answer["task_id"] / "run.json").params.timeline
                 for answer in (custom, default)]
    assert (timelines[0].caption_y, timelines[1].caption_y, timelines[1].caption_position) == (30.0, None, "bottom")
    assert "custom_position" not in custom["ignored_fields"] and "custom_position" in default["ignored_fields"]


def test_delete_removes_a_finished_task_and_its_files_then_it_is_a_404(server, work):
    with server.client() as client:
        done = finished_with_video(client, work / "runs")
        run_dir = work / "runs" / done["task_id"]

        deleted = client.delete(f"/api/v1/tasks/{done['task_id']}")

        assert deleted.status_code == 200 and deleted.json()["data"]["task_id"] == done["task_id"]
        assert not run_dir.exists()
        assert client.get(f"/api/v1/tasks/{done['task_id']}").status_code == 404
        assert httpx.get(done["videos"][0]).status_code == 404
        assert client.delete(f"/api/v1/tasks/{done['task_id']}").status_code == 404
        assert done["task_id"] not in [t["task_id"] for t in client.get("/api/v1/tasks").json()["data"]["tasks"]]


def test_forwarded_headers_are_believed_only_with_trust_proxy(work):
    forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "shorts.example.org",
                 "X-Forwarded-Prefix": "/mpt"}
    runs = work / "proxied"
    for options, expected in (((), None), (("--trust-proxy",), "https://shorts.example.org/mpt")):
        with running_server(runs, "--pipeline", work / "balloons.toml", *options) as server, \
                server.client() as client:
            done = finished_with_video(client, runs)
            task_id = done["task_id"]
            seen = client.get(f"/api/v1/tasks/{task_id}", headers=forwarded).json()["data"]["videos"][0]
            assert seen == f"{expected or server.url}/tasks/{task_id}/final-1.mp4"


SCRIPT = ("Octopuses have three hearts and blue blood. Two hearts pump blood through the gills, while the third"
          " serves the rest of the body. Follow for more strange facts about the ocean.")


def test_terms_of_a_script_come_from_the_script_stage_alone_and_leave_no_task(server, work):
    with server.client() as client:
        before = client.get("/api/v1/tasks").json()["data"]["total"]
        response = client.post("/api/v1/terms", json={"video_subject": "Octopuses", "video_script": SCRIPT,
                                                       "amount": 2})
        assert response.status_code == 200, response.text
        terms = response.json()["data"]["video_terms"]
        assert 1 <= len(terms) <= 2 and all(isinstance(term, str) and term.strip() for term in terms)
        assert client.get("/api/v1/tasks").json()["data"]["total"] == before  # its run directory is removed

        written = client.post("/api/v1/scripts", json={"video_subject": "Octopuses", "video_script": SCRIPT})
        assert written.status_code == 200, written.text
        assert written.json()["data"]["video_script"] == SCRIPT

        assert client.post("/api/v1/terms", json={}).status_code == 400
        assert client.post("/api/v1/scripts", json={"paragraph_number": 1}).json()["field"] == "video_subject"


def test_musics_lists_the_tracks_music_is_picked_from(server):
    from immich_memories_music import tracks_dir

    with server.client() as client:
        files = client.get("/api/v1/musics").json()["data"]["files"]
    assert files and {f["name"] for f in files} == {p.name for p in Path(tracks_dir()).glob("*/*") if p.is_file()}
    assert all(Path(f["file"]).stat().st_size == f["size"] for f in files)


def test_audio_and_subtitle_need_a_script_and_a_pipeline_with_tts(server):
    with server.client() as client:
        for endpoint in ("/api/v1/audio", "/api/v1/subtitle"):
            refused = client.post(endpoint, json={"video_subject": "Octopuses"})
            assert refused.status_code == 400 and refused.json()["field"] == "video_script", refused.text
            refused = client.post(endpoint, json={"video_script": SCRIPT, "pipeline": "balloons"})
            assert refused.status_code == 400 and "tts" in refused.json()["message"], refused.text


@pytest.mark.slow
def test_a_real_short_from_its_body_is_fetched_as_given_then_deleted(tmp_path):
    """The one real run: MoneyPrinterTurbo's body with its own script, through every stage, fetched by URL."""
    with running_server(tmp_path / "runs", "--max-ram", "4G") as server, server.client() as client:
        subtitles = client.post("/api/v1/subtitle", json=mpt_body(video_script=SCRIPT, video_subject="Octopuses"))
        made = client.post("/api/v1/videos", json=mpt_body(video_script=SCRIPT, video_subject="Octopuses",
                                                            bgm_type=""))
        assert made.status_code == 200 and subtitles.status_code == 200, made.text + subtitles.text

        spoken = finished(client, subtitles.json()["data"]["task_id"], timeout=900)
        done = finished(client, made.json()["data"]["task_id"], timeout=1500)

        assert [s["name"] for s in spoken["stages"]] == ["theme", "script", "tts"] and spoken["state"] == 1
        wav = httpx.get(spoken["audio_file"])
        assert wav.status_code == 200 and wav.content[:4] == b"RIFF" and spoken["audio_duration"] > 3
        cues = httpx.get(spoken["subtitle_path"]).text
        assert "Octopuses have three hearts and blue blood." in cues and " --> " in cues
        head = httpx.head(spoken["subtitle_path"])
        assert head.status_code == 200 and head.content == b""
        assert head.headers["content-type"].startswith("application/x-subrip")
        assert spoken["videos"] == []

        assert done["state"] == 1, done["message"]
        assert done["script"] == SCRIPT and done["terms"] and done["audio_duration"] > 3
        video = httpx.get(done["videos"][0])
        run_dir = tmp_path / "runs" / done["task_id"]
        assert video.status_code == 200 and video.content == (run_dir / "final.mp4").read_bytes()
        assert httpx.get(done["subtitle_path"]).text == (run_dir / "captions.srt").read_text()
        assert httpx.head(done["audio_file"]).status_code == 200

        assert client.delete(f"/api/v1/tasks/{done['task_id']}").status_code == 200
        assert not run_dir.exists() and httpx.get(done["videos"][0]).status_code == 404


def test_the_voices_of_each_language_are_listed_without_loading_stage_code_into_the_server(server):
    import psutil

    from aishorts.stages.tts.voices import catalogue

    with server.client() as client:
        listed = client.get("/api/v1/voices").json()["data"]
    assert listed == catalogue()
    assert {entry["code"] for entry in listed} >= {"en-us", "fr-fr"}
    maps = {m.path for m in psutil.Process(server.process.pid).memory_maps()}
    assert not [path for path in maps if "numpy" in path or "onnxruntime" in path]


def dbfs(wav: bytes) -> float:
    """The RMS level of a 16-bit WAV's samples in dB of full scale."""
    import io
    import wave

    import numpy as np

    with wave.open(io.BytesIO(wav)) as reader:
        assert reader.getsampwidth() == 2
        samples = np.frombuffer(reader.readframes(reader.getnframes()), "<i2").astype(np.float64) / 32768
    return 20 * np.log10(np.sqrt(np.mean(samples**2)))


@pytest.mark.slow
def test_the_audio_endpoint_gives_the_narration_at_the_voice_volume_asked(tmp_path):
    """`/api/v1/audio` stops before the render, which is where voice_volume is applied to the video: its WAV has
    the level asked too (half the amplitude: 6 dB lower; 1.0: the narrator's own file, byte for byte)."""
    with running_server(tmp_path / "runs", "--max-ram", "4G") as server, server.client() as client:
        made = {level: client.post("/api/v1/audio", json=mpt_body(video_script=SCRIPT, voice_volume=level))
                for level in (1.0, 0.5)}
        assert all(answer.status_code == 200 for answer in made.values()), [a.text for a in made.values()]
        done = {level: finished(client, answer.json()["data"]["task_id"], timeout=900)
                for level, answer in made.items()}
        assert all(task["state"] == 1 for task in done.values()), [t["message"] for t in done.values()]
        wavs = {level: httpx.get(task["audio_file"]) for level, task in done.items()}
    assert all(w.status_code == 200 and w.headers["content-type"] == "audio/wav" for w in wavs.values())
    levels = {level: dbfs(w.content) for level, w in wavs.items()}
    assert -40 < levels[1.0] < -3, levels  # speech, not silence nor noise at full scale
    assert abs((levels[1.0] - levels[0.5]) - 6.02) < 0.2, levels
    own = tmp_path / "runs" / done[1.0]["task_id"] / "tts" / "narration.wav"
    assert wavs[1.0].content == own.read_bytes()
    assert len(wavs[0.5].content) == len(wavs[1.0].content)  # the same narration, only quieter
