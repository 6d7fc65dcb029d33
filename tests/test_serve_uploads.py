"""`POST /api/v1/uploads`: the page sends the user's own music track, clips and pictures to the server.

A real server process; the uploaded bytes are read back from disk, and the path it answers is used as a request's
`music_file` and `broll_dir`. What is refused: a body a cross-site HTML form could send (text/plain, multipart), a
name that is no track, clip or picture, a folder this server did not make, a file over the limit (declared, or
counted as it streams), an empty body.
"""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path
from urllib.parse import urlparse

import pytest

from aishorts.serve.requests import FieldError
from aishorts.serve.uploads import UPLOAD_LIMIT, store
from tests.runner_helpers import balloon_pipeline
from tests.serve_helpers import finished, running_server

MP3 = b"ID3\x03\x00\x00\x00\x00\x00\x00" + bytes(range(256)) * 40
OCTETS = {"Content-Type": "application/octet-stream"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    work = tmp_path_factory.mktemp("uploads")
    balloon_pipeline(work / "balloons.toml", {"name": "grow", "ceiling": "300M", "params": {"mb": 10}})
    with running_server(work / "runs", "--pipeline", work / "balloons.toml") as server:
        server.runs = work / "runs"
        yield server


def upload(client, name: str, body: bytes, folder: str | None = None, content_type: str = "audio/mpeg"):
    params = {"name": name, **({"folder": folder} if folder else {})}
    return client.post("/api/v1/uploads", params=params, content=body, headers={"Content-Type": content_type})


def test_a_track_is_stored_in_a_folder_of_its_own_and_a_short_takes_it_as_its_music(server):
    with server.client() as client:
        answer = upload(client, "My Song (live).mp3", MP3)
        assert answer.status_code == 200, answer.text
        data = answer.json()["data"]
        stored = Path(data["file"])
        assert stored.read_bytes() == MP3 and data["size"] == len(MP3) and data["kind"] == "music"
        assert stored.parent == server.runs / ".uploads" / data["folder_id"] and stored.name == "My_Song_live_.mp3"
        made = client.post("/api/v1/videos", json={"topic": "Tides", "music_file": data["file"],
                                                   "pipeline": "balloons"})
        assert made.status_code == 200, made.text
        task_id = made.json()["data"]["task_id"]
        saved = json.loads((server.runs / task_id / "run.json").read_text())["params"]["timeline"]
        assert saved["music_file"] == str(stored.resolve())
        assert finished(client, task_id)["state"] == 1
        # an upload is never a task, nor served back from the task file mount
        listed = [t["task_id"] for t in client.get("/api/v1/tasks").json()["data"]["tasks"]]
        assert listed == [task_id]
        assert client.get(f"/tasks/.uploads/{data['folder_id']}/{stored.name}").status_code == 404


def test_clips_and_pictures_go_into_one_folder_that_becomes_the_broll_folder(server):
    with server.client() as client:
        first = upload(client, "waves.mp4", b"\x00\x00\x00\x18ftypmp42" * 10, content_type="video/mp4").json()["data"]
        second = upload(client, "../../beach.PNG", b"\x89PNG\r\n\x1a\n" * 10, folder=first["folder_id"],
                        content_type="image/png").json()["data"]
        assert second["folder"] == first["folder"] and second["name"] == "beach.png" and second["kind"] == "media"
        assert sorted(p.name for p in Path(first["folder"]).iterdir()) == ["beach.png", "waves.mp4"]
        again = upload(client, "waves.mp4", b"other", folder=first["folder_id"], content_type="video/mp4")
        assert again.status_code == 409 and again.json()["field"] == "name"
        made = client.post("/api/v1/videos", json={"topic": "Tides", "broll_dir": first["folder"],
                                                   "pipeline": "balloons"})
        assert made.status_code == 200, made.text


@pytest.mark.parametrize(("content_type", "status", "field"), [
    ("text/plain", 415, "content-type"),  # what a page on another site may send without asking first
    ("multipart/form-data; boundary=x", 415, "content-type"),
    ("application/x-www-form-urlencoded", 415, "content-type"),
    ("application/json", 415, "content-type"),
])
def test_bodies_a_cross_site_form_could_send_are_refused(server, content_type, status, field):
    with server.client() as client:
        answer = upload(client, "song.mp3", MP3, content_type=content_type)
        assert (answer.status_code, answer.json()["field"]) == (status, field)
    assert not any(server.runs.glob(".uploads/*/song.mp3"))


def test_another_sites_page_is_refused(server):
    with server.client() as client:
        answer = client.post("/api/v1/uploads", params={"name": "x.mp3"}, content=MP3,
                             headers={**OCTETS, "Origin": "http://evil.example"})
        assert (answer.status_code, answer.json()["field"]) == (403, "origin")


@pytest.mark.parametrize(("params", "status", "field"), [
    ({"name": "run.sh"}, 400, "name"),
    ({"name": "notes.txt"}, 400, "name"),
    ({"name": "..."}, 400, "name"),
    ({"name": "a.mp3", "folder": "../../etc"}, 404, "folder"),
    ({"name": "a.mp3", "folder": "0123456789abcdef"}, 404, "folder"),
])
def test_names_and_folders_it_did_not_make_are_refused(server, params, status, field):
    with server.client() as client:
        answer = client.post("/api/v1/uploads", params=params, content=MP3, headers=OCTETS)
        assert (answer.status_code, answer.json()["field"]) == (status, field), answer.text


def test_an_empty_upload_is_refused_and_leaves_nothing(server):
    with server.client() as client:
        answer = upload(client, "silence.mp3", b"")
        assert (answer.status_code, answer.json()["field"]) == (400, "body")
    assert not any(server.runs.glob(".uploads/*/silence.mp3"))


def test_a_declared_size_over_the_limit_is_refused_before_a_byte_is_read(server):
    address = urlparse(server.url)
    with socket.create_connection((address.hostname, address.port), timeout=30) as sock:
        sock.sendall(f"POST /api/v1/uploads?name=big.mp3 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     f"Content-Type: audio/mpeg\r\nContent-Length: {UPLOAD_LIMIT + 1}\r\n\r\n".encode())
        answer = b""
        while chunk := sock.recv(65536):  # the server answers and closes without waiting for the body
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 413") and b'"field": "body"' in answer


def test_a_stream_over_the_limit_is_cut_and_its_partial_file_removed(tmp_path):
    async def chunks():
        for _ in range(10):
            yield b"x" * 1000

    with pytest.raises(FieldError) as refused:
        asyncio.run(store(chunks(), tmp_path / "long.mp3", limit=5000))
    assert refused.value.status == 413 and not (tmp_path / "long.mp3").exists()
    assert asyncio.run(store(chunks(), tmp_path / "fits.mp3", limit=10_000)) == 10_000


def test_a_moneyprinterturbo_client_picks_a_song_from_musics_as_its_bgm_file(server):
    with server.client() as client:
        song = client.get("/api/v1/musics").json()["data"]["files"][0]["file"]
        made = client.post("/api/v1/videos", json={"video_subject": "Tides", "bgm_type": "custom", "bgm_file": song,
                                                   "bgm_volume": 0.3, "pipeline": "balloons"})
        assert made.status_code == 200, made.text
        saved = json.loads((server.runs / made.json()["data"]["task_id"] / "run.json").read_text())["params"]
        assert (saved["timeline"]["music_file"], saved["timeline"]["music_volume"]) == (str(Path(song).resolve()), 0.3)
        missing = client.post("/api/v1/videos", json={"video_subject": "Tides", "bgm_type": "custom",
                                                      "bgm_file": "/nowhere/song.mp3", "pipeline": "balloons"})
        assert (missing.status_code, missing.json()["field"]) == (400, "bgm_file"), missing.text


def test_with_a_token_an_upload_needs_it_too(tmp_path):
    with running_server(tmp_path / "runs", "--token", "s3cret") as server:
        with server.client() as client:
            refused = upload(client, "song.mp3", MP3)
            assert (refused.status_code, refused.json()["field"]) == (401, "token")
        assert not (tmp_path / "runs" / ".uploads").exists() or not any((tmp_path / "runs" / ".uploads").iterdir())
        with server.client(token="s3cret") as client:
            assert upload(client, "song.mp3", MP3).status_code == 200
