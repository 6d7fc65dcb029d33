"""The supervisor stays light: no heavy library is ever imported by runner/ or ipc/."""

import subprocess
import sys
import time

from package_names import ROOT, importable_name

HEAVY = ("torch", "transformers", "onnxruntime", "moviepy", "llama_cpp", "kokoro_onnx", "sentence_transformers", "cv2", "numpy")

PROBE = """
import sys, io, contextlib
from aishorts.main import main
with contextlib.redirect_stdout(io.StringIO()):
    try:
        main(["--help"])
    except SystemExit:
        pass
import importlib
for module in {modules!r}:
    importlib.import_module(module)
print(",".join(sorted(m for m in {heavy!r} if m in sys.modules)))
"""


def test_help_and_every_supervisor_module_import_nothing_heavy():
    modules = [importable_name(path) for folder in ("aishorts", "runner", "ipc")
               for path in sorted((ROOT / folder).glob("*.py"))
               if path.stem != "__main__"]  # `python -m aishorts` itself: importing it would run the command
    out = subprocess.run([sys.executable, "-c", PROBE.format(heavy=HEAVY, modules=modules)], capture_output=True,
                         text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == ""


def test_help_answers_quickly():
    start = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "aishorts", "--help"], capture_output=True, text=True, check=True)
    assert "--max-ram" in out.stdout and "--limit" in out.stdout
    assert time.monotonic() - start < 5  # generous: the benchmark holds the real target (0.3 s)


def test_importing_stages_package_is_cheap():
    code = "import aishorts.stages, aishorts.stages.harness, sys; print(','.join(m for m in %r if m in sys.modules))" % (HEAVY[:-1],)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
