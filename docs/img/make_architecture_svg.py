"""Draws docs/img/architecture.svg (the flow as built); run it after changing the stages."""

from __future__ import annotations

from pathlib import Path

W, H = 700, 440
GREEN, ORANGE, YELLOW, BLUE, GREY = "#efe", "#fed", "#ffd", "#eef", "#eee"
parts: list[str] = []


def box(x: int, y: int, w: int, h: int, fill: str, *lines: str) -> None:
    parts.append(f'<rect x="{x}" y="{y}" width="{w}" height="{h}" rx="5" fill="{fill}" stroke="#666"/>')
    top = y + h / 2 - 7 * (len(lines) - 1) + 4
    for k, line in enumerate(lines):
        parts.append(f'<text x="{x + w / 2}" y="{top + 14 * k:.0f}" text-anchor="middle">{line}</text>')


def arrow(x1: float, y1: float, x2: float, y2: float) -> None:
    parts.append(f'<line x1="{x1}" y1="{y1}" x2="{x2}" y2="{y2}" stroke="#444" marker-end="url(#a)"/>')


box(20, 20, 150, 40, BLUE, "suite.toml / name")
box(20, 90, 150, 40, BLUE, "Suite (validated)")
box(20, 160, 150, 40, BLUE, "checks + run-dir lock")
box(20, 240, 150, 60, GREY, "plugins: data, zoos,", "perturbations, metrics,", "benchmarks, executors")
stages = [("1 dataset.load + preflight", GREEN), ("2 zoo groups  [task]", ORANGE),
          ("3 model perturbations, probe sets", GREEN), ("4 representations  [task]", ORANGE),
          ("5 agreement", GREEN), ("6 similarity  [task]", ORANGE),
          ("7 sources + declared matrices [task]", ORANGE), ("8 benchmarks (read-only view)", GREEN)]
y0, step, h = 24, 40, 30
centre = {}
for k, (label, fill) in enumerate(stages):
    y = y0 + step * k
    box(220, y, 210, h, fill, label)
    centre[k + 1] = y + h / 2
box(490, 40, 190, 60, ORANGE, "executor plugin", "local | dask workers")
box(490, 140, 190, 60, YELLOW, "tensor cache", "(content-addressed, shared)")
box(490, 250, 190, 74, YELLOW, "run dir: cells, matrices/*.npy,", "manifest, results.parquet", "(long format, coords)")
box(490, 366, 190, 62, BLUE, "report: tables built once", "RUN_DIR/leaderboard,", "summary, Results")
box(220, 372, 210, 50, BLUE, "simbench publish", "(publishing policy)")
box(20, 385, 150, 34, BLUE, "leaderboards/")
arrow(95, 60, 95, 90)
arrow(95, 130, 95, 160)
arrow(170, 180, 220, centre[1])
for k in (2, 4, 6, 7):
    arrow(430, centre[k], 490, 70)
arrow(585, 100, 585, 140)
arrow(490, 270, 430, centre[8])  # benchmarks read the store
arrow(430, centre[5], 490, 262)
arrow(585, 324, 585, 366)
arrow(490, 397, 430, 397)
arrow(220, 397, 170, 402)
arrow(170, 270, 220, 270)
parts.append('<text x="220" y="16" font-size="11" fill="#555">Runner stages (client); '
             '[task] = planned, sent to the executor (local too)</text>')

svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
       '<defs><marker id="a" markerWidth="8" markerHeight="8" refX="7" refY="3" orient="auto">'
       '<path d="M0,0 L7,3 L0,6 z" fill="#444"/></marker></defs>',
       f'<rect width="{W}" height="{H}" fill="white"/>', *parts, "</svg>"]
Path(__file__).with_name("architecture.svg").write_text("\n".join(svg) + "\n")
