"""The shell examples of README.md and docs/*.md run against a running platform: which blocks run,
the one script per document that runs them in order, and the check of the answers they show.

Conventions (docs/testing.md, *The documentation's examples*):

- Every ```sh block is run, in order, in one bash shell per document (`set -euo pipefail`), so a
  variable set in one block is there in the next. A document in docs/ starts from the variables
  the README's shell ended with ($SHOP and $OPS of its client quick start).
- A block is left out by an HTML comment on the line before it (invisible on GitHub) saying why:
  `<!-- not run by the examples test: starts the platform -->`.
- A comment line right after a curl command is the answer the reader should see, and is checked
  against the last answer curl received: a leading status (`# 202 ...`), JSON objects
  (`{"status": "requested", ...}`: every literal key and value shown must be in the answer, `...`
  stands for the rest), lone `"key": value` pairs (somewhere in the answer) and headers
  (`Location: /api/v1/orders/ord_…/`, `…` matching anything). Other comments are prose.
- Any other answer of 400 or more fails too, unless the same request was made again later in its
  block (a polling loop waiting for the platform) and that last answer was not an error.

Run as `python -m tests.support.doc_examples expect <comment> <capture-dir>` (after a comment) or
`... checkpoint <capture-dir>` (at the end of a block), this module is the check the script calls.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SKIP_MARKER = re.compile(r"<!--\s*not run by the examples test\b(.*?)-->")
FENCE_OPEN = re.compile(r"^(?P<indent>\s*)```sh\s*$")
STATUS = re.compile(r"^\s*(?P<status>[1-5]\d\d)\b")
PAIR = re.compile(r'"(?P<key>[^"]+)":\s*(?P<value>"(?:[^"\\]|\\.)*"|-?\d+(?:\.\d+)?|true|false|null)')
HEADER = re.compile(r"(?<![\"\w-])(?P<name>[A-Z][a-z]+(?:-[A-Z][a-z]+)*): (?P<value>\S+)")
ELLIPSIS = re.compile(r"\.\.\.|…")


@dataclass(frozen=True)
class Block:
    document: str  # path relative to the repository
    line: int  # of the opening fence, 1-based
    text: str
    skip_reason: str | None

    @property
    def where(self) -> str:
        return f"{self.document}:{self.line}"


def blocks(path: Path, root: Path) -> list[Block]:
    """The ```sh blocks of a Markdown file, each with the reason it is not run (or None)."""
    lines = path.read_text().splitlines()
    found = []
    i = 0
    while i < len(lines):
        opening = FENCE_OPEN.match(lines[i])
        if not opening:
            i += 1
            continue
        indent = len(opening["indent"])
        body, j = [], i + 1
        while j < len(lines) and lines[j].strip() != "```":
            line = lines[j]
            body.append(line[indent:] if line[:indent].strip() == "" else line.lstrip())
            j += 1
        before = next((lines[k] for k in range(i - 1, -1, -1) if lines[k].strip()), "")
        marker = SKIP_MARKER.search(before)
        reason = (marker[1].strip(" :") or "marked") if marker else None
        found.append(Block(str(path.relative_to(root)), i + 1, "\n".join(body) + "\n", reason))
        i = j + 1
    return found


def expectation(line: str) -> str | None:
    """The answer a whole-line comment shows, or None when the comment is prose."""
    stripped = line.strip()
    if not stripped.startswith("#"):
        return None
    text = stripped.lstrip("#").strip()
    if STATUS.match(text) or PAIR.search(text) or text.startswith("{"):
        return text
    return None


