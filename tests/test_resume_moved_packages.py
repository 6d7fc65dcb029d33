"""A run directory made before the stage modules moved resumes without redoing its stages.

They moved twice: under `aishorts` (`stages.theme` -> `aishorts.stages.theme`, so an installed wheel has no
top-level `stages` to clash with another project's), then into a folder per stage (`aishorts.stages.theme.stage`).
The stamps hash each stage's module by its first name, so all three spellings hash alike. A pipeline file of
then (which run.json names, and a resume reads again) runs each stage by its name now.
"""

from __future__ import annotations

import json

import msgspec

from aishorts.ipc.files import sha256_bytes
from aishorts.ipc.pipeline import DEFAULT_PIPELINE, module_name_now
from aishorts.runner.limits import load_limits
from aishorts.runner.pipeline_file import load_pipeline
from aishorts.runner.run import inputs_hash
from tests.runner_helpers import report, run_cli

THEME = next(spec for spec in DEFAULT_PIPELINE if spec.name == "theme")
BEFORE = THEME.module.removeprefix("aishorts.").removesuffix(".stage")  # the name before both moves
AFTER_FIRST_MOVE = "aishorts." + BEFORE  # under aishorts, before the folder per stage


def test_a_stage_module_hashes_alike_under_its_old_and_its_new_name(tmp_path):
    hashes = {inputs_hash(tmp_path, msgspec.structs.replace(THEME, module=name), b"{}")
              for name in (BEFORE, AFTER_FIRST_MOVE, THEME.module)}
    assert len(hashes) == 1
    assert THEME.module == AFTER_FIRST_MOVE + ".stage"


def test_another_module_is_still_another_hash(tmp_path):
    theme = msgspec.structs.replace(THEME, module="aishorts.stages.theme.stage")
    assert inputs_hash(tmp_path, theme, b"{}") != inputs_hash(tmp_path, msgspec.structs.replace(
        THEME, module="aishorts.stages.script.stage"), b"{}")
    balloon = msgspec.structs.replace(THEME, module="tools.balloon")  # tools/ did not move: its name is its own
    assert inputs_hash(tmp_path, balloon, b"{}") != inputs_hash(tmp_path, msgspec.structs.replace(
        THEME, module="aishorts.tools.balloon"), b"{}")


def test_a_run_stamped_as_the_runner_before_the_move_did_is_resumed(tmp_path):
    topic = {"topic": "Why octopuses have three hearts"}
    pipeline = tmp_path / "p.toml"
    pipeline.write_text(f'[[stage]]\nname = "theme"\nmodule = "{THEME.module}"\noutput = "theme"\n'
                        f'params = {{ topic = "{topic["topic"]}" }}\n')
    run_dir = tmp_path / "run"
    first = run_cli("--pipeline", pipeline, "--run-dir", run_dir, cwd=tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    # the runner before the move hashed the stage's module as `stages.theme`: the stamp is the one it wrote
    stamp = json.loads((run_dir / "theme" / "stamp.json").read_text())
    assert stamp["inputs_hash"] == sha256_bytes(b"theme", BEFORE.encode(), msgspec.json.encode(topic))

    again = run_cli("--pipeline", pipeline, "--run-dir", run_dir, cwd=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    assert [s["status"] for s in report(run_dir)["stages"]] == ["skipped"]


def test_a_pipeline_file_written_before_the_move_runs_each_stage_by_its_name_now(tmp_path):
    pipeline = tmp_path / "p.toml"
    pipeline.write_text(  # `@stages`: the old name, written without this file naming it
        '[[stage]]\nname = "theme"\nmodule = "@stages.theme"\noutput = "theme"\n'
        'params = { topic = "Why octopuses have three hearts" }\n\n'
        '[[stage]]\nname = "grow"\nmodule = "tools.balloon"\noutput = "balloon"\n'.replace("@", ""))
    specs, _ = load_pipeline(pipeline, load_limits(None))
    assert [spec.module for spec in specs] == [THEME.module, "tools.balloon"]  # tools/ did not move
    assert module_name_now(AFTER_FIRST_MOVE) == module_name_now(THEME.module) == THEME.module
    assert module_name_now(THEME.module.removesuffix(".stage") + ".topic_support") == "aishorts.stages.theme.topic_support"
