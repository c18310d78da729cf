"""Screenshots of admin pages as an operator sees them: headless Chromium at 1366 px, logged in.

    python docs/screenshots/take.py --base http://127.0.0.1:8000 \
        docs/screenshots/admin-payments-list-after.png=/admin/payments/payment/

Logs in at /admin/login/ (default admin/admin, the development login of `make run`) with the
standard library, hands the session cookie to Chromium and drives it over --remote-debugging-pipe
(NUL-separated JSON on fds 3 and 4), so nothing but /usr/bin/chromium is needed. Not run by
`make test`: the pictures are looked at by people.
"""

from __future__ import annotations

import argparse
import base64
import http.cookiejar
import json
import os
import re
import subprocess
import time
import urllib.parse
import urllib.request
from typing import Any
from urllib.parse import urlsplit

WIDTH, HEIGHT = 1366, 900


def login(base: str, username: str, password: str) -> str:
    """The session id of a fresh admin login."""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    page = opener.open(f"{base}/admin/login/").read().decode()  # noqa: S310 - an address we were given
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    if token is None:
        raise SystemExit("no login form at /admin/login/")
    form = urllib.parse.urlencode(
        {"username": username, "password": password, "csrfmiddlewaretoken": token[1], "next": "/admin/"}
    ).encode()
    opener.open(urllib.request.Request(f"{base}/admin/login/", form, headers={"Referer": base}))  # noqa: S310
    session = next((c.value for c in jar if c.name == "sessionid"), None)
    if session is None:
        raise SystemExit("login refused")
    return session


class Browser:
    """Just enough of the DevTools protocol: one page, commands answered in order."""

    def __init__(self, chromium: str) -> None:
        to_child, self._out = os.pipe()
        self._in, from_child = os.pipe()
        # The pipe's ends become the browser's fds 3 and 4 (what --remote-debugging-pipe uses).
        self.process = subprocess.Popen(  # noqa: S603
            ["/bin/sh", "-c", f'exec "$0" "$@" 3<&{to_child} 4>&{from_child}', chromium]
            + ["--headless", "--no-sandbox", "--remote-debugging-pipe", "--hide-scrollbars"],
            pass_fds=(to_child, from_child),
            stderr=subprocess.DEVNULL,
        )
        os.close(to_child)
        os.close(from_child)
        self._buffer, self._next_id, self.session = b"", 0, ""

    def send(self, method: str, params: dict[str, Any] | None = None, *, page: bool = True) -> Any:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if page and self.session:
            message["sessionId"] = self.session
        os.write(self._out, json.dumps(message).encode() + b"\0")
        while True:
            answer = self._read()
            if answer.get("id") == self._next_id:
                if "error" in answer:
                    raise RuntimeError(f"{method}: {answer['error']}")
                return answer["result"]

    def _read(self) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            self._buffer += os.read(self._in, 1 << 16)
        line, self._buffer = self._buffer.split(b"\0", 1)
        return dict(json.loads(line))

    def open_page(self) -> None:
        target = self.send("Target.createTarget", {"url": "about:blank"}, page=False)
        attached = self.send(
            "Target.attachToTarget", {"targetId": target["targetId"], "flatten": True}, page=False
        )
        self.session = attached["sessionId"]
        self.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": False},
        )

    def screenshot(self, url: str, path: str) -> None:
        self.send("Page.navigate", {"url": url})
        # Admin pages are server-rendered: ready once the document has loaded.
        for _ in range(100):
            state = self.send(
                "Runtime.evaluate", {"expression": "document.readyState", "returnByValue": True}
            )
            if state["result"].get("value") == "complete":
                break
            time.sleep(0.1)
        size = self.send("Page.getLayoutMetrics")["cssContentSize"]
        shot = self.send(
            "Page.captureScreenshot",
            {
                "format": "png",
                "captureBeyondViewport": True,
                "clip": {"x": 0, "y": 0, "width": WIDTH, "height": max(HEIGHT, size["height"]), "scale": 1},
            },
        )
        with open(path, "wb") as out:
            out.write(base64.b64decode(shot["data"]))

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--base", default="http://127.0.0.1:8000")
    parser.add_argument("--user", default="admin")
    parser.add_argument("--password", default="admin")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("shots", nargs="+", metavar="FILE.png=/admin/path/")
    args = parser.parse_args()
    session = login(args.base, args.user, args.password)
    browser = Browser(args.chromium)
    try:
        host = urlsplit(args.base).hostname
        browser.send(
            "Storage.setCookies",
            {"cookies": [{"name": "sessionid", "value": session, "domain": host, "path": "/"}]},
            page=False,
        )
        browser.open_page()
        for shot in args.shots:
            path, _, page = shot.partition("=")
            browser.screenshot(args.base + page, path)
            print(f"{path}  {page}")
    finally:
        browser.close()


if __name__ == "__main__":
    main()
