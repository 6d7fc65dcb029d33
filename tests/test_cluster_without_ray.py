"""`--cluster` on an install without the `cluster` extra: one line saying what to install, exit 2, nothing started.

Ray is hidden from a real runner process by an import hook that answers for `ray` as Python does when a
package is not installed, so this holds whether or not this machine has Ray.
"""

import subprocess
import sys

from tests.runner_helpers import balloon_pipeline, run_cli

WITHOUT_RAY = """
import sys

class NotInstalled:
    def find_spec(self, name, path=None, target=None):
        if name == "ray" or name.startswith("ray."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, NotInstalled())
from aishorts.main import main
sys.exit(main(sys.argv[1:]))
"""


def test_cluster_without_ray_installed_exits_2_with_the_install_command(tmp_path):
    pipeline = balloon_pipeline(tmp_path / "p.toml", {"name": "grow", "ceiling": "100M", "params": {"mb": 5}})
    (tmp_path / "topics.txt").write_text("one topic\n")
    out = subprocess.run(
        [sys.executable, "-c", WITHOUT_RAY, "--pipeline", str(pipeline), "--topics-file", "topics.txt",
         "--cluster", "local", "--run-dir", "batch"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip().splitlines() == [
        'aishorts-runner: error: --cluster needs Ray, which is not installed here: pip install -e ".[cluster]"']
    assert out.stdout == "" and not (tmp_path / "batch").exists()


def test_cluster_needs_a_batch_file(tmp_path):
    out = run_cli("--topic", "one short", "--cluster", "local", cwd=tmp_path)
    assert out.returncode == 2 and "--cluster needs --topics-file" in out.stderr
