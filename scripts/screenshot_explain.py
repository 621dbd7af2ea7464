"""Screenshot a run's explain page (`rnnlab explain RUN_DIR` first) in Debian's Chromium.

    python scripts/screenshot_explain.py runs/mnist docs/explain/mnist.png [--height 760]
        [--click SELECTOR] [--step N] [--hover SELECTOR]

The page opens from its file, as a reader would open it; the PNG is reduced to 256 colours
so that it stays small in the repository. Needs `apt-get install chromium` and the dev extras
(Playwright's Python package, which drives the system browser: never `playwright install`).
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

from PIL import Image
from playwright.sync_api import sync_playwright

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="a run folder holding explain.html")
    parser.add_argument("png", type=Path, help="the screenshot to write")
    parser.add_argument("--width", type=int, default=1200, help="viewport width, pixels")
    parser.add_argument("--height", type=int, default=760, help="viewport height, pixels")
    parser.add_argument("--click", help="a selector to click first (Playwright's syntax)")
    parser.add_argument("--step", type=int, help="then move the page's slider to this step")
    parser.add_argument("--hover", help="then hover this selector")
    args = parser.parse_args()
    page_file = (args.run_dir / "explain.html").resolve()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": args.width, "height": args.height})
        page.goto(page_file.as_uri())
        if args.click:
            page.click(args.click)
        if args.step is not None:
            page.locator("#step").fill(str(args.step))
        if args.hover:
            page.hover(args.hover)
        shot = page.screenshot()
        browser.close()
    image = Image.open(io.BytesIO(shot)).convert("RGB").quantize(256)
    args.png.parent.mkdir(parents=True, exist_ok=True)
    image.save(args.png, optimize=True)
    print(f"{args.png}: {args.png.stat().st_size:,} bytes")


if __name__ == "__main__":
    main()
