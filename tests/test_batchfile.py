"""Batch files with per-row options: plain topics, JSON Lines and CSV, each row checked as its flags before any starts."""

import json

import pytest

from tests.runner_helpers import balloon_pipeline, run_cli


def _pipeline(tmp_path):
    return balloon_pipeline(
        tmp_path / "p.toml",
        {"name": "light", "ceiling": "100M", "params": {"mb": 5}},
        {"name": "grow", "ceiling": "200M", "params": {"mb": 100, "rate_mb_s": 500}},
    )


def _run_json(run_dir):
    return json.loads((run_dir / "run.json").read_text())["params"]


def test_a_jsonl_batch_runs_each_row_with_its_own_options_and_its_own_limits(tmp_path):
    (tmp_path / "clips").mkdir()
    (tmp_path / "my-words.txt").write_text("Octopuses have three hearts. Two pump blood through the gills.\n")
    batch = tmp_path / "shorts.jsonl"
    batch.write_text(
        '{"topic": "Why octopuses have three hearts", "platform": "tiktok", "voice": "am_adam", "speed": 1.2, "seed": 7}\n'
        "\n"
        '# a comment line\n'
        '{"topic": "Too big for its ceiling", "limit": ["grow=60M"]}\n'
        '{"script": "my-words.txt", "broll_dir": "clips", "no_music": true, "language": "pt-br"}\n'
        '{"category": "space", "limit": "light=90M; grow=190M"}\n'
    )
    batch_dir = tmp_path / "batch"
    out = run_cli("--pipeline", _pipeline(tmp_path), "--topics-file", batch, "--jobs", "2", "--run-dir", batch_dir,
                  "--json", cwd=tmp_path)
    assert out.returncode == 3, out.stderr  # the row whose own limit is too small for its stage
    report = json.loads(out.stdout)
    assert [(item["line"], item["status"]) for item in report["items"]] == [(1, "done"), (4, "oom"), (5, "done"), (6, "done")]
    first, small, scripted, by_category = (tmp_path / item["run_dir"] for item in report["items"])
    assert report["items"][1]["failed_stage"] == "grow"
    assert "--limit grow=" in report["items"][1]["rerun_command"]

    params = _run_json(first)
    assert params["script"]["platform"] == params["timeline"]["platform"] == "tiktok"
    assert (params["tts"]["voice"], params["tts"]["speed"], params["script"]["llm"]["seed"]) == ("am_adam", 1.2, 7)
    assert params["theme"]["topic"] == "Why octopuses have three hearts"
    params = _run_json(scripted)
    assert params["script"]["script_text"].startswith("Octopuses have three hearts.")
    assert params["broll"] == {**params["broll"], "source": "local", "local_dir": str((tmp_path / "clips").resolve())}
    assert params["timeline"]["music"] is False and params["tts"]["language"] == "pt-br"
    params = _run_json(by_category)
    assert (params["theme"]["topic"], params["theme"]["category"]) == (None, "space")
    # each row's own ceilings, the rows beside it keep the pipeline's
    ceilings = [{s["name"]: s["ceiling_bytes"] for s in json.loads((run_dir / "report.json").read_text())["stages"]}
                for run_dir in (first, small, by_category)]
    assert ceilings == [{"light": 100 * 2**20, "grow": 200 * 2**20}, {"light": 100 * 2**20, "grow": 60 * 2**20},
                        {"light": 90 * 2**20, "grow": 190 * 2**20}]


