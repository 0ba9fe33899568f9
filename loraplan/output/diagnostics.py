"""Render Diagnostics for people and machines: text, json, github (workflow commands), sarif.

Every command prints findings through `render`, so a finding from the YAML loader, the schema,
the compiler or the runtime looks the same everywhere. Imports only the standard library.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import quote

from loraplan.schema.diagnostic import Diagnostic, sort_diagnostics

FORMATS = ("text", "json", "github", "sarif")
SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
JSON_FORMAT_VERSION = 1

_RESET = "\033[0m"
_STYLE = {
    "error": "\033[1;31m",
    "warning": "\033[1;33m",
    "info": "\033[1;36m",
    "bold": "\033[1m",
    "dim": "\033[2m",
    "help": "\033[1;32m",
}
_GITHUB_LEVEL = {"error": "error", "warning": "warning", "info": "notice"}
_SARIF_LEVEL = {"error": "error", "warning": "warning", "info": "note"}


def use_color(stream: TextIO | None = None) -> bool:
    """Colour only on a terminal, and never when NO_COLOR is set (https://no-color.org)."""
    if os.environ.get("NO_COLOR"):
        return False
    stream = stream if stream is not None else sys.stdout
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except (ValueError, OSError):  # a closed stream
        return False


def render(
    diagnostics: Iterable[Diagnostic],
    fmt: str = "text",
    sources: Mapping[str, Any] | None = None,
    *,
    files: Iterable[str] | None = None,
    color: bool | None = None,
    execution_ok: bool = True,
) -> str:
    """All findings in one of FORMATS.

    `sources` maps a file name to its SourceDoc or text (for the source line under each finding);
    `files` lists every file that was checked (for the summary; default: those with findings);
    `color` None means `use_color()` (stdout is a terminal and NO_COLOR is not set);
    `execution_ok` False (an internal error) is SARIF's `executionSuccessful: false`.
    """
    # JSON escapes control characters itself; GitHub's escape_data takes CR and LF.
    controls: bool | re.Pattern[str] = _IN_GITHUB if fmt == "github" else fmt == "text"
    diags = [_printable_diagnostic(d, controls, fmt != "sarif") for d in sort_diagnostics(list(diagnostics))]
    checked = list(dict.fromkeys(files)) if files is not None else list(dict.fromkeys(d.file or "" for d in diags))
    checked = [printable(f, controls) for f in checked]
    sources = {printable(k, controls): v for k, v in (sources or {}).items()}
    if fmt == "text":
        return render_text(diags, sources or {}, checked, use_color() if color is None else color)
    if fmt == "json":
        return render_json(diags, checked)
    if fmt == "github":
        return render_github(diags, checked)
    if fmt == "sarif":
        return render_sarif(diags, execution_ok)
    raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")


# --- untrusted text -----------------------------------------------------------------------------

# C0/C1 controls, DEL, the Unicode line separators, and lone surrogates (the bytes of a file name
# that is not UTF-8, as Python's surrogateescape decodes them).
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
_SURROGATES = re.compile("[\ud800-\udfff]")
_IN_SOURCE_LINE = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")  # tabs stay (carets)
_IN_GITHUB = re.compile("[\x00-\x09\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")  # escape_data: CR, LF


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    if 0xDC80 <= code <= 0xDCFF:  # an undecodable byte of a file name
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str, controls: bool | re.Pattern[str] = True) -> str:
    """`text` safe to print: escapes (`\\x1b`, `\\xff`) for what could drive a terminal or forge a
    line (controls), and for the bytes of a non-UTF-8 file name (always: no encoder takes them)."""
    pattern = controls if isinstance(controls, re.Pattern) else _UNPRINTABLE if controls else _SURROGATES
    return pattern.sub(_escape, text)


def _printable_diagnostic(d: Diagnostic, controls: bool | re.Pattern[str], file: bool = True) -> Diagnostic:
    """SARIF keeps the file name as it is: its URI percent-encodes the name's own bytes."""
    from dataclasses import replace

    return replace(
        d,
        file=printable(d.file, controls) if d.file and file else d.file,
        message=printable(d.message, controls),
        hint=printable(d.hint, controls) if d.hint else d.hint,
    )


# --- counting ---------------------------------------------------------------------------------


NOT_CHECKED_CODES = frozenset({"LP520"})  # "this file's targets were not checked"


