"""Write the generated observability files of the chart: dashboards and alerting rules.

``python -m ppg_mi.observability.generate [--chart helm/ppg-mi]`` (also
``ppg-mi observability generate``) writes ``files/dashboards/*.json`` and
``files/alerts/ppg-mi-rules.yaml`` under the chart directory.
"""

from __future__ import annotations

import argparse
from pathlib import Path

DASHBOARDS_DIR = Path("files/dashboards")
RULES_FILE = Path("files/alerts/ppg-mi-rules.yaml")


def generate(chart_dir: Path) -> list[Path]:
    from .alerts import rules_yaml
    from .dashboards import write_dashboards

    paths = write_dashboards(chart_dir / DASHBOARDS_DIR)
    rules = chart_dir / RULES_FILE
    rules.parent.mkdir(parents=True, exist_ok=True)
    rules.write_text(rules_yaml(), encoding="utf-8")
    return [*paths, rules]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chart", default="helm/ppg-mi", help="chart directory (default: helm/ppg-mi)")
    args = parser.parse_args(argv)
    for path in generate(Path(args.chart)):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
