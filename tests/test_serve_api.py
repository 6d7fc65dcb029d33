"""`aishorts-runner serve`, its REST API: a real server on 127.0.0.1 running balloon stages through the supervisor.

What a MoneyPrinterTurbo client sees (state -1/0/1/4, progress 0-100), what
ours sees besides (stages with memory, the failing stage, resume), and what
the server promises: jobs survive its death, cancelling leaves no process,
requests are checked as the CLI checks them, paths stay in the runs folder.
"""

from __future__ import annotations

import ast
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from aishorts.ipc.sizes import MiB

from tests.runner_helpers import RUNNER, balloon_pipeline, marker_env, processes_with_marker, run_cli, wait_for
from tests.serve_helpers import finished, running_server, stage_of, submit, task, wait_task

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def work(tmp_path) -> Path:
    balloon_pipeline(tmp_path / "balloons.toml",
                     {"name": "grow", "ceiling": "300M", "params": {"mb": 40, "rate_mb_s": 200}},
                     {"name": "big", "ceiling": "300M", "params": {"mb": 120, "rate_mb_s": 200}})
    balloon_pipeline(tmp_path / "holding.toml",
                     {"name": "grow", "ceiling": "300M", "params": {"mb": 30, "rate_mb_s": 200}},
                     {"name": "hold", "ceiling": "400M", "params": {"mb": 60, "rate_mb_s": 200, "child_mb": 40,
                                                                     "hold_s": 4}})
    balloon_pipeline(tmp_path / "forever.toml",
                     {"name": "hold", "ceiling": "400M", "params": {"mb": 60, "rate_mb_s": 200, "child_mb": 40,
                                                                     "hold_s": 600}})
    return tmp_path


def pipelines(work: Path) -> list[str]:
    return ["--pipeline", str(work / "balloons.toml"), "--pipeline", str(work / "holding.toml"),
            "--pipeline", str(work / "forever.toml")]


def test_a_submitted_short_runs_to_the_end_with_each_stage_measured(work):
    with running_server(work / "runs", *pipelines(work)) as server, server.client() as client:
        task_id = submit(client, topic="Balloons over the bay", pipeline="balloons")
        listed = client.get("/api/v1/tasks").json()["data"]
        assert task_id in [t["task_id"] for t in listed["tasks"]] and listed["total"] == 1

        done = finished(client, task_id)

        assert (done["state"], done["status"], done["progress"]) == (1, "done", 100)
        assert done["title"] == "Balloons over the bay"
        for name, mb in (("grow", 40), ("big", 120)):
            stage = stage_of(done, name)
            assert stage["status"] == "done"
            assert stage["peak_rss_bytes"] >= mb * MiB and stage["ceiling_bytes"] == 300 * MiB
        assert (work / "runs" / task_id / "report.json").exists()  # the task is its run directory
        svg = client.get(done["files"]["memory.svg"])
        assert svg.status_code == 200 and svg.headers["content-type"].startswith("image/svg+xml")
        assert svg.text.startswith("<svg")
        part = client.get(done["files"]["memory.svg"], headers={"Range": "bytes=0-9"})
        assert part.status_code == 206 and part.content == svg.content[:10]


def test_an_oom_on_purpose_names_the_stage_and_its_numbers_and_a_resume_with_more_memory_finishes(work):
    with running_server(work / "runs", *pipelines(work)) as server, server.client() as client:
        task_id = submit(client, topic="Too small", pipeline="balloons", limits={"big": "60M"})

        failed = finished(client, task_id)

        assert (failed["state"], failed["status"], failed["failed_stage"]) == (-1, "oom", "big")
        big = stage_of(failed, "big")
        assert big["status"] == "oom" and big["ceiling_bytes"] == 60 * MiB
        assert big["peak_rss_bytes"] > big["ceiling_bytes"] and not big["killed_by_os"]
        assert "stage big crossed its memory ceiling" in failed["message"]
        assert "--limit big=" in failed["rerun_command"] and failed["resumable"]
        assert int(failed["suggested_limits"]["big"].rstrip("M")) >= 300  # its usual ceiling or 1.5x the peak

        resumed = client.post(f"/api/v1/tasks/{task_id}/resume", json={"limits": {"big": "300M"}})
        assert resumed.status_code == 200, resumed.text
        done = finished(client, task_id)

        assert done["status"] == "done", done
        assert stage_of(done, "grow")["status"] == "skipped"  # the run directory's resume: grow was complete
        assert stage_of(done, "big")["ceiling_bytes"] == 300 * MiB


