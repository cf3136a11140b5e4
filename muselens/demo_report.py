"""The demo's HTML report: one self-contained file (images inlined), readable without a network.

Built from what the demo measured: the museum's results table, the training curves, the
latency histogram of the streamed walk, and a strip of walk frames with their heatmap overlays,
the service's smoothed answer and the ground truth.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; color: #222; }
h1 { margin-bottom: 0.2rem; } .sub { color: #666; margin-top: 0; }
table { border-collapse: collapse; margin: 0.8rem 0; font-size: 0.92rem; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.6rem; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.strip { display: flex; flex-wrap: wrap; gap: 0.6rem; }
.frame { width: 255px; font-size: 0.8rem; }
.frame img { width: 255px; border-radius: 4px; }
.ok { color: #17803d; } .bad { color: #b42318; }
code { background: #f4f4f4; padding: 0 0.2rem; }
img.plot { max-width: 100%; }
"""


def data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def image_tag(source: Path | bytes, alt: str, css: str = "plot") -> str:
    """An ``<img>`` with the picture inlined (PNG or JPEG by its magic bytes)."""
    data = Path(source).read_bytes() if isinstance(source, (str, Path)) else bytes(source)
    mime = "image/png" if data[:8] == b"\x89PNG\r\n\x1a\n" else "image/jpeg"
    return f'<img class="{css}" alt="{html.escape(alt)}" src="{data_uri(data, mime)}">'


def table(rows: Sequence[Mapping[str, object]], columns: Sequence[str] | None = None) -> str:
    if not rows:
        return "<p>(nothing measured)</p>"
    columns = list(columns or rows[0].keys())
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_cell(row.get(c)))}</td>" for c in columns) + "</tr>"
                   for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.2f}"
    return "" if value is None else str(value)


@dataclass(frozen=True)
class StripFrame:
    """One walk frame as the report shows it."""

    jpeg: bytes
    frame_id: str
    answer: str
    truth: str
    correct: bool
    latency_ms: float


@dataclass
class Report:
    title: str
    subtitle: str = ""
    sections: list[str] = field(default_factory=list)

    def add(self, heading: str, *parts: str) -> None:
        self.sections.append(f"<h2>{html.escape(heading)}</h2>\n" + "\n".join(parts))

    def add_strip(self, heading: str, frames: Sequence[StripFrame], note: str = "") -> None:
        cards = []
        for f in frames:
            verdict = "ok" if f.correct else "bad"
            cards.append(f'<div class="frame">{image_tag(f.jpeg, f"frame {f.frame_id}", "thumb")}'
                         f'<div>frame {html.escape(f.frame_id)} · {f.latency_ms:.0f} ms</div>'
                         f'<div class="{verdict}">shown: {html.escape(f.answer)}</div>'
                         f'<div>truth: {html.escape(f.truth)}</div></div>')
        self.add(heading, paragraph(note) if note else "", f'<div class="strip">{"".join(cards)}</div>')

    def render(self) -> str:
        return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
                f"<title>{html.escape(self.title)}</title><style>{STYLE}</style></head><body>\n"
                f"<h1>{html.escape(self.title)}</h1>\n<p class=\"sub\">{html.escape(self.subtitle)}</p>\n"
                + "\n".join(self.sections) + "\n</body></html>\n")

    def write(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(self.render(), encoding="utf-8")
        tmp.replace(path)
        return path


def paragraph(text: str) -> str:
    return f"<p>{html.escape(text)}</p>"


def code(text: str) -> str:
    return f"<p><code>{html.escape(text)}</code></p>"