CURL_WRAPPER = r"""
# Every curl keeps its answer (headers, body, arguments) for the checks, and prints the body as curl would.
curl() {
  local n
  n=$(( $(cat "$DOC_EXAMPLES_CAPTURE/count") + 1 ))
  echo "$n" > "$DOC_EXAMPLES_CAPTURE/count"
  printf '%s\0' "$@" > "$DOC_EXAMPLES_CAPTURE/$n.args"
  local rc=0
  command curl -D "$DOC_EXAMPLES_CAPTURE/$n.head" "$@" > "$DOC_EXAMPLES_CAPTURE/$n.body" || rc=$?
  cat "$DOC_EXAMPLES_CAPTURE/$n.body" || true
  return "$rc"
}
__doc_block() { export DOC_EXAMPLES_BLOCK="$1"; printf '\n>>> %s\n' "$1"; __DOC_T0=$EPOCHREALTIME; }
__doc_block_end() {
  local us=$(( ${EPOCHREALTIME/[.,]/} - ${__DOC_T0/[.,]/} ))
  printf '\n<<< %s: %d.%d s\n' "$DOC_EXAMPLES_BLOCK" $((us / 1000000)) $((us / 100000 % 10))
}
__doc_check() { "$DOC_EXAMPLES_PYTHON" -m tests.support.doc_examples "$@" "$DOC_EXAMPLES_CAPTURE"; }
"""


def script(runnable: list[Block], *, rewrite: dict[str, str]) -> str:
    """One bash script running `runnable` in order, each answer comment followed by its check.

    `rewrite` replaces text in the blocks before they run (the address of the web server)."""
    parts = ["set -euo pipefail", CURL_WRAPPER]
    for block in runnable:
        text = block.text
        for old, new in rewrite.items():
            text = text.replace(old, new)
        parts.append(f"__doc_block {shlex.quote(block.where)}")
        for line in text.splitlines():
            parts.append(line)
            shown = expectation(line) if not line[:1].isspace() else None
            if shown is not None:
                parts.append(f"__doc_check expect {shlex.quote(shown)}")
        parts.append("__doc_check checkpoint")
        parts.append("__doc_block_end")
    return "\n".join(parts) + "\n"


# The check, run by the script.


@dataclass(frozen=True)
class Answer:
    number: int
    status: int
    headers: dict[str, str]
    body: str
    request: str  # method and URL: a request made again is a polling loop


def answers(capture: Path) -> list[Answer]:
    count = int((capture / "count").read_text())
    found = []
    for n in range(1, count + 1):
        head = (capture / f"{n}.head").read_text(errors="replace") if (capture / f"{n}.head").exists() else ""
        status = 0
        headers: dict[str, str] = {}
        for line in head.splitlines():  # the last response of the exchange (after a 100 Continue)
            if line.startswith("HTTP/"):
                status, headers = int(line.split()[1]), {}
            elif ":" in line:
                name, value = line.split(":", 1)
                headers[name.strip().lower()] = value.strip()
        body = (capture / f"{n}.body").read_text(errors="replace")
        while body.startswith("HTTP/"):  # curl -i: the headers are in the body too
            end_of_head = re.search(r"\r?\n\r?\n", body)
            body = body[end_of_head.end() :] if end_of_head else ""
        found.append(Answer(n, status, headers, body, _request((capture / f"{n}.args").read_bytes())))
    return found


def _request(raw: bytes) -> str:
    args = raw.decode(errors="replace").split("\0")
    method = "GET"
    url = ""
    for i, arg in enumerate(args):
        if arg in ("-X", "--request") and i + 1 < len(args):
            method = args[i + 1]
        elif arg in ("-d", "--data", "--data-raw") and method == "GET":
            method = "POST"
        elif "://" in arg or re.match(r"^(localhost|127\.0\.0\.1):\d+/", arg):
            url = arg
    return f"{method} {url}"


class Mismatch(AssertionError):
    pass


def check_answer(answer: Answer, shown: str) -> None:
    """Raise Mismatch unless `answer` is what the comment `shown` says."""
    status = STATUS.match(shown)
    if status and answer.status != int(status["status"]):
        raise Mismatch(f"status {answer.status}, the comment shows {status['status']}")
    rest = shown[status.end() :] if status else shown
    objects, rest = _object_literals(rest)
    try:
        body = json.loads(answer.body) if (objects or PAIR.search(rest)) else None
    except ValueError:
        raise Mismatch("the answer is not JSON") from None
    for shown_object in objects:
        missing = _missing(shown_object, body)
        if missing:
            raise Mismatch(f"the answer lacks {missing}")
    for pair in PAIR.finditer(rest):
        key, value = pair["key"], json.loads(pair["value"])
        if not _somewhere(body, key, value):
            raise Mismatch(f"the answer has no {json.dumps(key)}: {json.dumps(value)}")
    for header in HEADER.finditer(rest):
        actual = answer.headers.get(header["name"].lower())
        if actual is None or not _equal(header["value"], actual):
            raise Mismatch(f"header {header['name']} is {actual!r}, the comment shows {header['value']!r}")


