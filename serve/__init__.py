"""`aishorts-runner serve`: the local web page and REST API (the `serve` extra). Imported only by that command."""
