"""MoneyPrinterTurbo's `video_count` against `aishorts-runner serve`: one task, N videos.

Its clients send `video_count: N` and expect one task id whose finished answer lists `videos` (and
`combined_videos`) `final-1.mp4` ... `final-N.mp4`, each a different short (ours: each its own run with its own
seed), progress climbing across them, and DELETE taking them all. Balloon pipelines stand in for the models where
only the task's shape is checked; one real pair of shorts is made from MoneyPrinterTurbo's body with a given script
and the built-in b-roll, and fetched as given.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from aishorts.runner.rundir import read_manifest
from aishorts.stages.common.media import probe
from tests.runner_helpers import balloon_pipeline
from tests.serve_helpers import finished, running_server, submit, task, wait_task
from tests.test_serve_mpt import SCRIPT, mpt_body, small_video


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("mpt-videos")
    balloon_pipeline(work / "slow.toml", {"name": "grow", "ceiling": "300M", "params": {"mb": 20, "hold_s": 2}})
    return work


@pytest.fixture(scope="module")
def server(work):
    with running_server(work / "runs", "--pipeline", work / "slow.toml") as s:
        yield s


def video_runs(run_dir: Path) -> list[Path]:
    """The run directories of the task's videos: its own, then those inside it (videos/2, videos/3...)."""
    return sorted((path.parent for path in run_dir.rglob("run.json")), key=lambda path: (len(path.parts), path.name))


def seeds_of(run_dir: Path) -> list[int]:
    """The script seed of each video's run, as its run.json holds it."""
    return [read_manifest(path / "run.json").params.script.llm.seed for path in video_runs(run_dir)]


def test_one_task_makes_n_videos_each_with_its_own_seed_progress_climbing_across_them(server, work):
    with server.client() as client:
        task_id = submit(client, **mpt_body(video_subject="Tides", video_count=3, pipeline="slow"))
        seen: list[tuple[int, int]] = []
        done = wait_task(client, task_id, lambda t: seen.append((t["state"], t["progress"])) or t["state"] == 1,
                         timeout=300)

        assert done["state"] == 1 and done["status"] == "done", done["message"]
        progress = [p for state, p in seen if state == 4]
        assert progress == sorted(progress), progress  # never goes back when the next video starts
        assert any(34 <= p < 99 for p in progress), progress  # a later video's share, not the first's 0-33 again
        run_dir = work / "runs" / task_id
        seeds = seeds_of(run_dir)
        assert len(seeds) == 3 and len(set(seeds)) == 3, seeds
        assert [t["task_id"] for t in client.get("/api/v1/tasks").json()["data"]["tasks"]].count(task_id) == 1

        finals = [path / "final.mp4" for path in video_runs(run_dir)]
        for seconds, final in enumerate(finals, 1):  # stand-ins for each run's render, told apart by their length
            small_video(final)
            final.write_bytes(final.read_bytes() + bytes(seconds))
        shown = task(client, task_id)
    mount = f"{server.url}/tasks/{task_id}"
    assert shown["videos"] == [f"{mount}/final-{n}.mp4" for n in (1, 2, 3)]
    assert shown["combined_videos"] == [f"{mount}/combined-{n}.mp4" for n in (1, 2, 3)]
    for url, final in zip(shown["videos"], finals):
        fetched = httpx.get(url)  # as given: no base URL
        assert fetched.status_code == 200 and fetched.content == final.read_bytes()
    assert httpx.get(f"{mount}/final-4.mp4").status_code == 404

    with server.client() as client:
        assert client.delete(f"/api/v1/tasks/{task_id}").status_code == 200
    assert not run_dir.exists() and httpx.get(shown["videos"][2]).status_code == 404


def test_cancelled_during_its_second_video_it_says_so_and_a_resume_makes_the_rest(server, work):
    with server.client() as client:
        task_id = submit(client, **mpt_body(video_subject="Moons", video_count=2, pipeline="slow"))
        wait_task(client, task_id, lambda t: t["progress"] >= 50 and t["status"] == "running", timeout=120)
        assert client.delete(f"/api/v1/tasks/{task_id}").status_code == 200
        stopped = finished(client, task_id)
        assert stopped["status"] == "interrupted" and stopped["message"].startswith("video 2 of 2: cancelled")
        assert stopped["videos"] == [] and stopped["resumable"]

        assert client.post(f"/api/v1/tasks/{task_id}/resume").status_code == 200
        done = finished(client, task_id)
    assert done["state"] == 1, done["message"]
    first = work / "runs" / task_id / "report.json"
    assert '"skipped"' in first.read_text()  # the first video was not made again


@pytest.mark.parametrize("count", [0, 6, "two"])
def test_a_video_count_outside_1_to_5_is_a_400_naming_it(server, count):
    with server.client() as client:
        before = client.get("/api/v1/tasks").json()["data"]["total"]
        response = client.post("/api/v1/videos", json=mpt_body(video_subject="Tides", video_count=count,
                                                                pipeline="slow"))
        assert response.status_code == 400 and response.json()["field"] == "video_count", response.text
        assert client.get("/api/v1/tasks").json()["data"]["total"] == before


def test_the_narration_endpoints_make_one_narration_and_list_video_count_as_ignored(server):
    with server.client() as client:
        response = client.post("/api/v1/audio", json=mpt_body(video_script=SCRIPT, video_count=2))
        assert response.status_code == 200, response.text
        data = response.json()["data"]
        assert "video_count" in data["ignored_fields"]
        assert client.delete(f"/api/v1/tasks/{data['task_id']}").status_code == 200


@pytest.mark.slow
def test_two_real_shorts_of_one_task_are_fetched_as_given(tmp_path):
    """MoneyPrinterTurbo's body with its own script and video_count 2, through every stage, twice, under one
    budget; both videos fetched by the URLs the task gives."""
    with running_server(tmp_path / "runs", "--max-ram", "4G") as server, server.client() as client:
        made = client.post("/api/v1/videos", json=mpt_body(video_script=SCRIPT, video_subject="Octopuses",
                                                            bgm_type="", video_count=2))
        assert made.status_code == 200, made.text
        assert "video_count" not in made.json()["data"]["ignored_fields"]
        done = finished(client, made.json()["data"]["task_id"], timeout=2400)
        assert done["state"] == 1, done["message"]
        run_dir = tmp_path / "runs" / done["task_id"]
        assert len(done["videos"]) == 2 and len(set(seeds_of(run_dir))) == 2
        for url in done["videos"]:
            fetched = httpx.get(url)
            assert fetched.status_code == 200 and fetched.headers["content-type"] == "video/mp4"
            saved = tmp_path / Path(url).name
            saved.write_bytes(fetched.content)
            assert probe(saved).duration_s > 3
        assert client.delete(f"/api/v1/tasks/{done['task_id']}").status_code == 200
        assert not run_dir.exists()


def test_a_video_whose_run_cannot_be_read_fails_the_task_in_its_own_words_and_the_first_stays_made(server, work):
    with server.client() as client:
        task_id = submit(client, **mpt_body(video_subject="Reefs", video_count=2, pipeline="slow"))
        wait_task(client, task_id, lambda t: t["status"] == "running", timeout=120)
        second = video_runs(work / "runs" / task_id)[1]
        (second / "run.json").write_text("{not json")  # its run.json spoilt before its turn
        failed = finished(client, task_id)
    assert failed["state"] == -1 and failed["message"].startswith("video 2 of 2: "), failed["message"]
    assert '"done"' in (work / "runs" / task_id / "report.json").read_text()
