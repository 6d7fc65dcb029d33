"""Narration speed and memory per language: the same three-sentence script in each language Kokoro speaks.

For each language: theme, script and tts run through the runner (`--only`, each stage in its own process
under its ceiling) from a given script; prints one Markdown row a language with the voice, the tts stage's
wall time and peak RSS (the runner's report), the narration's length, its real-time factor, and its rate
(words a minute where words are spaced, characters a second where they are not); and, for Japanese and
Mandarin, what espeak-ng would have given Kokoro against misaki (stages/tts/g2p.py).

With `--scripts N`: the local model (Qwen2.5-Coder-1.5B-Instruct through llama.cpp) writes a script on a topic
given in each language, N seeds each, through the script stage's own whole-script path (prompt, retries,
mending) and its checks (length, hook, call to action, and the language check, stages/script/language_check.py); a
language not yet enabled for local scripts is measured too (the model is opened directly, not through the
catalogue's gate): that is how a language earns its place in `ipc/languages.py`'s `local_script`. Prints one
row a language: scripts that passed, those that passed as first written (no mending rung), length, attempts
and seconds a script. Developer tool, not the product:
`python -m tools.bench_languages [--out DIR] [--write docs/languages.md] [--scripts N [--seed S]] [LANG ...]`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from aishorts.ipc.languages import LANGUAGES

ENGLISH = ("Octopuses have three hearts and blue blood. Two hearts pump blood through the gills, while the third"
           " serves the rest of the body. Follow for more strange facts about the ocean.")
SCRIPTS = {
    "en-us": ENGLISH,
    "en-gb": ENGLISH,
    "es": "Los pulpos tienen tres corazones y sangre azul. Dos corazones bombean sangre a las branquias, y el"
          " tercero al resto del cuerpo. Síguenos para más datos curiosos del océano.",
    "fr-fr": "Les pieuvres ont trois cœurs et le sang bleu. Deux cœurs envoient le sang vers les branchies, le"
             " troisième irrigue le reste du corps. Abonne-toi pour d'autres faits étonnants sur l'océan.",
    "hi": "ऑक्टोपस के तीन दिल होते हैं और उनका खून नीला होता है। दो दिल गलफड़ों तक खून पहुँचाते हैं, और तीसरा"
          " पूरे शरीर तक। समुद्र के और अनोखे तथ्यों के लिए फ़ॉलो करें।",
    "it": "I polpi hanno tre cuori e il sangue blu. Due cuori pompano il sangue verso le branchie, il terzo nel"
          " resto del corpo. Seguici per altre curiosità sull'oceano.",
    "ja": "タコには心臓が三つあり、血は青い色をしています。二つの心臓はえらに血を送り、三つ目は体全体に送ります。"
          "海の不思議な話をもっと知りたい方はフォローしてください。",
    "pt-br": "Os polvos têm três corações e sangue azul. Dois corações bombeiam sangue para as brânquias, e o"
             " terceiro para o resto do corpo. Siga para mais curiosidades sobre o oceano.",
    "zh": "章鱼有三颗心脏，血液是蓝色的。两颗心脏把血液送到鳃，第三颗供应全身。关注我们，了解更多海洋趣闻。",
}


def bench(code: str, work: Path) -> dict:
    script = work / f"{code}.txt"
    script.write_text(SCRIPTS[code], encoding="utf-8")
    run_dir = work / code
    for stage in ("theme", "script", "tts"):
        command = [sys.executable, "-m", "aishorts.runner.cli", "--script", str(script), "--language", code,
                   "--run-dir", str(run_dir), "--only", stage]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise SystemExit(f"{code} {stage} failed: {done.stderr.strip().splitlines()[-1:]}")
    report = json.loads((run_dir / "report.json").read_text())
    tts = next(stage for stage in report["stages"] if stage["name"] == "tts")
    narration = json.loads((run_dir / "tts" / "artifact.json").read_text())
    text = SCRIPTS[code]
    speech_s = sum(s["end"] - s["start"] for s in narration["sentences"])
    lang = LANGUAGES[code]
    rate = (f"{len(text.split()) * 60 / speech_s:.0f} words/min" if lang.spaced
            else f"{sum(c.isalnum() for c in text) / speech_s:.1f} chars/s")
    return {"code": code, "voice": narration["voice"], "wall_s": tts["wall_s"], "peak": tts["peak_rss_bytes"],
            "audio_s": narration["duration_s"], "rate": rate}


TOPICS = {
    "en-us": "why octopuses have three hearts",
    "en-gb": "why octopuses have three hearts",
    "es": "por qué los pulpos tienen tres corazones",
    "fr-fr": "pourquoi les pieuvres ont trois cœurs",
    "hi": "ऑक्टोपस के तीन दिल क्यों होते हैं",
    "it": "perché i polpi hanno tre cuori",
    "ja": "タコに心臓が三つある理由",
    "pt-br": "por que os polvos têm três corações",
    "zh": "章鱼为什么有三颗心脏",
}
"""A topic as a speaker of each language would type it."""


def local_script(code: str, seed: int, work: Path, attempts: int = 3) -> dict:
    """One script by the local model in `code`, through the script stage's whole-script path and its checks."""
    from aishorts.ipc.messages import StageCall
    from aishorts.ipc.params import LlmParams, ScriptParams
    from aishorts.stages.common.context import StageContext, StageError
    from aishorts.stages.common.runtime import thread_share
    from aishorts.stages.llm import local_models
    from aishorts.stages.llm.chat import LocalGguf, _loaded
    from aishorts.stages.script import stage
    from aishorts.stages.script.drafts import problems
    from aishorts.stages.script.language_check import language_problem
    from aishorts.stages.theme.stage import theme_from_topic

    model = local_models.QWEN_CODER_1_5B
    backend = LocalGguf(model, _loaded(local_models.model_file(model), thread_share()))
    params = ScriptParams(language=code, llm=LlmParams(backend="local", seed=seed), wiki_url="off",
                          max_attempts=attempts)
    out = work / f"script-{code}-{seed}"
    out.mkdir(parents=True, exist_ok=True)
    call = StageCall(stage="script", module="aishorts.stages.script.stage", run_dir=str(work), out_dir=str(out), inputs={},
                     input_kinds={}, output_kind="script")
    log: list[str] = []
    def keep(event) -> None:
        if event.kind == "log":
            log.append(event.message)
            print(f"    {code} seed {seed}: {event.message[:200]}", file=sys.stderr, flush=True)

    ctx = StageContext(call, keep)
    low, high = stage.word_range(params)
    started = time.perf_counter()
    try:
        draft, attempts = stage.write_whole(backend, theme_from_topic(TOPICS[code]), params,
                                            stage.prompt_language(code), (low, high), ctx)
    except StageError as exc:
        return {"code": code, "seed": seed, "passed": False, "clean": False, "why": str(exc)[:160],
                "seconds": time.perf_counter() - started, "attempts": params.max_attempts, "size": "-", "text": ""}
    seconds = time.perf_counter() - started
    wrong = language_problem(draft.sentences, code)
    faults = problems(draft, low, high)
    text = "\n".join(draft.sentences)
    (out / "script.txt").write_text(text + "\n\n" + "\n".join(log), encoding="utf-8")
    # passed: the stage would narrate it (its ladder's last rung takes a script shorter than asked, never one in
    # another language); as first written: no rung was needed
    return {"code": code, "seed": seed, "passed": not wrong, "clean": not (wrong or faults or draft.fallbacks),
            "why": wrong or "; ".join(faults + draft.fallbacks), "seconds": seconds,
            "attempts": attempts, "size": stage.script_size(draft, code), "text": text}


