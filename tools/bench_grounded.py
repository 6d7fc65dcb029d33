"""Grounded against ungrounded scripts, side by side: the figures behind `python -m tools.bench --sections grounded`.

    python -m tools.bench_grounded --seeds 3                  # three topics x three seeds x both modes, JSON out
    python -m tools.bench_grounded --topics polvo --language pt-br --modes grounded
    python -m tools.bench_grounded --modes grounded --speculation both   # llama.cpp's n-gram drafts off, then on

Each case runs the script stage in this process (the model loads once) with
the local model: grounded from the topic's source text in tools/bench_sources/
(written for this bench), or ungrounded (no source, wiki off). Every script,
grounded or not, is then checked against the same source text: the share of
its body sentences a passage supports, and the numbers it states that the
source does not. Also: words, whether the script came inside the word budget
from the model's first answer alone (`from_first_answer`), and the stage's
wall time. At the end, per mode on stderr: the rate of scripts from the
first answer across all topics and seeds, words, supported share, numbers
not in the source, and the median stage time (`summary`). With `--speculation both` each case runs
twice in a row, without and with llama.cpp's n-gram speculation (stages/llm/chat.py's SPECULATIVE_NGRAM), and
the summary adds the median of the cases' time ratios, on to off.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from pathlib import Path

import msgspec

from aishorts.ipc.artifacts import Theme
from aishorts.ipc.files import write_struct
from aishorts.ipc.messages import StageCall
from aishorts.ipc.params import LlmParams, ScriptParams
from aishorts.ipc.pipeline import DEFAULT_PIPELINE, artifact_path

SOURCES = Path(__file__).resolve().parent / "bench_sources"
TOPICS = {
    "octopus": ("Why octopuses have three hearts", ["octopus", "hearts", "blood"]),
    "bees": ("How honey bees make honey", ["bees", "honey", "nectar"]),
    "sky": ("Why the sky is blue", ["sky", "blue", "light"]),
    "polvo": ("Por que o polvo tem três corações", ["polvo", "corações", "sangue"]),
}


def call_for(run_dir: Path, params: ScriptParams) -> StageCall:
    spec = next(s for s in DEFAULT_PIPELINE if s.name == "script")
    kinds = {s.name: s.output for s in DEFAULT_PIPELINE}
    return StageCall(
        stage="script", module=spec.module, run_dir=str(run_dir), out_dir=str(run_dir / "script"),
        inputs={name: artifact_path(name) for name in spec.inputs},
        input_kinds={name: kinds[name] for name in spec.inputs}, output_kind=spec.output,
        params=msgspec.Raw(msgspec.json.encode(params)), device="cpu", ceiling_bytes=0,
    )


def one_case(work: Path, topic_key: str, mode: str, seed: int, language: str, model: str,
             speculation: str = "on") -> dict:
    from aishorts.stages.llm import chat

    chat.SPECULATIVE_NGRAM = SPECULATION[speculation]
    case = _scripted(work / speculation, topic_key, mode, seed, language, model)
    return {**case, "speculation": speculation}


SPECULATION = {"on": (3, 6), "off": None}


def _scripted(work: Path, topic_key: str, mode: str, seed: int, language: str, model: str) -> dict:
    from aishorts.stages.grounding.checks import numbers_in, source_numbers, support
    from aishorts.stages.grounding.passages import split_passages
    from aishorts.stages.common.context import StageError
    from aishorts.stages.harness import execute
    from aishorts.stages.script.stage import word_range

    topic, keywords = TOPICS[topic_key]
    source = SOURCES / f"{topic_key}.txt"
    run_dir = work / f"{topic_key}-{mode}-{seed}"
    run_dir.mkdir(parents=True, exist_ok=True)
    write_struct(run_dir / artifact_path("theme"), Theme(topic=topic, angle="", keywords=keywords))
    params = ScriptParams(
        language=language, sources=[str(source)] if mode == "grounded" else [], wiki_url="off",
        llm=LlmParams(backend="local", model=model, seed=seed),
    )
    events = []
    start = time.perf_counter()
    try:
        script = execute(call_for(run_dir, params), events.append)
    except StageError as exc:  # a result too: the stage could not write a script (seen ungrounded)
        return {
            "topic": topic_key, "mode": mode, "seed": seed, "words": 0, "first_attempt": False, "first_answer": "",
            "answer_words": None, "no_fallback": False, "fallbacks": [f"the stage failed: {exc}"],
            "supported_share": 0.0, "numbers_not_in_source": 0, "stage_s": round(time.perf_counter() - start, 1),
            "backend": "", "grounding": "", "sentences": [], "log": [e.message for e in events if e.kind == "log"],
        }
    stage_s = time.perf_counter() - start
    passages = split_passages([source.read_text()])
    known = source_numbers([source.read_text()])
    checks = [support(s, passages, known) for s in script.body]
    first_answer = next((e.message for e in events if e.message.startswith("first answer:")), "")
    return {
        "topic": topic_key, "mode": mode, "seed": seed, "words": script.word_count,
        "first_attempt": from_first_answer(script, mode, word_range(params)),
        "first_answer": first_answer, "answer_words": _answer_words(first_answer),
        "no_fallback": not script.fallbacks, "fallbacks": script.fallbacks,
        "supported_share": round(sum(c.supported for c in checks) / max(1, len(checks)), 3),
        "numbers_not_in_source": sum(1 for s in script.sentences for _, v in numbers_in(s) if v not in known),
        "stage_s": round(stage_s, 1), "backend": script.backend, "grounding": script.grounding,
        "sentences": script.sentences,
        "log": [e.message for e in events if e.kind == "log"],
    }


def _answer_words(first_answer: str) -> int | None:
    """The words of the model's first answer, from the stage's "first answer: N words ..." log line."""
    match = re.match(r"first answer: (\d+) words", first_answer)
    return int(match.group(1)) if match else None


OTHER_WORDS = ("rewritten", "taken from the source", "shorter script", "no usable script",
               "facts past the word budget")
"""Fallbacks that mean the script's words did not all come, inside the budget, from the model's first answer: a
second call rewrote some, the source's own filled in, or the ladder cut or accepted a short one."""


