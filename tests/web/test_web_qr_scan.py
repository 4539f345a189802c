"""qr.js codes scan: Chromium draws them and zbar (an independent decoder) reads them back.

qr_fixtures.json already pins whole matrices to libqrencode's; this adds the masks qr.js picks
by itself (its own penalty scores) and the SVG rendering with its quiet zone.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from webkit import missing

QR_JS = Path(__file__).resolve().parents[2] / "pubquiz_engine" / "web" / "static" / "qr.js"
TEXTS = [
    "http://127.0.0.1:8765/play?code=K7QX",
    "http://192.168.178.20:8765/play?code=ABC234",
    "https://quiz.example.org/play?code=Q9Z3&lang=de#" + "z" * 60,
    "Zoë 🦉 pub quiz",
]


@pytest.fixture(scope="module")
def zbarimg() -> str:
    path = shutil.which("zbarimg")
    if path is None:
        missing("zbarimg is not installed (apt-get install zbar-tools)")
    assert path is not None
    return path


def test_codes_scan_back(node: str, zbarimg: str, browser: Any, tmp_path: Path) -> None:
    script = (f"import {{ qrSvg }} from {json.dumps(QR_JS.as_uri())};"
              f"console.log(JSON.stringify({json.dumps(TEXTS)}.map((t) => qrSvg(t))));")
    made = subprocess.run([node, "--input-type=module", "-e", script], capture_output=True,
                          text=True, timeout=60, check=True)
    svgs = json.loads(made.stdout)
    context = browser.new_context(viewport={"width": 600, "height": 600})
    try:
        page = context.new_page()
        for number, (text, svg) in enumerate(zip(TEXTS, svgs, strict=True)):
            page.set_content(f"<body style='margin:0'><div id=qr style='width:400px'>{svg}</div>")
            image = tmp_path / f"qr-{number}.png"
            page.locator("#qr").screenshot(path=str(image))
            scanned = subprocess.run([zbarimg, "--raw", "-q", "-Sbinary", str(image)],
                                     capture_output=True, timeout=60, check=False)
            assert scanned.returncode == 0, scanned.stderr
            assert scanned.stdout.rstrip(b"\n").decode("utf-8") == text
    finally:
        context.close()