def script_rows(codes: list[str], seeds: list[int], work: Path, attempts: int) -> list[str]:
    import resource

    rows = ["| language | passed | as first written | length (each seed) | attempts | s a script | why not |",
            "| --- | --- | --- | --- | --- | --- | --- |"]
    print("\n" + "\n".join(rows), flush=True)
    for code in codes:
        runs = [local_script(code, seed, work, attempts) for seed in seeds]
        for run in runs:
            print(f"  {code} seed {run['seed']}: {run['size']}, {run['seconds']:.0f} s, {run['why'] or 'ok'}",
                  file=sys.stderr, flush=True)
        whys = "; ".join(sorted({r["why"][:80] for r in runs if r["why"]})) or "-"
        rows.append(f"| {code} | {sum(r['passed'] for r in runs)}/{len(runs)} | {sum(r['clean'] for r in runs)}"
                    f"/{len(runs)} | {', '.join(r['size'] for r in runs)} | {', '.join(str(r['attempts']) for r in runs)}"
                    f" | {sum(r['seconds'] for r in runs) / len(runs):.0f} | {whys} |")
        print(rows[-1], flush=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rows.append("")
    rows.append(f"Peak RSS of the measuring process (model loaded once): {peak:.0f} MiB.")
    print(rows[-1], flush=True)
    return rows


def g2p_rows() -> list[str]:
    """For each language, what its phonemiser gives Kokoro for the script: characters, how many Kokoro's vocabulary
    lacks (dropped before synthesis); for ja and zh also what espeak-ng would have given instead."""
    from kokoro_onnx.tokenizer import Tokenizer
    from phonemizer.backend import EspeakBackend

    from aishorts.stages.tts.g2p import phonemiser
    from aishorts.stages.tts.kokoro_timing import vocab_file

    Tokenizer()  # points phonemizer at espeakng-loader's library
    vocab = json.loads(vocab_file().read_text())["vocab"]
    rows = ["| language | phonemiser | phoneme characters | unknown to Kokoro | kanji read as \"Chinese letter\" | start |",
            "| --- | --- | --- | --- | --- | --- |"]
    for code, text in SCRIPTS.items():
        tried = [(f"{LANGUAGES[code].phonemiser} (used)", phonemiser(code).phonemes([text])[0])]
        if code in ("ja", "zh"):
            espeak_code = "cmn" if code == "zh" else "ja"
            espeak = EspeakBackend(espeak_code, preserve_punctuation=True, with_stress=True)
            tried.append((f"espeak:{espeak_code} (not used)", espeak.phonemize([text])[0]))
        for name, phonemes in tried:
            unknown = sorted({char for char in phonemes if char not in vocab})
            count = sum(char not in vocab for char in phonemes)
            start = " ".join(phonemes.split()[:4]).replace("|", "/")
            said = f"{count} (`{''.join(unknown)[:12]}`)" if count else "0"
            rows.append(f"| {code} | {name} | {len(phonemes)} | {said} | {phonemes.count('tʃˈaɪniːz')} | `{start}` |")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.bench_languages", description=__doc__.splitlines()[0])
    parser.add_argument("languages", nargs="*", default=list(SCRIPTS))
    parser.add_argument("--out", type=Path, help="keep the runs here (default: a temporary folder)")
    parser.add_argument("--write", type=Path, help="also write the tables as Markdown to this file")
    parser.add_argument("--scripts", type=int, default=0, metavar="N",
                        help="measure the local model's scripts instead, N seeds a language")
    parser.add_argument("--seed", type=int, default=1, help="the first seed of --scripts (default 1)")
    parser.add_argument("--attempts", type=int, default=3,
                        help="whole answers asked for a script before mending (default 3, as the stage does)")
    args = parser.parse_args(argv)
    if args.scripts:
        codes = [code for code in args.languages if code != "en-gb"] if args.languages == list(SCRIPTS) else args.languages
        with tempfile.TemporaryDirectory(prefix="bench-scripts-") as scratch:
            work = args.out or Path(scratch)
            rows = script_rows(codes, list(range(args.seed, args.seed + args.scripts)), work, args.attempts)
        if args.write:
            args.write.write_text("\n".join([
                f"## local scripts (`python -m tools.bench_languages --scripts {args.scripts} --attempts {args.attempts}`)", "",
                f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: Qwen2.5-Coder-1.5B-Instruct (Q4_K_M,"
                " llama.cpp) writes a script on a topic typed in each language, through the script stage's whole-script"
                " path and checks.", "", *rows, ""]))
        return 0
    lines = ["| language | voice | tts wall | tts peak RSS | narration | real-time factor | rate |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    print("\n".join(lines), flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-languages-") as scratch:
        work = args.out or Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        for code in args.languages:
            row = bench(code, work)
            lines.append(f"| {code} | {row['voice']} | {row['wall_s']:.1f} s | {row['peak'] / 2**20:.0f} MiB"
                         f" | {row['audio_s']:.1f} s | {row['wall_s'] / row['audio_s']:.2f} | {row['rate']} |")
            print(lines[-1], flush=True)
    g2p = g2p_rows()
    print("\n" + "\n".join(g2p))
    if args.write:
        args.write.write_text("\n".join([
            "## languages (`python -m tools.bench_languages --write docs/languages.md`)", "",
            f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: the same three-sentence script in each"
            " language (tools/bench_languages.py), theme, script and tts each run by the runner; one run each, on a"
            " machine shared with other work, so wall times are rough; peaks are the tts stage's whole process.", "",
            *lines, "",
            "What each language's phonemiser feeds Kokoro for the same script (characters outside Kokoro's vocabulary"
            " are dropped before synthesis), and what espeak-ng would have fed it for Japanese and Mandarin: it reads"
            " each kanji as the English words \"Chinese letter\" and writes Mandarin tones as digits Kokoro never saw;"
            " misaki, Kokoro's own G2P, writes only phonemes in Kokoro's vocabulary.", "",
            *g2p, "",
        ]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