def test_cancelling_kills_the_stage_tree_and_leaves_no_process(work):
    env, marker = marker_env()
    with running_server(work / "runs", *pipelines(work), env=env) as server, server.client() as client:
        task_id = submit(client, topic="Cancel me", pipeline="forever")
        running = wait_task(client, task_id, lambda t: stage_of(t, "hold")["rss_bytes"] > 80 * MiB, timeout=120)
        assert running["state"] == 4 and running["status"] == "running"
        stage_processes = [p for p in processes_with_marker(marker) if p.pid != server.process.pid]
        assert len(stage_processes) >= 2  # the stage and its child

        response = client.delete(f"/api/v1/tasks/{task_id}")
        assert response.status_code == 200, response.text
        cancelled = finished(client, task_id, timeout=60)

        assert (cancelled["state"], cancelled["status"]) == (-1, "interrupted")
        # the cancel's answer was computed before the run ended: a page that gets it after the end keeps the end
        answered = response.json()["data"]
        assert running["revision"] < answered["revision"] <= cancelled["revision"]
        assert wait_for(lambda: not [p for p in processes_with_marker(marker) if p.pid != server.process.pid],
                        timeout=30)
        assert client.delete(f"/api/v1/tasks/{task_id}").status_code == 200  # stopped: now it is removed
        assert client.get(f"/api/v1/tasks/{task_id}").status_code == 404 and not (work / "runs" / task_id).exists()


def test_a_server_killed_mid_job_comes_back_with_the_job_interrupted_and_resumable_and_the_queue_kept(work):
    env, marker = marker_env()
    runs = work / "runs"
    with running_server(runs, *pipelines(work), "--jobs", "1", env=env) as server, server.client() as client:
        first = submit(client, topic="Killed with its server", pipeline="holding")
        second = submit(client, topic="Still queued", pipeline="balloons")
        wait_task(client, first, lambda t: stage_of(t, "hold")["rss_bytes"] > 0, timeout=120)
        assert (task(client, second)["state"], task(client, second)["status"]) == (4, "queued")
        server.process.kill()
        server.process.wait()
        assert wait_for(lambda: not processes_with_marker(marker), timeout=30)  # the stages died with it

    with running_server(runs, *pipelines(work), "--jobs", "1") as server, server.client() as client:
        interrupted = task(client, first)
        assert (interrupted["state"], interrupted["status"]) == (-1, "interrupted")
        assert interrupted["resumable"] and stage_of(interrupted, "grow")["status"] == "done"
        assert interrupted["failed_stage"] == "hold" and stage_of(interrupted, "hold")["status"] == "interrupted"
        assert finished(client, second)["status"] == "done"  # queued before the crash, run after it

        assert client.post(f"/api/v1/tasks/{first}/resume").status_code == 200
        done = finished(client, first)
        assert done["status"] == "done"
        assert stage_of(done, "grow")["status"] == "skipped"


def test_stopping_the_server_interrupts_its_jobs_with_their_reports_written_and_no_process_left(work):
    env, marker = marker_env()
    with running_server(work / "runs", *pipelines(work), env=env) as server, server.client() as client:
        task_id = submit(client, topic="Stopped with its server", pipeline="forever")
        wait_task(client, task_id, lambda t: stage_of(t, "hold")["rss_bytes"] > 0, timeout=120)
        server.process.terminate()
        assert server.process.wait(120) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal once it has shut down
    saved = json.loads((work / "runs" / task_id / "report.json").read_text())
    assert saved["status"] == "interrupted" and saved["stages"][0]["status"] == "interrupted"
    assert wait_for(lambda: not processes_with_marker(marker), timeout=30)


