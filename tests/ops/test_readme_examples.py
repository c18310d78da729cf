"""The first hour: every shell example of the README and of docs/, pasted as written against a running
platform (web, bridge, relay, worker, beat, Kafka), gives the answers it shows.

How blocks are chosen and answers checked: tests/support/doc_examples.py and docs/testing.md.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge.embedded import free_port
from tests.conftest import Stack
from tests.ops.conftest import WebProcess, serving
from tests.support.doc_examples import Block, blocks, script
from tests.support.processes import ROOT, VENV_BIN, manage

# Documents whose examples are not run, and why (they cannot carry the marker).
NOT_RUN = {
    # Generated in part (manage.py events_doc); its block regenerates the committed schemas.
    "docs/events.md": "its example writes schemas/events/ in the checkout",
}
DOCUMENT_TIMEOUT_S = 120


def documents() -> list[Path]:
    """The README first: the documents in docs/ continue from its shell ($SHOP, $OPS)."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


@pytest.fixture(scope="module")
def development_web(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebProcess]:
    """The web process as `make run` starts it (runserver, DEBUG on), on a free port."""
    port = free_port()
    command = manage("runserver", f"127.0.0.1:{port}", "--noreload")
    yield from serving(port, command, stack.env, tmp_path_factory.mktemp("web-logs"))


@pytest.mark.django_db(transaction=True)  # ends with the wipe: shop, ops, pay_1001 are the README's
def test_examples_run_as_written_and_answer_what_they_show(
    live: Stack, development_web: WebProcess, tmp_path: Path
) -> None:
    runnable = {
        path: [b for b in blocks(path, ROOT) if b.skip_reason is None]
        for path in documents()
        if str(path.relative_to(ROOT)) not in NOT_RUN
    }
    assert runnable[ROOT / "README.md"], "the README has no example the test runs"
    env = {
        **live.env,
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}",  # `python` is the virtualenv's
        "DOC_EXAMPLES_PYTHON": str(VENV_BIN / "python"),
    }
    # The examples name the address `make run` serves; port 8000 may be taken on this machine
    # (a developer's `make run`), so they are sent to this test's web server instead.
    port = development_web.url.rsplit(":", 1)[1]
    rewrite = {"127.0.0.1:8000": f"127.0.0.1:{port}", "localhost:8000": f"127.0.0.1:{port}"}
    state = tmp_path / "readme-variables.sh"
    for path, chosen in runnable.items():
        if not chosen:
            continue
        is_readme = path == ROOT / "README.md"
        capture = tmp_path / path.name
        capture.mkdir()
        (capture / "count").write_text("0")
        text = script(chosen, rewrite=rewrite)
        if is_readme:  # what the docs' shells start from: the README's variables, as a reader has them
            text = f"set -a\n{text}export -p > {shlex.quote(str(state))}\n"
        else:
            quoted = shlex.quote(str(capture))
            text = f"source {shlex.quote(str(state))}\nexport DOC_EXAMPLES_CAPTURE={quoted}\n{text}"
        log = run_document(path, chosen, text, {**env, "DOC_EXAMPLES_CAPTURE": str(capture)})
        if is_readme:
            # Each request the demo sent has its outcome printed (an exit status says only "some").
            sent = re.findall(r"^sent (\S+): ", log, re.M)
            silent = [i for i in sent if not re.search(rf"^\S+ +{re.escape(i)} ", log, re.M)]
            assert not silent, f"send_demo_events --wait printed no outcome for {silent}:\n{log}"


def run_document(path: Path, chosen: list[Block], text: str, env: dict[str, str]) -> str:
    """Run one document's script; on failure name the block that failed and show its output."""
    shell = subprocess.Popen(  # noqa: S603 - our own documents
        ["bash", "-c", text],  # noqa: S607
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # a polling loop that never ends is killed with its children
    )
    try:
        output, _ = shell.communicate(timeout=DOCUMENT_TIMEOUT_S)
        failure = f"exited {shell.returncode}" if shell.returncode else ""
    except subprocess.TimeoutExpired:
        os.killpg(shell.pid, signal.SIGKILL)
        output, _ = shell.communicate()
        failure = f"still running after {DOCUMENT_TIMEOUT_S} s"
    log = output.decode(errors="replace")
    if not failure:
        print(log)  # with -s: what a reader would have seen
        return log
    started = [line[4:] for line in log.splitlines() if line.startswith(">>> ")]
    block = next((b for b in chosen if started and b.where == started[-1]), None)
    shown = block.text if block else "(before the first block)"
    wrong = [line for line in log.splitlines() if line.startswith("EXAMPLE ANSWER WRONG")]
    where = started[-1] if started else path.name
    message = [f"the example at {where} {failure}:", *wrong, shown, "--- its output (last 60 lines)"]
    pytest.fail("\n".join([*message, *log.splitlines()[-60:]]), pytrace=False)
