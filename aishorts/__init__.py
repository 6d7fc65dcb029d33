"""The product's entry, above the supervisor: `aishorts-runner` (`python -m aishorts`).

`runner/` is the supervisor and knows none of its front ends; this package hands it the ones that live
above it (the web page and API in `serve/`, batches across machines in `cluster/`, the single-process
baseline that imports stage code) and starts the command line (`aishorts.main`).
"""

import os as _os

# The repository's folders as aishorts.runner, ... (only in a checkout: the wheel installs them inside this package)
_CHECKOUT = _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))
if (not _os.path.isdir(_os.path.join(_os.path.dirname(_os.path.abspath(__file__)), "runner"))
        and _os.path.isfile(_os.path.join(_CHECKOUT, "pyproject.toml"))
        and _os.path.isfile(_os.path.join(_CHECKOUT, "runner", "__init__.py"))):
    __path__.append(_CHECKOUT)
del _os, _CHECKOUT
