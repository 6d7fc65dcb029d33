"""Memory thresholds a stage decides by live in limits.toml beside its ceiling, and reach the stage in its call.

tts and render turn lean under a small ceiling, match leaves CLIP out under CLIP's need, theme and script
pick the strongest local model that fits, script checks with MiniLM only where it has room: each size is the limits file's `thresholds` of that stage.
"""

import json

import pytest

from aishorts.ipc.sizes import MiB, parse_size
from aishorts.runner.errors import UsageError
from aishorts.runner.limits import load_limits, save_limits
from tests.runner_helpers import balloon_pipeline, run_cli


def test_the_shipped_limits_hold_every_stage_threshold():
    limits = load_limits()
    assert limits.for_stage("tts").thresholds == {"lean_below": 450 * MiB, "side_by_side_need": 800 * MiB}
    assert limits.for_stage("render").thresholds == {"lean_below": 600 * MiB}
    assert limits.for_stage("match").thresholds == {"clip_need": 1100 * MiB}
    models = {"need_smollm2": 300 * MiB, "need_qwen_coder_1_5b": 1550 * MiB}
    assert limits.for_stage("theme").thresholds == models
    assert limits.for_stage("script").thresholds == {**models, "embed_need": 200 * MiB}


def test_the_stages_defaults_for_a_limits_file_without_a_threshold_are_the_shipped_ones():
    """Used only when a limits file of the user's leaves the threshold out: the two must not drift apart."""
    from aishorts.stages.script.grounded import EMBED_NEED
    from aishorts.stages.tts.stage import SIDE_BY_SIDE_NEED

    assert load_limits().for_stage("script").thresholds["embed_need"] == EMBED_NEED
    assert load_limits().for_stage("tts").thresholds["side_by_side_need"] == SIDE_BY_SIDE_NEED


def test_a_limits_files_thresholds_reach_the_stage_in_its_call(tmp_path):
    pipeline = balloon_pipeline(tmp_path / "p.toml", {"name": "grow", "ceiling": "100M", "params": {"mb": 5}})
    limits = tmp_path / "limits.toml"
    limits.write_text('[stages.grow]\nceiling = "100M"\nthresholds = { lean_below = "64M", clip_need = "1G" }\n')
    run_dir = tmp_path / "run"
    out = run_cli("--pipeline", pipeline, "--limits", limits, "--run-dir", run_dir, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    call = json.loads((run_dir / "grow" / "call.json").read_text())
    assert call["thresholds"] == {"lean_below": 64 * MiB, "clip_need": parse_size("1G")}


def test_a_limits_file_that_leaves_thresholds_out_keeps_the_shipped_ones_and_a_limit_keeps_them(tmp_path):
    own = tmp_path / "limits.toml"
    own.write_text('[stages.tts]\nceiling = "800M"\nminimum = "400M"\n'
                   '[stages.render]\nceiling = "900M"\nthresholds = { lean_below = "700M" }\n')
    limits = load_limits(own)
    assert limits.for_stage("tts").ceiling == 800 * MiB
    assert limits.for_stage("tts").thresholds == {"lean_below": 450 * MiB, "side_by_side_need": 800 * MiB}
    assert limits.for_stage("render").thresholds == {"lean_below": 700 * MiB}
    assert limits.with_override("tts", 300 * MiB).for_stage("tts").thresholds == {"lean_below": 450 * MiB, "side_by_side_need": 800 * MiB}


def test_thresholds_are_written_back_as_read(tmp_path):
    shipped = load_limits()
    save_limits(tmp_path / "written.toml", shipped)
    again = load_limits(tmp_path / "written.toml")
    assert {n: s.thresholds for n, s in again.stages.items()} == {n: s.thresholds for n, s in shipped.stages.items()}


@pytest.mark.parametrize(("table", "words"), [
    ('thresholds = { lean_below = "lots" }', ["stages.tts", "thresholds", "lots"]),
    ('thresholds = "450M"', ["stages.tts", "thresholds must be a table"]),
])
def test_a_bad_threshold_is_refused_naming_the_file_and_the_stage(tmp_path, table, words):
    bad = tmp_path / "limits.toml"
    bad.write_text(f'[stages.tts]\nceiling = "700M"\n{table}\n')
    with pytest.raises(UsageError) as refused:
        load_limits(bad)
    for word in [str(bad), *words]:
        assert word in str(refused.value)
