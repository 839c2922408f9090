"""Drive Debian's headless Chromium over the DevTools protocol through a pipe (no driver, no
download, standard library only): open a page, wait, screenshot, drag the mouse.

``--remote-debugging-pipe`` makes Chromium read protocol messages from fd 3 and write them to
fd 4, each a JSON object ended by a NUL byte.
"""

from __future__ import annotations

import base64
import fcntl
import io
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    # WebGL on the CPU (SwiftShader): --disable-gpu alone leaves no WebGL context at all.
    "--use-angle=swiftshader",
    "--enable-unsafe-swiftshader",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--no-default-browser-check",
    "--mute-audio",
    "--remote-debugging-pipe",
]


class Chromium:
    def __init__(self, width: int = 1000, height: int = 800):
        if not Path(CHROMIUM).is_file():
            raise FileNotFoundError(f"{CHROMIUM} not found: apt-get install -y chromium (.ci/run installs it)")
        self.profile = tempfile.mkdtemp(prefix="c123-chromium-")
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()
        args = [CHROMIUM, *FLAGS, f"--user-data-dir={self.profile}", f"--window-size={width},{height}", "about:blank"]
        # The shell puts the two pipe ends on fds 3 and 4, where Chromium expects them.
        # Moved above 9 first, so that no end already sits on 3 or 4 (bash handles any fd number).
        r, w = (fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (to_browser_r, from_browser_w))
        os.close(to_browser_r)
        os.close(from_browser_w)
        to_browser_r, from_browser_w = r, w
        self.proc = subprocess.Popen(
            ["bash", "-c", f'exec "$0" "$@" 3<&{r} 4>&{w} {r}<&- {w}>&-', *args],
            pass_fds=(r, w),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._next_id, self._buffer, self.session = 0, b"", None
        target = self.call("Target.createTarget", url="about:blank", session=False)["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True, session=False)["sessionId"]
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)
        self.call("Page.enable")

    # ------------------------------------------------------------ protocol
    def call(self, method: str, session: bool = True, timeout: float = 60.0, **params) -> dict:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params}
        if session and self.session:
            message["sessionId"] = self.session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def _read(self, deadline: float) -> dict:
        import select

        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._from_browser], [], [], left)[0]:
                raise TimeoutError("no answer from Chromium")
            chunk = os.read(self._from_browser, 1 << 20)
            if not chunk:
                raise RuntimeError("Chromium closed its pipe")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(raw)

    # ------------------------------------------------------------ page
    def evaluate(self, expression: str, timeout: float = 60.0):
        result = self.call(
            "Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True, timeout=timeout
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"page script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def open(self, path: Path) -> None:
        self.call("Page.navigate", url=Path(path).resolve().as_uri())
        deadline = time.monotonic() + 60
        while self.evaluate("document.readyState") != "complete":
            if time.monotonic() > deadline:
                raise TimeoutError(f"{path} did not finish loading")
            time.sleep(0.1)

    def screenshot(self, clip: dict | None = None) -> np.ndarray:
        params = {"format": "png"}
        if clip:
            params["clip"] = {**clip, "scale": 1}
        data = base64.b64decode(self.call("Page.captureScreenshot", **params)["data"])
        return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))

    def drag(self, x0: float, y0: float, dx: float, dy: float, steps: int = 12) -> None:
        """Press the left button at (x0, y0), move by (dx, dy) in ``steps``, release."""
        mouse = {"button": "left", "pointerType": "mouse"}
        self.call("Input.dispatchMouseEvent", type="mouseMoved", x=x0, y=y0, **{"pointerType": "mouse"})
        self.call("Input.dispatchMouseEvent", type="mousePressed", x=x0, y=y0, clickCount=1, buttons=1, **mouse)
        for i in range(1, steps + 1):
            x, y = x0 + dx * i / steps, y0 + dy * i / steps
            self.call("Input.dispatchMouseEvent", type="mouseMoved", x=x, y=y, buttons=1, **mouse)
            time.sleep(0.02)
        self.call("Input.dispatchMouseEvent", type="mouseReleased", x=x0 + dx, y=y0 + dy, clickCount=1, **mouse)

    def close(self) -> None:
        try:
            self.call("Browser.close", session=False, timeout=10)
        except Exception:  # noqa: BLE001 - it may already be gone
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        os.close(self._to_browser)
        os.close(self._from_browser)
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> "Chromium":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# What the viewer tests ask the page (model-viewer's own `loaded` flag and `load`/`error` events).
WAIT_FOR_MODEL = """new Promise(resolve => {
  const mv = document.querySelector('model-viewer');
  if (!mv) return resolve('no model-viewer element');
  if (mv.loaded) return resolve('loaded');
  mv.addEventListener('load', () => resolve('loaded'));
  mv.addEventListener('error', e => resolve('error: ' + JSON.stringify(e.detail)));
  setTimeout(() => resolve('timeout'), %d);
})"""
VIEWER_BOX = """(() => { const r = document.querySelector('model-viewer').getBoundingClientRect();
  return {x: r.x, y: r.y, width: r.width, height: r.height}; })()"""
CAMERA_ORBIT = "document.querySelector('model-viewer').getCameraOrbit().toString()"
