"""Contact sheets: which visual each sentence of a script gets, from the old photo stills and the illustrated library.

For each script file given (plain narration, as for `--script FILE`), this runs
the real script (from text), broll and match stages in this process (through
stages.harness.execute, as `--isolation none` does) twice, once with
`--broll stills` (scikit-image's sample photographs, the old offline default)
and once with `--broll builtin` (the illustrated library), then draws one JPEG
per script: a row per sentence with the sentence, the old visual and the new
one, each with its description and match score. Not responsible for judging
relevance: a reader does that by looking at the sheets (BENCHMARKS.md).

    .venv/bin/python -m tools.illustrated_sheets docs/illustrated/*.txt --out docs/illustrated
"""

from __future__ import annotations

import argparse
import tempfile
import textwrap
from pathlib import Path

from aishorts.ipc.artifacts import Candidates, Matches, Theme
from aishorts.ipc.files import write_struct
from aishorts.ipc.messages import StageCall
from aishorts.ipc.params import BrollParams, MatchParams, ScriptParams
from aishorts.ipc.pipeline import DEFAULT_PIPELINE, artifact_path

THUMB = (216, 384)
TEXT_W = 420
ROW_GAP = 16
HEADER = 70


def stage_call(run_dir: Path, stage: str, params) -> StageCall:
    """The call the supervisor would hand the stage's process (see runner/run.py), for the default pipeline."""
    import msgspec

    spec = next(s for s in DEFAULT_PIPELINE if s.name == stage)
    kinds = {s.name: s.output for s in DEFAULT_PIPELINE}
    return StageCall(
        stage=stage, module=spec.module, run_dir=str(run_dir), out_dir=str(run_dir / stage),
        inputs={name: artifact_path(name) for name in spec.inputs},
        input_kinds={name: kinds[name] for name in spec.inputs},
        output_kind=spec.output, params=msgspec.Raw(msgspec.json.encode(params)), device="cpu",
    )


def matched(script_file: Path, source: str, work: Path) -> tuple[list[str], Candidates, Matches, Path]:
    """The script's sentences, the candidates of `source`, and the match stage's choice for each sentence."""
    from aishorts.stages.harness import execute
    from aishorts.stages.script.stage import script_from_text

    theme = Theme(topic=script_file.stem.replace("-", " "), angle="", keywords=[])
    script = script_from_text(script_file.read_text(), theme, ScriptParams())
    run_dir = work / f"{script_file.stem}-{source}"
    run_dir.mkdir(parents=True)
    write_struct(run_dir / artifact_path("script"), script)
    candidates = execute(stage_call(run_dir, "broll", BrollParams(source=source)))
    matches = execute(stage_call(run_dir, "match", MatchParams(scorer="text")))
    return script.sentences, candidates, matches, run_dir


def sheet(script_file: Path, out: Path, work: Path) -> Path:
    from PIL import Image, ImageDraw, ImageFont

    from aishorts.stages.render.captions import find_font

    font_path = str(find_font().path)
    font = ImageFont.truetype(font_path, 17)
    bold = ImageFont.truetype(font_path, 24)
    sentences, old_c, old_m, old_dir = matched(script_file, "stills", work)
    _, new_c, new_m, new_dir = matched(script_file, "builtin", work)
    col_w = THUMB[0] + 260
    width = TEXT_W + 2 * col_w + 40
    row_h = THUMB[1] + ROW_GAP
    sheet_img = Image.new("RGB", (width, HEADER + row_h * len(sentences)), (250, 250, 247))
    draw = ImageDraw.Draw(sheet_img)
    draw.text((16, 14), f"{script_file.name} (hand-written script): sentence | old: photo stills | new: illustrated",
              font=bold, fill=(20, 20, 20))
    for row, sentence in enumerate(sentences):
        y = HEADER + row * row_h
        draw.multiline_text((16, y + 8), "\n".join(textwrap.wrap(f"{row + 1}. {sentence}", 38)), font=font,
                            fill=(20, 20, 20), spacing=4)
        for col, (cands, matches, run_dir) in enumerate(((old_c, old_m, old_dir), (new_c, new_m, new_dir))):
            x = TEXT_W + col * col_w
            choice = matches.sentences[row]
            cand = next(c for c in cands.items if c.id == choice.chosen_id)
            score = next(r.score for r in choice.ranked if r.candidate_id == cand.id)
            with Image.open(run_dir / cand.path) as picture:
                thumb = picture.convert("RGB")
                thumb.thumbnail(THUMB)
            sheet_img.paste(thumb, (x, y))
            note = f"{cand.description or cand.title}\nscore {score:.2f}"
            draw.multiline_text((x + THUMB[0] + 10, y + 8), "\n".join(
                line for part in note.split("\n") for line in textwrap.wrap(part, 22)), font=font,
                fill=(60, 60, 60), spacing=3)
    target = out / f"{script_file.stem}.jpg"
    sheet_img.save(target, quality=85, optimize=True)
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scripts", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as work:
        for script_file in args.scripts:
            print(sheet(script_file, args.out, Path(work)))


if __name__ == "__main__":
    main()
