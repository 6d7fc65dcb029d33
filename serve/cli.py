"""`aishorts-runner serve`: read the server's options, refuse an unsafe address, run uvicorn.

Loaded by name from `aishorts.main` only when the `serve` command is given, so
the base CLI never imports FastAPI or uvicorn. Errors here are usage errors:
one line, exit 2.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import re
import socket
import sys
from pathlib import Path

import uvicorn

from aishorts.runner.errors import UsageError
from aishorts.runner.limits import load_limits
from aishorts.runner.options import max_ram_from
from aishorts.runner.pipeline_file import load_pipeline
from aishorts.serve.app import create_app
from aishorts.serve.guard import allowed_hosts
from aishorts.serve.requests import ServerSettings

TOKEN_ENV = "AISHORTS_SERVE_TOKEN"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aishorts-runner serve",
        description="A local web page and REST API (MoneyPrinterTurbo's /api/v1 shape) running shorts through the"
        " same supervisor and memory budget as the command line. Tasks are the run directories: they survive"
        " restarts.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; any other"
                        " needs --token)")
    parser.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 picks a free one)")
    parser.add_argument("--max-ram", metavar="SIZE", help="budget for the server plus every running stage, e.g. 4G")
    parser.add_argument("--jobs", type=int, default=1, metavar="N", help="shorts made side by side (default 1)")
    parser.add_argument("--runs", type=Path, default=Path("runs"), metavar="DIR",
                        help="the run directories, one per task (default runs/)")
    parser.add_argument("--token", help=f"a secret every request must carry; needed off 127.0.0.1. Prefer setting"
                        f" ${TOKEN_ENV}: a command line is visible to every user of the machine (`ps`)")
    parser.add_argument("--cors", action="append", default=[], metavar="ORIGIN",
                        help="another web origin whose pages may call the API, e.g. http://localhost:3000"
                        " (repeatable; by default only the server's own page may)")
    parser.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                        help="another name this server answers to in the Host header (repeatable; by default"
                        " loopback names and the --host address)")
    parser.add_argument("--trust-proxy", action="store_true",
                        help="behind a reverse proxy: build the URLs in answers from its X-Forwarded-Proto, -Host and"
                        " -Prefix headers (never believed without this option)")
    parser.add_argument("--pipeline", type=Path, action="append", default=[], metavar="FILE", help=argparse.SUPPRESS)
    return parser


def token_from(args: argparse.Namespace) -> str | None:
    """$AISHORTS_SERVE_TOKEN, or --token (with a warning: other users of the machine can read it in `ps`)."""
    from_env = os.environ.get(TOKEN_ENV) or None
    if args.token:
        print(f"aishorts-runner serve: warning: --token is visible to every user of this machine (`ps`); set"
              f" {TOKEN_ENV} instead" + (" (it is set, and is used rather than --token)" if from_env else ""),
              file=sys.stderr, flush=True)
    return from_env or args.token or None


def cors_from(args: argparse.Namespace) -> tuple[str, ...]:
    for origin in args.cors:
        if origin == "*" or not re.fullmatch(r"https?://[^/\s]+", origin.rstrip("/")):
            raise UsageError(f"--cors {origin}: give one origin, scheme and host (and port), e.g. http://localhost:3000")
    return tuple(origin.rstrip("/") for origin in args.cors)


def settings_from(args: argparse.Namespace) -> ServerSettings:
    if not _loopback(args.host) and not args.token:
        raise UsageError(f"--host {args.host} is reachable from other machines: give --token SECRET (or set"
                         f" {TOKEN_ENV}) so that only those who know it can start jobs")
    if args.jobs < 1:
        raise UsageError(f"--jobs must be 1 or more, not {args.jobs}")
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port {args.port}: use 0 to 65535")
    pipelines: dict[str, Path] = {}
    for path in args.pipeline:
        load_pipeline(path, load_limits(None))  # refused now, with its own message, rather than per request
        if path.stem in pipelines:
            raise UsageError(f"--pipeline {path}: two pipeline files named {path.stem}")
        pipelines[path.stem] = path.resolve()
    runs = args.runs.resolve()
    if runs.exists() and not runs.is_dir():
        raise UsageError(f"--runs {args.runs} exists and is not a folder")
    return ServerSettings(runs_dir=runs, max_ram=max_ram_from(args.max_ram), jobs=args.jobs, pipelines=pipelines)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    args.token = token_from(args)
    try:
        cors = cors_from(args)
        settings = settings_from(args)
        sock = _listen(args.host, args.port)
    except UsageError as exc:
        print(f"aishorts-runner serve: error: {exc}", file=sys.stderr)
        return exc.exit_code
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    print(f"aishorts-runner serve: http://{shown}:{port}/ (tasks in {settings.runs_dir}; API docs at /docs)",
          file=sys.stderr, flush=True)
    app = create_app(settings, args.token, allowed_hosts(args.host, args.allow_host), cors, args.trust_proxy)
    # X-Forwarded-* are read by serve.app only with --trust-proxy: uvicorn must not believe them on its own
    config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=3, access_log=False,
                            proxy_headers=False)
    uvicorn.Server(config).run(sockets=[sock])
    return 0


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise UsageError(f"cannot listen on {host}:{port} ({exc.strerror}); choose another --port") from None
    sock.listen(128)
    sock.set_inheritable(False)
    return sock
