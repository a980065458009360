"""Render the headless demo's HTML report in headless Chromium and save docs/images/report.png.

    python docs/make_report_screenshot.py [--run out/demo] [--chromium /usr/bin/chromium]

Runs ``napari-reddino demo --headless --out RUN`` first when RUN holds no report, then opens
``RUN/report/index.html`` in Chromium (Debian package ``chromium``) without network access and
takes a full-width screenshot: what a person opening the report folder sees.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

IMAGES = Path(__file__).parent / "images"
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--hide-scrollbars",
]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="out/demo", help="run folder (default: out/demo)")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    parser.add_argument("--size", default="1280,1600", help="window size WIDTH,HEIGHT")
    args = parser.parse_args()
    report = Path(args.run) / "report" / "index.html"
    if not report.is_file():
        subprocess.run([sys.executable, "-m", "napari_reddino", "demo", "--headless",
                        "--out", args.run], check=True)
    if not Path(args.chromium).exists():
        raise SystemExit(f"Chromium not found at {args.chromium}: apt-get install chromium")
    IMAGES.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run([args.chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                        f"--window-size={args.size}", f"--screenshot={IMAGES / 'report.png'}",
                        report.resolve().as_uri()], check=True, capture_output=True)
    print(f"wrote {IMAGES / 'report.png'} from {report}")


if __name__ == "__main__":
    main()