def test_a_run_the_cli_is_making_in_the_runs_folder_shows_as_running_elsewhere(work):
    runs = work / "runs"
    cli = subprocess.Popen([*RUNNER, "--topic", "From the CLI", "--pipeline", work / "forever.toml",
                            "--run-dir", runs / "from-the-cli"], cwd=work, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    try:
        assert wait_for(lambda: (runs / "from-the-cli" / "run.json").exists(), timeout=60)
        with running_server(runs, *pipelines(work)) as server, server.client() as client:
            seen = task(client, "from-the-cli")
            assert (seen["state"], seen["status"], seen["resumable"]) == (4, "running", False)
            assert "another aishorts-runner process" in seen["message"]
            assert client.delete("/api/v1/tasks/from-the-cli").status_code == 409
            assert client.post("/api/v1/tasks/from-the-cli/resume").status_code == 409
            cli.terminate()
            assert cli.wait(60) == 130
            stopped = wait_task(client, "from-the-cli", lambda t: t["status"] != "running", timeout=30)
            assert (stopped["status"], stopped["resumable"]) == ("interrupted", True)
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.wait()


def test_events_stream_the_stages_samples_and_the_end(work):
    with running_server(work / "runs", *pipelines(work)) as server, server.client() as client:
        task_id = submit(client, topic="Watched live", pipeline="balloons")
        kinds: list[str] = []
        last: dict = {}
        with client.stream("GET", f"/api/v1/tasks/{task_id}/events", timeout=120) as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            kind = ""
            for line in stream.iter_lines():
                if line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: "):
                    kinds.append(kind)
                    if kind == "task":
                        last = json.loads(line[6:])
                        if last["state"] in (-1, 1):
                            break
        assert kinds[0] == "task" and "sample" in kinds and last["status"] == "done"


def test_the_server_stays_light_with_two_jobs_running(work):
    with running_server(work / "runs", *pipelines(work), "--jobs", "2") as server, server.client() as client:
        idle = psutil.Process(server.process.pid).memory_info().rss
        ids = [submit(client, topic=f"Side by side {i}", pipeline="forever") for i in range(2)]
        for task_id in ids:
            wait_task(client, task_id, lambda t: stage_of(t, "hold")["rss_bytes"] > 0, timeout=120)
        busy = psutil.Process(server.process.pid).memory_info().rss
        maps = {m.path for m in psutil.Process(server.process.pid).memory_maps()}
        for task_id in ids:
            client.delete(f"/api/v1/tasks/{task_id}")
        print(f"server RSS idle {idle / MiB:.1f} MiB, with 2 jobs running {busy / MiB:.1f} MiB")
        assert idle < 120 * MiB and busy < 120 * MiB
        assert not [path for path in maps if any(lib in path for lib in ("torch", "onnxruntime", "llama"))]


@pytest.fixture(scope="module")
def strict_server(tmp_path_factory):
    """One server with a 2G budget for all the refusals: none of them may leave anything behind."""
    work = tmp_path_factory.mktemp("strict")
    balloon_pipeline(work / "balloons.toml", {"name": "big", "ceiling": "300M", "params": {"mb": 10}})
    with running_server(work / "runs", "--pipeline", work / "balloons.toml", "--max-ram", "2G") as server:
        yield server, work / "runs"


@pytest.mark.parametrize("body, status, field", [
    ({"platform": "vhs"}, 400, "platform"),
    ({"speed": 9}, 400, "speed"),
    ({"category": "cooking"}, 400, "category"),
    ({"voice": "nobody"}, 400, "voice"),
    ({"max_ram": "lots"}, 400, "max_ram"),
    ({"max_ram": "64G"}, 400, "max_ram"),  # more than the server's own budget
    ({"limits": {"nope": "1G"}}, 400, "limits"),
    ({"limits": {"big": "a lot"}, "pipeline": "balloons"}, 400, "limits"),
    ({"script": "   "}, 400, "script"),
    ({"script": "1234 5678"}, 400, "script"),
    ({"topic": "x" * 1000}, 400, "topic"),
    ({"topic": 5}, 400, "topic"),  # MoneyPrinterTurbo answers 400 to every body it cannot use
    ({"colour": "red"}, 400, "video_subject"),  # an unknown field is ignored; no subject is the refusal
    ({"video_aspect": "4:3"}, 400, "video_aspect"),
    ({"bgm_type": "custom"}, 400, "bgm_type"),
    ({"pipeline": "../../etc/passwd"}, 400, "pipeline"),
])
def test_bad_requests_are_refused_with_the_field_and_the_reason(strict_server, body, status, field):
    server, runs = strict_server
    with server.client() as client:
        response = client.post("/api/v1/videos", json=body)
        assert response.status_code == status, response.text
        answer = response.json()
        assert answer["field"] == field and answer["message"] and answer["detail"][0]["field"] == field
        assert client.get("/api/v1/tasks").json()["data"]["total"] == 0  # nothing was made
        assert not list(runs.iterdir())


def test_a_request_is_refused_for_the_reason_the_cli_gives_each_in_its_own_words(work):
    with running_server(work / "runs") as server, server.client() as client:
        for body, argv in (({"topic": "x", "speed": 9}, ["--topic", "x", "--speed", "9"]),
                           ({"topic": "x", "encoder_preset": "vhs"}, ["--topic", "x", "--encoder-preset", "vhs"])):
            answer = client.post("/api/v1/videos", json=body).json()
            cli = run_cli(*argv, cwd=work, timeout=60)
            field, value = next((k, v) for k, v in body.items() if k != "topic")
            assert answer["field"] == field and answer["message"].startswith(f"{field} {value}: ")
            reason = answer["message"].split(": ", 1)[1]
            assert cli.returncode == 2 and f"{argv[2]} {value}: {reason}" in cli.stderr


def test_the_page_is_served_the_request_schema_and_offers_exactly_the_languages_the_narrator_speaks(strict_server):
    from aishorts.ipc.request import json_schema
    from aishorts.stages.tts.stage import LANGUAGES, check_language

    server, _ = strict_server
    with server.client() as client:
        schema = client.get("/api/v1/schema").json()["data"]
    assert schema == json_schema()
    language = next(p for p in schema["$defs"]["ShortRequest"]["properties"]["language"]["anyOf"] if "enum" in p)
    assert sorted(language["enum"]) == sorted(LANGUAGES)  # the page once offered ja, which tts refused
    assert all(check_language(code) == code for code in language["enum"])


def test_mpt_fields_map_onto_ours_and_the_rest_are_listed_as_ignored(work):
    with running_server(work / "runs", *pipelines(work)) as server, server.client() as client:
        response = client.post("/api/v1/videos", json={
            "video_subject": "Why the sea is salty", "video_language": "en-US", "bgm_type": "", "video_aspect": "9:16",
            "voice_name": "en-US-JennyNeural-Female", "subtitle_enabled": True, "pipeline": "balloons",
        })
        assert response.status_code == 200, response.text
        data = response.json()["data"]
        assert set(data["ignored_fields"]) == {"voice_name"}
        saved = json.loads((work / "runs" / data["task_id"] / "run.json").read_text())["params"]
        assert saved["theme"]["topic"] == "Why the sea is salty" and saved["tts"]["language"] == "en-us"
        assert saved["timeline"]["music"] is False and saved["timeline"]["captions"] is True
        assert finished(client, data["task_id"])["state"] == 1


def test_paths_in_requests_never_leave_the_runs_folder(work):
    outside = work / "secret.txt"
    outside.write_text("not for clients")
    with running_server(work / "runs", *pipelines(work)) as server, server.client() as client:
        task_id = submit(client, topic="Paths", pipeline="balloons")
        finished(client, task_id)
        (work / "runs" / task_id / "thumbnail.jpg").symlink_to(outside)
        (work / "runs" / "escape").symlink_to(work)
        for path in (f"/api/v1/tasks/{task_id}/thumbnail.jpg", f"/api/v1/tasks/{task_id}/..%2F..%2Fsecret.txt",
                     "/api/v1/tasks/..%2Fsecret.txt/report.json", "/api/v1/tasks/escape/report.json",
                     f"/api/v1/tasks/{task_id}/stage.log"):
            response = client.get(path)
            assert response.status_code == 404, path
            assert "not for clients" not in response.text


def test_a_token_is_required_of_every_request_when_given(work):
    with running_server(work / "runs", "--token", "s3cret") as server, server.client() as client:
        refused = client.get("/api/v1/tasks")
        assert refused.status_code == 401 and refused.json()["field"] == "token"
        assert client.get("/api/v1/tasks", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert client.get("/api/v1/tasks", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert client.get("/api/v1/tasks?token=s3cret").status_code == 200
        assert client.get("/").status_code == 200  # the page holds no data; it asks with the token


def test_another_address_than_loopback_needs_a_token(work):
    env = {k: v for k, v in os.environ.items() if k != "AISHORTS_SERVE_TOKEN"}
    out = run_cli("serve", "--host", "0.0.0.0", "--runs", work / "runs", cwd=work, env=env, timeout=60)
    assert out.returncode == 2 and "--token" in out.stderr


def test_without_the_serve_extra_the_command_says_how_to_install_it(work):
    code = ("import sys; sys.modules['fastapi'] = None; from aishorts.main import main; sys.exit(main(['serve']))")
    out = subprocess.run([sys.executable, "-c", code], cwd=work, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and 'pip install -e ".[serve]"' in out.stderr


def test_an_unknown_task_is_a_404_not_a_500(work):
    with running_server(work / "runs") as server, server.client() as client:
        for method, path in (("GET", "/api/v1/tasks/nope"), ("DELETE", "/api/v1/tasks/nope"),
                             ("POST", "/api/v1/tasks/nope/resume"), ("GET", "/api/v1/tasks/nope/final.mp4")):
            response = client.request(method, path)
            assert response.status_code == 404 and response.json()["field"] == "task_id", (method, path)
        bad_json = client.post("/api/v1/videos", content=b"{not json", headers={"Content-Type": "application/json"})
        assert bad_json.status_code == 400
        assert client.get("/api/v1/tasks?page=0").status_code == 422


def test_the_server_imports_no_stage_code_or_model_library():
    forbidden = {"stages", "tools", "torch", "numpy", "transformers", "onnxruntime", "moviepy", "kokoro_onnx",
                 "sentence_transformers", "xllamacpp", "PIL", "ray", "cluster"}
    for path in sorted((ROOT / "serve").rglob("*.py")):
        tree = ast.parse(path.read_text())
        names = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        names |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
        assert not {n for n in names if n.split(".")[0] in forbidden}, path


def test_the_page_and_the_api_docs_are_served(work):
    with running_server(work / "runs") as server, server.client() as client:
        page = client.get("/")
        assert page.status_code == 200 and "<form" in page.text and "static/app.js" in page.text
        for asset in ("/", "/static/app.js", "/static/style.css"):
            response = client.get(asset)
            assert response.status_code == 200 and "://" not in response.text  # nothing fetched from elsewhere
        assert "/api/v1/videos" in client.get("/openapi.json").json()["paths"]


def test_short_video_makers_requests_work_too(work):
    with running_server(work / "runs", *pipelines(work)) as server, server.client() as client:
        made = client.post("/api/short-video", json={
            "scenes": [{"text": "Octopuses have three hearts.", "searchTerms": ["octopus"]},
                       {"text": "Their blood is blue.", "searchTerms": ["blood"]}],
            "config": {"voice": "jm_kumo", "musicVolume": "muted", "orientation": "portrait", "paddingBack": 1500},
        })
        assert made.status_code == 200, made.text
        video_id = made.json()["videoId"]
        client.delete(f"/api/v1/tasks/{video_id}")  # the real stages are not what this test is about
        saved = json.loads((work / "runs" / video_id / "run.json").read_text())["params"]
        assert saved["script"]["script_text"] == "Octopuses have three hearts. Their blood is blue."
        assert saved["tts"]["voice"] == "jm_kumo" and saved["timeline"]["music"] is False
        assert wait_for(lambda: client.get(f"/api/short-video/{video_id}/status").json()["status"] == "failed", 60)

        balloons = submit(client, topic="Polled the other way", pipeline="balloons")
        assert client.get(f"/api/short-video/{balloons}/status").json()["status"] in ("processing", "ready")
        finished(client, balloons)
        assert client.get(f"/api/short-video/{balloons}/status").json()["status"] == "ready"
        assert client.get(f"/api/short-video/{balloons}").status_code == 404  # balloons make no video

        for body, field in (({"scenes": []}, "scenes"), ({"scenes": [{"text": "x"}], "config": {"orientation": "diagonal"}},
                                                          "config"), ({"scenes": [{"txt": "x"}]}, "scenes")):
            refused = client.post("/api/short-video", json=body)
            assert refused.status_code == 422 and refused.json()["field"] == field, refused.text
