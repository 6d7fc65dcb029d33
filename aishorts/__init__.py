"""The product's entry, above the supervisor: `aishorts-runner` (`python -m aishorts`).

`runner/` is the supervisor and knows none of its front ends; this package hands it the ones that live
above it (the web page and API in `serve/`, batches across machines in `cluster/`, the single-process
baseline that imports stage code) and starts the command line (`aishorts.main`).
"""
