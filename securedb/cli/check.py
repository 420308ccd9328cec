"""``securedb check URL``: walk the way to the database, step by step, and say what breaks.

Steps: config, dns, tcp, tls, credentials, login, query. Each reports its milliseconds
and a detail line; the first failure stops the walk and comes with the likely causes and
the fix. ``--json`` prints ``{"ok": bool, "steps": [{"step", "ok", "ms", "detail"}]}``
(a failed step's detail includes the causes and the fix). Exit status 0 exactly when
every step passed; 2 when the configuration itself is invalid; else 1.

An invalid configuration is said as every command says it, on one line of stderr, with
no report; with ``--json`` the report, ending at the failed ``config`` step, comes too.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

from securedb.cli import _errors, _steps
from securedb.cli._options import add_config_flags
from securedb.errors import ConfigError

__all__ = ["Step", "register", "run_steps"]


@dataclasses.dataclass(frozen=True)
class Step:
    step: str
    ok: bool
    ms: float
    detail: str
    causes: tuple[str, ...] = ()
    fix: str = ""

    def as_json(self) -> dict[str, object]:
        detail = self.detail
        if self.causes:
            detail += "; likely causes: " + "; ".join(self.causes)
        if self.fix:
            detail += "; fix: " + self.fix
        return {"step": self.step, "ok": self.ok, "ms": self.ms, "detail": detail}


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "check",
        help="check the way to the database step by step: dns, tcp, tls, login ...",
        description="Run config, dns, tcp, tls, credentials, login and query in order; stop "
        "at the first failure and say the likely causes and the fix. Nothing but the TLS "
        "handshake happens before the server's certificate is verified.",
    )
    add_config_flags(parser)
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    steps, usage = run_steps(args)
    if usage and not args.json:  # `main` says it on stderr, status 2
        raise ConfigError(steps[-1].detail)
    ok = all(step.ok for step in steps)
    if args.json:
        print(json.dumps({"ok": ok, "steps": [step.as_json() for step in steps]}, indent=2))
    else:
        print(_text(steps))
    if usage:
        _errors.report(ConfigError(steps[-1].detail))
        return 2
    return 0 if ok else 1


def run_steps(args: argparse.Namespace) -> tuple[list[Step], bool]:
    """The steps run, up to the first failure; and whether that was a configuration error."""
    state = _steps.State(args)
    steps: list[Step] = []
    try:
        for name, function in _steps.STEPS:
            started = time.perf_counter()
            try:
                detail = function(state)
            except _steps.Failed as failure:
                steps.append(
                    Step(name, False, _ms(started), failure.detail, failure.causes, failure.fix)
                )
                return steps, failure.usage
            steps.append(Step(name, True, _ms(started), detail))
    finally:
        state.close()
    return steps, False


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)


def _text(steps: list[Step]) -> str:
    lines = []
    for step in steps:
        lines.append(
            f"{'ok' if step.ok else 'FAIL':4}  {step.step:11} {step.ms:8.1f} ms  {step.detail}"
        )
        if step.causes:
            lines.append("      likely causes:")
            lines.extend(f"        - {cause}" for cause in step.causes)
        if step.fix:
            lines.append(f"      fix: {step.fix}")
    failed = [step.step for step in steps if not step.ok]
    lines.append(
        f"check failed at step {failed[0]}" if failed else f"all {len(steps)} steps passed"
    )
    return "\n".join(lines)
