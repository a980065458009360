#!/usr/bin/env bash
# The README main job (`make run`): napari with the plugin on the bundled real smear (Chula) when a
# display is present; otherwise the headless batch pipeline on synthetic smears into ./out/demo.
# Extra arguments go to `napari-reddino demo` (e.g. --headless, --out DIR, --backbone NAME).
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/napari-reddino demo "$@"