def from_first_answer(script, mode: str, limits: tuple[int, int]) -> bool:
    """Inside the word budget from the first answer alone: one answer asked for, no sentence rewritten by a second
    call or added from elsewhere, no rung of the ladder that shortens or pads (grounded scripts may leave out the answer's spare sentences:
    the answer holds more than the budget by design). Ungrounded: one answer and no fallback at all."""
    low, high = limits
    if mode != "grounded":
        return script.attempts == 1 and not script.fallbacks
    mended = any(word in fallback for fallback in script.fallbacks for word in OTHER_WORDS)
    return script.attempts == 1 and low <= script.word_count <= high and not mended


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--topics", default="octopus,bees,sky")
    parser.add_argument("--modes", default="grounded,ungrounded")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=1)
    parser.add_argument("--language", default="en-us")
    parser.add_argument("--model", default="", help="local model name (default: the strongest installed)")
    parser.add_argument("--speculation", choices=("on", "off", "both"), default="on",
                        help="llama.cpp's n-gram speculation; both: each case without it, then with it")
    parser.add_argument("--out", type=Path, help="write the cases as JSON here (default: stdout)")
    parser.add_argument("--table", type=Path, help="print the cases an earlier run wrote (its --out) as Markdown")
    args = parser.parse_args(argv)
    if args.table:
        print(case_table(json.loads(args.table.read_text())))
        return 0
    cases = []
    with tempfile.TemporaryDirectory(prefix="aishorts-grounded-") as tmp:
        for topic in args.topics.split(","):
            for mode in args.modes.split(","):
                for seed in range(args.first_seed, args.first_seed + args.seeds):
                    for speculation in ("off", "on") if args.speculation == "both" else (args.speculation,):
                        case = one_case(Path(tmp), topic, mode, seed, args.language, args.model, speculation)
                        print(json.dumps({k: v for k, v in case.items() if k not in ("sentences", "log")}),
                              file=sys.stderr, flush=True)
                        cases.append(case)
                        if args.out:  # as each case ends: a crash or a stop keeps what was measured
                            args.out.write_text(json.dumps(cases, indent=1, ensure_ascii=False))
    for mode, figures in summary(cases).items():
        print(f"{mode}: {json.dumps(figures)}", file=sys.stderr)
    if args.speculation == "both":
        print(f"speculation on/off, stage time: {json.dumps(speculation_ratios(cases))}", file=sys.stderr)
    text = json.dumps(cases, indent=1, ensure_ascii=False)
    if args.out:
        args.out.write_text(text)
    else:
        print(text)
    return 0