def partly_checked(diagnostics: list[Diagnostic]) -> list[str]:
    """Files some check was skipped for (their targets: LP520)."""
    return list(dict.fromkeys(d.file or "" for d in diagnostics if d.code in NOT_CHECKED_CODES))


def counts(diagnostics: list[Diagnostic], checked: list[str]) -> dict[str, int]:
    partly = len(partly_checked(diagnostics))
    return {
        "files": len(checked),
        "files_with_findings": len({d.file for d in diagnostics}),
        "errors": sum(d.severity == "error" for d in diagnostics),
        "warnings": sum(d.severity == "warning" for d in diagnostics),
        "infos": sum(d.severity == "info" for d in diagnostics),
        "files_checked_fully": max(0, len(checked) - partly),
        "files_checked_partly": partly,
    }


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def summary_line(diagnostics: list[Diagnostic], checked: list[str]) -> str:
    c = counts(diagnostics, checked)
    checked_txt = f"{_plural(c['files'], 'file')} checked"
    if c["files_checked_partly"]:
        checked_txt += f": {c['files_checked_fully']} fully, {c['files_checked_partly']} partly: targets not checked"
    if not c["errors"] and not c["warnings"]:
        notes = f", {_plural(c['infos'], 'note')}" if c["infos"] else ""
        return f"All checks passed ({checked_txt}{notes})."
    errors, warnings = _plural(c["errors"], "error"), _plural(c["warnings"], "warning")
    found = f"{errors}, {warnings} and {_plural(c['infos'], 'note')}" if c["infos"] else f"{errors} and {warnings}"
    return f"Found {found} in {_plural(c['files_with_findings'], 'file')} ({checked_txt})."


# --- text -------------------------------------------------------------------------------------


def _line_of(source: Any, line: int) -> str | None:
    if source is None or line < 1:
        return None
    if hasattr(source, "line_text"):
        return source.line_text(line)
    if isinstance(source, str):
        lines = _split_cached(source)
        return lines[line - 1] if line <= len(lines) else None
    return None


_last_split: list = [None, []]


def _split_cached(text: str) -> list[str]:
    """split_lines of the last text asked for: one split per file, not one per finding."""
    if _last_split[0] is not text:
        from loraplan.schema.yaml_source import split_lines  # YAML's line breaks, as in the positions

        _last_split[:] = [text, split_lines(text)]
    return _last_split[1]


def _paint(text: str, style: str, on: bool) -> str:
    return f"{_STYLE[style]}{text}{_RESET}" if on else text


def _caret(line_text: str, d: Diagnostic) -> tuple[str, str]:
    """(padding, marker): `^` under the start, `~` under the rest of a one-line node."""
    col = max(1, d.column or 1)
    prefix = line_text[: col - 1]
    padding = "".join(ch if ch == "\t" else " " for ch in prefix) + " " * max(0, col - 1 - len(prefix))
    width = 1
    if d.end_line == d.line and d.end_column and d.end_column > col:
        width = min(d.end_column, len(line_text) + 1) - col
    return padding, "^" + "~" * max(0, width - 1)


def format_one(d: Diagnostic, source: Any = None, color: bool = False) -> str:
    """One finding: `path:line:col: CODE severity: message`, source line, caret, help."""
    where = f"{d.file or '<config>'}:{d.line or 1}:{d.column or 1}:"
    head = f"{_paint(where, 'bold', color)} {_paint(d.code, 'bold', color)} {_paint(d.severity, d.severity, color)}: "
    head += d.message
    out = [head]
    text = _line_of(source, d.line or 0)
    gutter = len(str(d.line or 1))
    if text is not None and d.line:
        bar = _paint("|", "dim", color)
        padding, marker = _caret(text, d)
        out.append(f" {_paint(str(d.line), 'dim', color)} {bar} {printable(text.rstrip(), _IN_SOURCE_LINE)}")
        out.append(f" {' ' * gutter} {bar} {padding}{_paint(marker, d.severity, color)}")
    if d.hint:
        out.append(f" {' ' * gutter} {_paint('help:', 'help', color)} {d.hint}")
    return "\n".join(out)