def _object_literals(text: str) -> tuple[list[Any], str]:
    """The JSON objects `text` shows (with `...` for the rest) and the text around them."""
    objects, outside, depth, start = [], [], 0, 0
    for i, char in enumerate(text):
        if char == "{":
            if depth == 0:
                outside.append(text[start:i])
                start = i
            depth += 1
        elif char == "}" and depth:
            depth -= 1
            if depth == 0:
                literal = re.sub(r",?\s*(\.\.\.|…)\s*(?=[,}\]])", "", text[start : i + 1])
                literal = re.sub(r"\{\s*,", "{", literal)
                try:
                    objects.append(json.loads(literal))
                except ValueError:
                    raise Mismatch(f"the comment's object is not JSON: {text[start : i + 1]}") from None
                start = i + 1
    outside.append(text[start:])
    return objects, " ".join(outside)


def _missing(shown: Any, actual: Any) -> str | None:
    """What of `shown` is not in `actual` (objects compared key by key, the rest by equality)."""
    if isinstance(shown, dict):
        if not isinstance(actual, dict):
            return json.dumps(shown)
        for key, value in shown.items():
            if key not in actual:
                return json.dumps(key)
            missing = _missing(value, actual[key])
            if missing:
                return f"{json.dumps(key)}: {missing}" if not isinstance(value, dict) else missing
        return None
    if isinstance(shown, list):
        shown_items = [item for item in shown if item != []]
        if not isinstance(actual, list) or any(
            all(_missing(item, candidate) for candidate in actual) for item in shown_items
        ):
            return json.dumps(shown)
        return None
    return None if _equal(shown, actual) else f"{json.dumps(shown)} (it is {json.dumps(actual)})"


def _equal(shown: Any, actual: Any) -> bool:
    """A shown string with `…` in it (`"txn_…"`) stands for any string that fits around it."""
    if isinstance(shown, str) and ELLIPSIS.search(shown):
        pattern = ".*".join(re.escape(part) for part in ELLIPSIS.split(shown))
        return isinstance(actual, str) and re.fullmatch(pattern, actual) is not None
    return bool(shown == actual)


def _somewhere(body: Any, key: str, value: Any) -> bool:
    if isinstance(body, dict):
        if key in body and _equal(value, body[key]):
            return True
        return any(_somewhere(v, key, value) for v in body.values())
    if isinstance(body, list):
        return any(_somewhere(item, key, value) for item in body)
    return False


def unclaimed_errors(found: list[Answer], *, claimed: int | None) -> list[Answer]:
    """Answers of 400 or more not shown by a comment and not retried later with success."""
    errors = []
    for i, answer in enumerate(found):
        if answer.status < 400 or answer.number == claimed:
            continue
        later = [a for a in found[i + 1 :] if a.request == answer.request]
        if later and later[-1].status < 400:
            continue  # a polling loop: it asked again until the platform had done the work
        errors.append(answer)
    return errors


def main(argv: list[str]) -> int:
    command, *rest = argv
    capture = Path(rest[-1])
    shown = rest[0] if command == "expect" else None
    where = os.environ.get("DOC_EXAMPLES_BLOCK", "?")
    checked = int((capture / "checked").read_text()) if (capture / "checked").exists() else 0
    found = [a for a in answers(capture) if a.number > checked]
    problems = []
    claimed = None
    if shown is not None:
        if not found:
            problems.append(f"the comment `# {shown}` shows an answer, but no curl ran before it")
        else:
            claimed = found[-1].number
            try:
                check_answer(found[-1], shown)
            except Mismatch as exc:
                problems.append(
                    f"{exc}\n  comment: # {shown}\n  answer: {found[-1].status} {found[-1].body[:2000]}"
                )
    for error in unclaimed_errors(found, claimed=claimed):
        problems.append(f"{error.request} answered {error.status}: {error.body[:2000]}")
    if found:
        (capture / "checked").write_text(str(found[-1].number))
    for problem in problems:
        print(f"EXAMPLE ANSWER WRONG at {where}: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
