"""`python -m aishorts` is `aishorts-runner`."""

from aishorts.main import entry

entry()
