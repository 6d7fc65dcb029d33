"""The work: a folder per pipeline stage, and the shared folders their helpers live in.

Each stage folder (theme, script, tts, broll, match, timeline, render: see `ipc.pipeline.DEFAULT_PIPELINE`)
holds `stage.py`, the stage itself: `Params` (its parameter Struct from `ipc.params`) and
`run(ctx, params, **inputs) -> Artifact`, a plain function from typed inputs to a typed output, ending with
`if __name__ == "__main__": stage_main(run, Params)`; beside it, its backends and helpers. Its contract
(parameters and artifact) is in `ipc/`, its memory ceiling and thresholds in `limits.toml`.

Shared by several stages: `common/` (the stage context and errors, runtime, cache, outputs, ffmpeg helpers,
text helpers, sentence embeddings), `llm/` (the chat backends, local models and prompts of theme and script)
and `grounding/` (sources, wiki lookups, passages and the checks of a sentence against them). `harness.py`
is the process entry every stage runs under. A stage never imports another stage's folder, and no helper
imports the harness. Heavy libraries (torch, transformers, onnxruntime, moviepy) are imported inside `run`
or the helpers it calls, never at module import, so importing `stages` stays cheap.
"""
