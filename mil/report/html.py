"""Self-contained HTML: every image a base64 data URI, styles and the one small script inline, no network.

A report is mailed, archived with a paper and opened years later on a machine without internet, so nothing
may be fetched: no CDN scripts, no web fonts, no linked images. These helpers are pure string builders
(escaping every value from data), so the page's structure can be tested without a browser.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Sequence

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:0;color:#1c1c28;
background:#fafafc}
header{background:#23234a;color:#fff;padding:18px 32px}header h1{margin:0 0 4px 0;font-size:24px}
header p{margin:2px 0;color:#d6d6f0;font-size:14px}
main{padding:8px 32px 48px 32px;max-width:1500px}
section{background:#fff;border:1px solid #e2e2ea;border-radius:6px;padding:12px 20px;margin:18px 0}
h2{font-size:19px;margin:6px 0 10px 0;color:#23234a}h3{font-size:16px;margin:14px 0 6px 0}
table{border-collapse:collapse;font-size:13px;margin:6px 0}
th,td{border-bottom:1px solid #e6e6ee;padding:3px 9px;text-align:right}
th{background:#f0f0f7;position:sticky;top:0}th.sortable{cursor:pointer}
td:first-child,th:first-child{text-align:left}
.scroll{max-height:420px;overflow:auto;display:inline-block;border:1px solid #e6e6ee}
.figs{display:flex;flex-wrap:wrap;gap:16px;align-items:flex-start}
.figs img{max-width:560px;height:auto;border:1px solid #eee}
img.montage{max-width:100%;height:auto;border:1px solid #eee}
.note{color:#555;font-size:13px;max-width:1100px}.bad{color:#a01010}
"""

# Click a column header to sort by it (numbers numerically, text alphabetically; click again to reverse).
SORT_JS = """
document.querySelectorAll('table.sortable').forEach(function(t){
  t.querySelectorAll('th').forEach(function(th,i){th.classList.add('sortable');th.addEventListener('click',
  function(){var b=t.tBodies[0],r=Array.from(b.rows),asc=th.dataset.asc!=='1';th.dataset.asc=asc?'1':'0';
  r.sort(function(x,y){var a=x.cells[i].textContent,c=y.cells[i].textContent,na=parseFloat(a),nc=parseFloat(c);
  var v=(!isNaN(na)&&!isNaN(nc))?na-nc:a.localeCompare(c);return asc?v:-v;});
  r.forEach(function(x){b.appendChild(x);});});});});
"""


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def img(png: bytes, alt: str, cls: str = "") -> str:
    klass = f' class="{esc(cls)}"' if cls else ""
    return f'<img{klass} alt="{esc(alt)}" src="{data_uri(png)}">'


def fmt(value: object, digits: int = 3) -> str:
    """Numbers to `digits` significant decimals, None/NaN to an en dash, everything else as text."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "–"
        if value != 0 and (abs(value) < 10**-digits or abs(value) >= 1e5):
            return f"{value:.{digits - 1}e}"
        return f"{value:.{digits}f}"
    return str(value)


def table(
    header: Sequence[str], rows: Sequence[Sequence[object]], sortable: bool = False, scroll: bool = False
) -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{esc(fmt(v))}</td>" for v in row) + "</tr>" for row in rows)
    klass = ' class="sortable"' if sortable else ""
    out = f"<table{klass}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    return f'<div class="scroll">{out}</div>' if scroll else out


def section(anchor: str, title: str, body: str) -> str:
    return f'<section id="{esc(anchor)}"><h2>{esc(title)}</h2>{body}</section>'


def note(text: str) -> str:
    return f'<p class="note">{esc(text)}</p>'


def page(title: str, subtitle_lines: Sequence[str], sections: Sequence[str]) -> str:
    sub = "".join(f"<p>{esc(line)}</p>" for line in subtitle_lines)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body>"
        f"<header><h1>{esc(title)}</h1>{sub}</header><main>{''.join(sections)}</main>"
        f"<script>{SORT_JS}</script></body></html>\n"
    )
