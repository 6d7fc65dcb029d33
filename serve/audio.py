"""The narration a client fetches as MoneyPrinterTurbo's `audio_file`, at the level its request asked for.

Responsible for: the tts stage's WAV scaled by the run's `voice_volume` (which the render applies to the video's
mix, so a run stopped after tts would otherwise hand back the narrator's own level), written once beside it as
`audio.wav` in the run directory and made again when the narration is newer; samples beyond full scale are clipped.
Not for: finding the narration (`serve.views`) or serving the file (`serve.routes_files`). Light: the standard
library only (the server never loads numpy).
"""

from __future__ import annotations

import array
import os
import sys
import tempfile
import wave
from pathlib import Path

SCALED_NAME = "audio.wav"
"""The scaled narration's name in the run directory (MoneyPrinterTurbo's mount name for the narration)."""
_CHUNK_FRAMES = 1 << 16


class AudioError(Exception):
    """The narration cannot be scaled (not 16-bit PCM, unreadable); the message says which file and why."""


def narration_at_level(run_dir: Path, narration: Path, level: float) -> Path:
    """The narration at `level` (a factor of its amplitude): the file itself at 1.0, else its scaled copy."""
    if level == 1.0:
        return narration
    scaled = run_dir / SCALED_NAME
    try:
        if scaled.is_file() and scaled.stat().st_mtime_ns >= narration.stat().st_mtime_ns:
            return scaled
        _write_scaled(narration, scaled, level)
    except (OSError, wave.Error, EOFError) as exc:
        raise AudioError(f"the narration {narration.name} could not be scaled to voice_volume {level:g}: {exc}") \
            from None
    return scaled


def _write_scaled(source: Path, target: Path, level: float) -> None:
    """`source` with every sample times `level`, clipped, written to `target` atomically (two requests at once
    each write their own temporary file; the last rename wins with the same content)."""
    handle, temporary = tempfile.mkstemp(prefix=".audio-", suffix=".wav", dir=target.parent)
    try:
        with os.fdopen(handle, "wb") as out, wave.open(str(source), "rb") as reader, wave.open(out, "wb") as writer:
            if reader.getsampwidth() != 2 or reader.getcomptype() != "NONE":
                raise AudioError(f"{source.name} is not 16-bit PCM; voice_volume cannot be applied to it")
            writer.setparams(reader.getparams())
            while frames := reader.readframes(_CHUNK_FRAMES):
                writer.writeframes(_scaled(frames, level))
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _scaled(frames: bytes, level: float) -> bytes:
    samples = array.array("h")
    samples.frombytes(frames)
    if sys.byteorder == "big":  # WAV is little-endian
        samples.byteswap()
    out = array.array("h", [min(32767, max(-32768, round(sample * level))) for sample in samples])
    if sys.byteorder == "big":
        out.byteswap()
    return out.tobytes()