def test_a_csv_batch_with_a_header_sets_each_rows_options(tmp_path):
    batch = tmp_path / "shorts.csv"
    batch.write_text(
        "topic,platform,speed,no_music,limit\n"
        "First topic,reels,0.9,true,\n"
        '"Second, with a comma",,,,grow=150M\n'
    )
    batch_dir = tmp_path / "batch"
    out = run_cli("--pipeline", _pipeline(tmp_path), "--topics-file", batch, "--run-dir", batch_dir, "--json",
                  cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    items = json.loads(out.stdout)["items"]
    assert [(item["topic"], item["line"], item["status"]) for item in items] == [
        ("First topic", 2, "done"), ("Second, with a comma", 3, "done")]
    first = _run_json(tmp_path / items[0]["run_dir"])
    assert (first["script"]["platform"], first["tts"]["speed"], first["timeline"]["music"]) == ("reels", 0.9, False)
    second = _run_json(tmp_path / items[1]["run_dir"])
    assert (second["script"]["platform"], second["timeline"]["music"]) == ("shorts", True)


def test_a_plain_topics_file_still_reads_one_topic_a_line(tmp_path):
    batch = tmp_path / "topics.txt"
    batch.write_text("# today\nfirst topic\n\nsecond topic\n")
    out = run_cli("--pipeline", _pipeline(tmp_path), "--topics-file", batch, "--run-dir", tmp_path / "b", "--json",
                  cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert [(i["topic"], i["line"]) for i in json.loads(out.stdout)["items"]] == [("first topic", 2), ("second topic", 4)]


GOOD = '{"topic": "a good row"}\n'
BAD_ROWS = [
    # (file name, content, line of the bad row, words the message must hold)
    ("b.jsonl", GOOD + '{"topic": "x", "speed": "fast"}\n', 2, ["speed", "float"]),
    ("b.jsonl", GOOD + '{"topic": "x", "spead": 1.1}\n', 2, ["spead"]),
    ("b.jsonl", GOOD + '{"topic": "x", "speed": 3.0}\n', 2, ["speed 3.0", "0.5 and 2.0"]),
    ("b.jsonl", GOOD + '{"topic": "x", "seed": 1.5}\n', 2, ["seed"]),
    ("b.jsonl", GOOD + '{"topic": "x", "platform": "vine"}\n', 2, ["platform", "vine"]),
    ("b.jsonl", GOOD + '{"topic": "x", "category": "nonsense"}\n', 2, ["topic and category"]),
    ("b.jsonl", GOOD + '{"category": "nonsense"}\n', 2, ["category", "invalid choice"]),
    ("b.jsonl", GOOD + '{"topic": "x", "limit": ["nosuch=100M"]}\n', 2, ["--limit", "nosuch"]),
    ("b.jsonl", GOOD + '{"topic": "x", "limit": "grow=lots"}\n', 2, ["--limit", "grow=lots"]),
    ("b.jsonl", GOOD + '{"voice": "af_heart"}\n', 2, ["no topic, script or category"]),
    ("b.jsonl", GOOD + '{"topic": ""}\n', 2, ["topic", "empty"]),
    ("b.jsonl", GOOD + '{"script": "missing.txt"}\n', 2, ["script /", "missing.txt", "not found"]),
    ("b.jsonl", GOOD + '{"topic": "x", "broll_dir": "nowhere"}\n', 2, ["broll_dir nowhere", "no such folder"]),
    ("b.jsonl", GOOD + "\n" + '{"topic": "x",\n', 3, ["JSON"]),
    ("b.jsonl", GOOD + '["a list"]\n', 2, ["object"]),
    ("b.csv", "topic,speeed\nx,1\n", 1, ["speeed", "columns are"]),
    ("b.csv", "topic,speed\ngood,1.0\n\nx,fast\n", 4, ["speed"]),
    ("b.csv", "topic,speed\ngood,1.0\nx,1.0,extra\n", 3, ["3 cells", "2 columns"]),
    ("b.csv", 'topic,no_music\ngood,\n"a topic\nover two lines",maybe\n', 3, ["no_music", "bool"]),
    ("b.txt", "first topic\n" + "x" * 5000 + "\n", 2, ["--topic"]),
    ("b.csv", 'topic,platform\ngood,shorts\n"unterminated,shorts\n', 3, ["quote", "never closed"]),
]


@pytest.mark.parametrize("name, content, line, words", BAD_ROWS,
                         ids=[f"{i}-{row[0]}-line{row[2]}" for i, row in enumerate(BAD_ROWS)])
def test_a_bad_row_is_refused_before_anything_starts_naming_its_line(tmp_path, name, content, line, words):
    batch = tmp_path / name
    batch.write_text(content)
    batch_dir = tmp_path / "batch"
    out = run_cli("--pipeline", _pipeline(tmp_path), "--topics-file", batch, "--run-dir", batch_dir, cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    message = out.stderr.strip()
    assert len(message.splitlines()) == 1, message
    assert f"{batch}, line {line}:" in message
    for word in words:
        assert word in message
    assert not batch_dir.exists()


def test_an_empty_batch_file_of_any_kind_is_bad_input(tmp_path):
    for name, content in (("t.txt", "# nothing\n"), ("t.jsonl", "\n"), ("t.csv", "topic,voice\n")):
        (tmp_path / name).write_text(content)
        out = run_cli("--topics-file", tmp_path / name, cwd=tmp_path)
        assert out.returncode == 2 and "no topics" in out.stderr, (name, out.stderr)
