"""The work: one module per pipeline stage, and the helper modules they share.

Each stage module (theme, script, tts, broll, match, timeline, render: see
`ipc.pipeline.DEFAULT_PIPELINE`) defines `Params` (its parameter Struct from
`ipc.params`) and `run(ctx, params, **inputs) -> Artifact`, a plain function
from typed inputs to a typed output, and ends with
`if __name__ == "__main__": stage_main(run, Params)`. A stage module never
imports another one: what two stages share lives in a helper module (harness,
runtime, writing, prompts, llm, media, render_plan...). Heavy libraries
(torch, transformers, onnxruntime, moviepy) are imported inside `run` or the
helpers it calls, never at module import, so importing `stages` stays cheap.
"""
