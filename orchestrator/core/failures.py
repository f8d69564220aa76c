"""What a user reads when a build fails: the step, and the line of its output that says why.
Pure text work, no I/O."""

from __future__ import annotations

import re

from orchestrator.core import defaults
from orchestrator.core.plan import STEP_BY_NAME
from orchestrator.core.status import StepName

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")

_BOILERPLATE = re.compile(
    r"^npm error (code \S+|\d+|a complete log.*|this is probably.*|\d+ note that you can also.*)?\s*$",
    re.IGNORECASE,
)

_NETWORK_FAULT = re.compile(
    r"\b(ETIMEDOUT|EAI_AGAIN|ECONNRESET|ECONNREFUSED|ENETUNREACH|EHOSTUNREACH|ENOTFOUND)\b"
    r"|network timeout|socket hang up",
)


def label(step: str | None) -> str:
    """'typecheck' → 'type checking', as a step reads in a sentence."""
    return STEP_BY_NAME[step].label.lower() if step in STEP_BY_NAME else "build"


def memory_text(limit: str) -> str:
    """'512m' → '512 MB', as Docker's limit reads to a person."""
    found = re.fullmatch(r"(\d+)\s*([kmg]?)b?", limit.strip().lower())
    return f"{found[1]} {found[2].upper()}B" if found else limit


def failure_cause(lines: list[str]) -> str:
    """The line of a step's output that best says what went wrong: the first error line that
    is not boilerplate (tsc's first diagnostic, npm's first real complaint), else the last line."""
    text = [_ANSI.sub("", line).strip() for line in lines]
    text = [line for line in text if line]
    for line in text:
        if re.search(r"\berror\b", line, re.IGNORECASE) and not _BOILERPLATE.match(line):
            return line
    return text[-1] if text else "no output"


def is_network_fault(lines: list[str]) -> bool:
    """True when a failed install says the registry could not be reached."""
    return any(_NETWORK_FAULT.search(line) for line in lines)


def failure_message(
    step: str,
    exit_code: int | None,
    lines: list[str],
    oom_killed: bool = False,
    memory_limit: str = defaults.MEMORY_LIMIT,
) -> str:
    """What a user reads when a step's process ends with a non-zero exit code (as Docker
    reports it), or when the server's process ends at all."""
    name = label(step)
    if oom_killed:
        what = STEP_BY_NAME[step].noun if step in STEP_BY_NAME else "build"
        return f"{name} failed: {what} ran out of memory ({memory_text(memory_limit)} limit)"
    if exit_code == 137:
        return f"{name} failed: the process was killed (exit code 137), most likely out of memory"
    if step == StepName.SERVE:
        return (
            f"{name} failed: the server exited before it answered "
            f"(exit code {exit_code}): {failure_cause(lines)}"
        )
    return f"{name} failed (exit code {exit_code}): {failure_cause(lines)}"


def timeout_message(step: str, seconds: float) -> str:
    return f"timed out while {label(step)} after {seconds:g} s"


def build_timeout_message(step: str | None, seconds: float) -> str:
    return f"the build took longer than its {seconds:g} s limit (while {label(step)})"