def render_text(diagnostics: list[Diagnostic], sources: Mapping[str, Any], checked: list[str], color: bool) -> str:
    blocks = [format_one(d, sources.get(d.file or ""), color) for d in diagnostics]
    summary = summary_line(diagnostics, checked)
    style = "error" if any(d.severity == "error" for d in diagnostics) else (
        "warning" if any(d.severity == "warning" for d in diagnostics) else "help"
    )
    blocks.append(_paint(summary, style, color))
    return "\n\n".join(blocks) + "\n"


# --- json -------------------------------------------------------------------------------------


def to_json_item(d: Diagnostic) -> dict[str, Any]:
    from loraplan.schema.codes import describe

    item: dict[str, Any] = {
        "severity": d.severity,
        "code": d.code,
        "message": d.message,
        "file": d.file or "",
        "line": d.line or 1,
        "column": d.column or 1,
    }
    if d.end_line is not None and d.end_column is not None:
        item["end_line"] = d.end_line
        item["end_column"] = d.end_column
    if d.hint:
        item["hint"] = d.hint
    meaning = describe(d.code)
    if meaning:
        item["code_description"] = meaning
    return item


def render_json(diagnostics: list[Diagnostic], checked: list[str]) -> str:
    payload = {
        "version": JSON_FORMAT_VERSION,
        "tool": "loraplan",
        "diagnostics": [to_json_item(d) for d in diagnostics],
        "summary": counts(diagnostics, checked),
        "files": checked,
    }
    return json.dumps(payload, indent=2, ensure_ascii=False) + "\n"


# --- github workflow commands -------------------------------------------------------------------


def escape_data(text: str) -> str:
    """Escape a workflow command's message (GitHub's escapeData)."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """Escape a workflow command's property value (GitHub's escapeProperty)."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def format_github(d: Diagnostic) -> str:
    props = [f"file={escape_property(d.file or '')}", f"line={d.line or 1}", f"col={d.column or 1}"]
    if d.end_line is not None and d.end_column is not None:
        props += [f"endLine={d.end_line}", f"endColumn={d.end_column}"]
    props.append(f"title={escape_property(d.code)}")
    message = d.message + (f"\nhelp: {d.hint}" if d.hint else "")
    return f"::{_GITHUB_LEVEL.get(d.severity, 'error')} {','.join(props)}::{escape_data(message)}"


def render_github(diagnostics: list[Diagnostic], checked: list[str]) -> str:
    lines = [format_github(d) for d in diagnostics]
    lines.append(summary_line(diagnostics, checked))
    return "\n".join(lines) + "\n"


# --- SARIF 2.1.0 ------------------------------------------------------------------------------


def _uri(file: str) -> str:
    path = Path(file)
    if path.is_absolute():
        return path.as_uri()
    return quote(os.fsencode(path.as_posix()), safe="/")


def render_sarif(diagnostics: list[Diagnostic], execution_ok: bool = True) -> str:
    from loraplan import __version__
    from loraplan.schema.codes import CODES

    rule_ids = sorted(set(CODES) | {d.code for d in diagnostics})
    index = {code: i for i, code in enumerate(rule_ids)}
    rules = [
        {"id": code, "name": code, "shortDescription": {"text": CODES.get(code, code)}} for code in rule_ids
    ]
    results = []
    for d in diagnostics:
        region: dict[str, int] = {"startLine": d.line or 1, "startColumn": d.column or 1}
        if d.end_line is not None and d.end_column is not None:
            region["endLine"] = d.end_line
            region["endColumn"] = d.end_column
        text = d.message + (f"\nhelp: {d.hint}" if d.hint else "")
        results.append(
            {
                "ruleId": d.code,
                "ruleIndex": index[d.code],
                "level": _SARIF_LEVEL.get(d.severity, "error"),
                "message": {"text": text},
                "locations": [
                    {"physicalLocation": {"artifactLocation": {"uri": _uri(d.file or "")}, "region": region}}
                ],
            }
        )
    log = {
        "version": "2.1.0",
        "$schema": SARIF_SCHEMA,
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "loraplan",
                        "version": __version__,
                        "rules": rules,
                    }
                },
                "columnKind": "unicodeCodePoints",
                "invocations": [{"executionSuccessful": execution_ok}],
                "results": results,
                "properties": {"filesCheckedPartly": partly_checked(diagnostics)},
            }
        ],
    }
    return json.dumps(log, indent=2, ensure_ascii=False) + "\n"
