"""Screenshot an HTML report with headless Chromium, to see that it displays.

Usage::

    python docs/screenshot.py demo_out/report/index.html docs/report.png --width 1200 --full
    python docs/screenshot.py REPORT.html OUT.png --height 900

Exits 2 with one line on stderr when the page is missing or Chromium is absent, fails or hangs
(set MITOKIT_CHROMIUM to pick the browser).
"""

from __future__ import annotations

import argparse
import sys

from mitokit.errors import MitokitError
from mitokit.report.screenshot import screenshot


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments, take the screenshot, return the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("html", help="the HTML page to render")
    parser.add_argument("png", help="where to write the PNG")
    parser.add_argument("--width", type=int, default=1200, help="window width (default 1200)")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--height", type=int, default=900, help="window height (default 900)")
    size.add_argument("--full", action="store_true", help="capture the whole page")
    parser.add_argument("--chromium", default=None, help="browser executable (default: search)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds (default 60)")
    args = parser.parse_args(argv)
    try:
        out = screenshot(
            args.html,
            args.png,
            width=args.width,
            height=None if args.full else args.height,
            chromium=args.chromium,
            timeout=args.timeout,
        )
    except (MitokitError, ValueError) as exc:
        print(f"screenshot: error: {exc}", file=sys.stderr)
        return 2
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