def summary(cases: list[dict]) -> dict[str, dict]:
    """Per mode (and speculation, where cases differ in it): medians and rates over its cases."""
    import statistics

    out = {}
    both = len({c.get("speculation", "on") for c in cases}) > 1
    for label in dict.fromkeys(_label(c, both) for c in cases):
        mine = [c for c in cases if _label(c, both) == label]
        out[label] = {
            "cases": len(mine),
            "words": f"{min(c['words'] for c in mine)}-{max(c['words'] for c in mine)}"
                     f" (median {statistics.median(c['words'] for c in mine):g})",
            "first_attempt": f"{sum(c['first_attempt'] for c in mine)}/{len(mine)}",
            "answer_words": _span([c["answer_words"] for c in mine if c.get("answer_words") is not None]),
            "supported": f"{statistics.mean(c['supported_share'] for c in mine):.0%}",
            "numbers_not_in_source": sum(c["numbers_not_in_source"] for c in mine),
            "stage_s": f"{statistics.median(c['stage_s'] for c in mine):.1f}",
        }
    return out


def _label(case: dict, both: bool) -> str:
    return f"{case['mode']}, speculation {case.get('speculation', 'on')}" if both else case["mode"]


def speculation_ratios(cases: list[dict]) -> dict[str, str]:
    """Per mode: the median, lowest and highest of each case's stage time with speculation over without it (the two
    ran one after the other, so both met the same load), and in how many cases the script came out the same."""
    import statistics

    out = {}
    for mode in dict.fromkeys(c["mode"] for c in cases):
        off = {(c["topic"], c["seed"]): c for c in cases if c["mode"] == mode and c["speculation"] == "off"}
        pairs = [(c, off[(c["topic"], c["seed"])]) for c in cases
                 if c["mode"] == mode and c["speculation"] == "on" and (c["topic"], c["seed"]) in off]
        ratios = [on["stage_s"] / without["stage_s"] for on, without in pairs if without["stage_s"]]
        if ratios:
            same = sum(on["sentences"] == without["sentences"] for on, without in pairs)
            out[mode] = (f"median {statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f},"
                         f" {len(ratios)} cases); the same script in {same} of {len(pairs)}")
    return out


def case_table(cases: list[dict]) -> str:
    """One Markdown row per case: what BENCHMARKS.md shows of each script."""
    lines = ["| topic | mode | seed | words | first answer's words | from the first answer alone | fallbacks"
             " | supported | numbers not in source | script stage |", "| --- " * 10 + "|"]
    for c in cases:
        lines.append(
            f"| {c['topic']} | {c['mode']} | {c['seed']} | {c['words']} | {c.get('answer_words') or 'n/a'}"
            f" | {'yes' if c['first_attempt'] else 'no'} | {'; '.join(c['fallbacks']) or 'none'}"
            f" | {c['supported_share']:.0%} | {c['numbers_not_in_source']} | {c['stage_s']:.0f} s |")
    return "\n".join(lines)


def _span(values: list[int]) -> str:
    return f"{min(values)}-{max(values)}" if values else "n/a"


if __name__ == "__main__":
    sys.exit(main())
