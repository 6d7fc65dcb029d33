"""The main command, as a user types it, writes a grounded short: from a wiki, or from the user's own file.

Each test runs `aishorts-runner --topic ...` offline on its defaults (the local
model, Kokoro, the illustrated library, ffmpeg) under a small budget, with a
loopback MediaWiki (tests/wiki_server.py) or a Markdown file the test writes,
and reads what a user would: sources.txt beside final.mp4, the log, report.json.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from source_files import OCTOPUS
from wiki_server import WikiServer

from tests.runner_helpers import report, run_cli, stage

pytestmark = pytest.mark.slow

TOPIC = "Why octopuses have three hearts"
BUDGET = "1G"
"""Small enough that `--llm auto` picks the small local model (SmolLM2): the shortest script stage."""


def make_short(work: Path, *options: str | Path) -> Path:
    run_dir = work / "run"
    out = run_cli("--topic", TOPIC, *options, "--max-ram", BUDGET, "--seed", "1", "--run-dir", run_dir,
                  cwd=work, timeout=1500)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "script: grounded in 1 source" in out.stdout
    assert (run_dir / "final.mp4").stat().st_size > 100_000
    return run_dir


def script_of(run_dir: Path) -> dict:
    return json.loads((run_dir / "script" / "artifact.json").read_text())


def assert_grounded_and_checked(run_dir: Path) -> None:
    notes = stage(report(run_dir), "script")["notes"]
    assert any(note.startswith("grounded in 1 source") for note in notes), notes
    script = script_of(run_dir)
    assert script["grounding"] == "grounded in 1 source"
    body = [s for s in script["support"] if s["part"] == "body"]
    assert body and all(s["supported"] and s["passage"] and s["source"] == 0 for s in body)
    source_text = " ".join(OCTOPUS["Octopus"].split())
    assert all(s["passage"] in source_text for s in body)  # the passages are the source's own words


@pytest.mark.usefixtures("own_cache")  # the wiki's answers are cached by URL: a port used before would answer from it
def test_the_main_command_with_a_wiki_makes_a_short_whose_sources_txt_credits_the_article(tmp_path):
    with WikiServer(OCTOPUS, formatversion=1) as wiki:
        run_dir = make_short(tmp_path, "--wiki-url", wiki.url)
    asked = [query for query, _ in wiki.requests]
    assert any(q.get("list") == "search" for q in asked) and any("extracts" in q.get("prop", "") for q in asked)
    assert all("aishorts" in headers.get("User-Agent", "").lower() for _, headers in wiki.requests)

    cited = (run_dir / "sources.txt").read_text()
    assert cited.startswith("grounded in 1 source.")
    assert "1. Octopus" in cited and f"{wiki.url}/wiki/Octopus" in cited
    assert "Creative Commons Attribution-Share Alike 4.0" in cited and "Credit:" in cited
    [source] = script_of(run_dir)["sources"]
    assert (source["title"], source["origin"]) == ("Octopus", f"{wiki.url}/wiki/Octopus")
    assert_grounded_and_checked(run_dir)


def test_the_main_command_with_a_source_file_makes_a_short_whose_sources_txt_names_the_file(tmp_path):
    notes = tmp_path / "octopus-notes.md"
    notes.write_text("# Octopus\n\n" + OCTOPUS["Octopus"] + "\n\n## See also\n\n- Squid\n")
    with WikiServer(OCTOPUS) as wiki:  # given a source, no wiki is asked
        run_dir = make_short(tmp_path, "--source", notes, "--wiki-url", wiki.url)
    assert wiki.requests == []

    cited = (run_dir / "sources.txt").read_text()
    assert cited.startswith("grounded in 1 source.")
    assert "1. Octopus" in cited and "octopus-notes.md" in cited
    [source] = script_of(run_dir)["sources"]
    assert source["origin"].endswith("octopus-notes.md")
    assert_grounded_and_checked(run_dir)
