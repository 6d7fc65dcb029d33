"""The work: one module per pipeline stage.

Each module defines `Params` (its parameter Struct from `ipc.params`) and
`run(ctx, params, **inputs) -> Artifact`, a plain function from typed inputs
to a typed output, and ends with `if __name__ == "__main__": stage_main(run, Params)`.
Heavy libraries (torch, transformers, onnxruntime, moviepy) are imported
inside `run` or the helpers it calls, never at module import, so importing
`stages` stays cheap.
"""
