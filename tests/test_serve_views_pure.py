"""What a task looks like is read, never written: `serve.views` leaves the job alone, the job side keeps it fresh.

A view of a job whose report another process is writing reads that report as it is now, and the job is the same
after as before; the `JobManager` is where a job's kept report is brought up to date, on the way to a view.
"""

from __future__ import annotations

import ast
from pathlib import Path

from aishorts.runner.report import RunReport, StageReport, write_report
from aishorts.serve.jobs import Job, JobManager
from aishorts.serve.requests import ServerSettings
from aishorts.serve.views import task_view

ROOT = Path(__file__).resolve().parent.parent
VIEWS = ROOT / "serve" / "views.py"


def _report(run_dir: Path, status: str, message: str) -> RunReport:
    stage = StageReport(name="theme", status="done" if status == "done" else "running")
    return RunReport(run_dir=str(run_dir), status=status, exit_code=0 if status == "done" else None,
                     message=message, stages=[stage])


def assignments_to_parameters(source: str, annotation: str) -> list[str]:
    """`param.attr = ...` (or `param.attr[k] = ...`, `+=`, `del`, `setattr(param, ...)`) in any function, for each
    parameter annotated `annotation`: each as `function: line`."""
    found = []
    for func in ast.walk(ast.parse(source)):
        if not isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        arguments = func.args.posonlyargs + func.args.args + func.args.kwonlyargs
        names = {a.arg for a in arguments if a.annotation is not None and ast.unparse(a.annotation) == annotation}
        for node in ast.walk(func):
            targets = []
            if isinstance(node, ast.Assign | ast.Delete):
                targets = node.targets
            elif isinstance(node, ast.AugAssign | ast.AnnAssign):
                targets = [node.target]
            elif isinstance(node, ast.Call) and getattr(node.func, "id", None) in ("setattr", "delattr"):
                targets = [ast.Attribute(value=node.args[0], attr="?")] if node.args else []
            for target in targets:
                for part in ast.walk(target):
                    if not isinstance(part, ast.Attribute | ast.Subscript):
                        continue
                    root = part.value
                    while isinstance(root, ast.Attribute | ast.Subscript):
                        root = root.value
                    if isinstance(root, ast.Name) and root.id in names:
                        found.append(f"{func.name}: line {node.lineno}")
                        break
    return found


def test_the_views_module_never_assigns_to_a_job():
    assert assignments_to_parameters(VIEWS.read_text(), "Job") == []


def test_the_check_finds_an_assignment_to_a_job():
    sample = ("def view(job: Job, other):\n    job.report = read()\n    other.x = 1\n"
              "def deep(job: Job):\n    job.stages['a'].status = 'done'\n"
              "def by_name(job: Job):\n    setattr(job, 'phase', 'idle')\n")
    assert assignments_to_parameters(sample, "Job") == ["view: line 2", "deep: line 5", "by_name: line 7"]


def test_a_view_reads_the_report_on_disk_and_leaves_the_job_as_it_was(tmp_path):
    run_dir = tmp_path / "made-by-the-cli"
    run_dir.mkdir()
    write_report(run_dir, _report(run_dir, "done", "it is finished"))
    job = Job(id=run_dir.name, run_dir=run_dir, record=None)

    view = task_view(job, 0.8)

    assert view.status == "done" and view.message == "it is finished" and view.state == 1
    assert job.report is None  # the job is not the view's to change


def test_the_job_manager_brings_a_kept_report_up_to_date_when_a_job_is_looked_up(tmp_path):
    runs = tmp_path / "runs"
    run_dir = runs / "written-elsewhere"
    run_dir.mkdir(parents=True)
    write_report(run_dir, _report(run_dir, "running", ""))
    manager = JobManager(ServerSettings(runs_dir=runs, max_ram=None, jobs=1, pipelines={}), lambda *_: None)
    manager.rescan()
    assert manager.jobs["written-elsewhere"].report.status == "running"

    write_report(run_dir, _report(run_dir, "done", "finished by the CLI"))
    job = manager.find("written-elsewhere")

    assert job.report is not None and job.report.status == "done" and job.report.message == "finished by the CLI"
    listed = {j.id: j for j in manager.all_jobs()}
    assert listed["written-elsewhere"].report.message == "finished by the CLI"
    assert task_view(job, 0.8).status == "done"
