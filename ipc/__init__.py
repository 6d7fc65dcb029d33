"""The contract between the supervisor (`runner/`) and the stages (`stages/`).

Everything that crosses a process boundary is defined here: the artifact
Structs each stage writes, the call file a stage is started with, the progress
events it sends back, and the helpers that write and read them safely.

This package imports only the standard library and msgspec, so both the light
parent and every stage process can import it.
"""
