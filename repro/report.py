"""results/README.md and results/report.html, written from the claims' own files only."""

from __future__ import annotations

import base64
import html
import inspect
import json
from pathlib import Path

import pandas as pd

from repro import claims
from repro.check import write_manifest
from repro.harness import read_csv, write_text


def _experiment(claim) -> str:
    """The module docstring without its title line: the claim's experiment in prose."""
    doc = inspect.getdoc(claim) or ""
    return doc.partition("\n")[2].strip()


def _load(claim, root: Path) -> dict | None:
    out_dir = root / claim.CLAIM_ID
    if not (out_dir / "verdict.json").exists():
        return None
    verdict = json.loads((out_dir / "verdict.json").read_text())
    provenance = json.loads((out_dir / "provenance.json").read_text())
    return {"verdict": verdict, "provenance": provenance}


def _cell(text: str) -> str:
    """Text for a Markdown table cell: a bare | would end the cell (|x|, ||w||)."""
    return text.replace("|", "\\|")


def interval_text(rule: dict) -> str:
    """'[0.551, 0.563]', or 'exact' for a rule that is exact by construction."""
    if rule["low"] is None:
        return "exact"
    return f"[{rule['low']:.4g}, {rule['high']:.4g}]"


def rule_text(rule: dict) -> str:
    """'0.557 [0.551, 0.563] >= 0.5': the statistic, its 95% interval and the threshold."""
    return f"{rule['measured']:.4g} {interval_text(rule)} {rule['op']} {rule['threshold']:.4g}"


def deciding_rule(rules: list[dict]) -> dict:
    """The rule that decides a verdict: the first failing, else inconclusive, else the first."""
    for outcome in ("fail", "inconclusive"):
        for rule in rules:
            if rule["outcome"] == outcome:
                return rule
    return rules[0]


def _summary_cells(claim, record) -> list[str]:
    if record is None:
        return [claim.CLAIM_ID, claim.SLIDE, "not run", "", "", ""]
    rules = record["verdict"]["rules"]
    shown = deciding_rule(rules)
    return [
        claim.CLAIM_ID,
        claim.SLIDE,
        record["verdict"]["verdict"],
        f"{shown['name']}: {rule_text(shown)}",
        f"{sum(r['outcome'] == 'pass' for r in rules)}/{len(rules)}",
        f"{record['provenance']['wall_seconds']:.0f} s",
    ]


HEADER = [
    "claim",
    "slide",
    "verdict",
    "deciding rule: statistic [95% CI] vs threshold",
    "rules passed",
    "wall time",
]


ROBUSTNESS_HEADER = [
    "claim",
    "verdict, default seeds",
    "verdict, shifted seeds",
    "deciding rule, default seeds",
    "same rule, shifted seeds",
]


def robustness_rows(root: Path) -> list[list[str]]:
    """Per claim: the verdict and the deciding rule's statistic [95% CI] on the default seeds
    and on seeds nobody chose, from robustness.csv (written by `make fresh-seeds`)."""
    path = root / "robustness.csv"
    if not path.exists():
        return []
    table = read_csv(path)
    rows = []
    for claim_id, runs in table.groupby("claim", sort=False):
        rules = {
            seed_set: [
                {
                    "name": r.rule,
                    "measured": r.statistic,
                    "low": None if pd.isna(r.low) else r.low,  # empty for an exact rule
                    "high": None if pd.isna(r.high) else r.high,
                    "outcome": r.outcome,
                }
                for r in group.itertuples()
            ]
            for seed_set, group in runs.groupby("seed_set")
        }
        first = runs.drop_duplicates("seed_set").set_index("seed_set")
        shown = deciding_rule(rules["default"])
        twin = next((r for r in rules["shifted"] if r["name"] == shown["name"]), None)
        rows.append(
            [
                claim_id,
                f"{first.at['default', 'verdict']} (seeds {first.at['default', 'seeds']})",
                f"{first.at['shifted', 'verdict']} (seeds {first.at['shifted', 'seeds']})",
                f"{shown['name']}: {_statistic_text(shown)}, {shown['outcome']}",
                f"{_statistic_text(twin)}, {twin['outcome']}" if twin else "rule missing",
            ]
        )
    return rows


def _statistic_text(rule: dict) -> str:
    return f"{rule['measured']:.4g} {interval_text(rule)}"


def markdown(root: Path) -> str:
    records = {c.CLAIM_ID: (c, _load(c, root)) for c in claims.all_claims()}
    lines = [
        "# Results: the lecture's claims, reproduced",
        "",
        "Written by `repro report` from the files in this directory; verify them with "
        "`repro check`. Each verdict is recomputed from the CSVs beside it.",
        "",
        "| " + " | ".join(HEADER) + " |",
        "|" + "---|" * len(HEADER),
    ]
    for claim, record in records.values():
        cells = _summary_cells(claim, record)
        cells[0] = f"[{cells[0]}](#{claim.CLAIM_ID})"
        lines.append("| " + " | ".join(map(_cell, cells)) + " |")
    robust = robustness_rows(root)
    if robust:
        lines += ["", "## Robustness: the same rules on seeds nobody chose", "", ROBUST_TEXT, ""]
        lines += ["| " + " | ".join(ROBUSTNESS_HEADER) + " |", "|" + "---|" * 5]
        lines += ["| " + " | ".join(map(_cell, cells)) + " |" for cells in robust]
    for claim, record in records.values():
        lines += [
            "",
            f"## {claim.CLAIM_ID}",
            "",
            f"*Slide: {claim.SLIDE}*",
            "",
            f"**Claim.** {claim.STATEMENT}",
            "",
            _experiment(claim),
            "",
        ]
        if record is None:
            lines.append("_Not run yet._")
            continue
        p = record["provenance"]
        lines += [
            f"**Verdict: {record['verdict']['verdict']}** "
            f"({p['profile']} profile, seeds {seed_text(p['seeds'])}, "
            f"{p['wall_seconds']:.0f} s)",
            "",
            "| rule | statistic | 95% CI | threshold | outcome | note |",
            "|---|---|---|---|---|---|",
        ]
        for r in record["verdict"]["rules"]:
            outcome = f"{r['outcome']} ({r['reason']})" if r["reason"] else r["outcome"]
            lines.append(
                f"| {_cell(r['name'])} | {r['measured']:.4g} | {interval_text(r)} "
                f"| {r['op']} {r['threshold']:.4g} | {outcome} | {_cell(r['note'])} |"
            )
        lines.append("")
        lines += [f"![{name}]({claim.CLAIM_ID}/{name})" for name in claim.FIGURES]
    return "\n".join(lines) + "\n"


def seed_text(seeds: list[int]) -> str:
    contiguous = seeds == list(range(seeds[0], seeds[0] + len(seeds))) if seeds else False
    return f"{seeds[0]}-{seeds[-1]}" if contiguous and len(seeds) > 1 else ",".join(map(str, seeds))


STYLE = """
body{font-family:system-ui,sans-serif;max-width:980px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:.92em}
td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left}
th{background:#f3f3f3} .pass{color:#0a6b2d;font-weight:bold} .fail{color:#b00020;font-weight:bold}
.inconclusive{color:#9a6700;font-weight:bold}
img{max-width:100%;display:block;margin:1em 0} section{border-top:1px solid #ddd;margin-top:2em}
pre{background:#f6f6f6;padding:.5em}
"""


ROBUST_TEXT = (
    "Every claim rerun by `make fresh-seeds` on as many seeds again, shifted so that no rule "
    "was ever decided on them; robustness.csv holds every rule of both runs."
)


def _markdown_html(text: str) -> str:
    """A docstring as HTML: its paragraphs, lists and indented formulas are Markdown
    (CommonMark, raw HTML escaped)."""
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark", {"html": False}).enable("table").render(text)


_CSS = {"REPRODUCED": "pass", "NOT REPRODUCED": "fail", "INCONCLUSIVE": "inconclusive"}


def _verdict_span(text: str) -> str:
    return f'<span class="{_CSS.get(text, "fail")}">{html.escape(text)}</span>'


def page(root: Path) -> str:
    """One self-contained HTML page: figures are embedded as data URIs, nothing is fetched."""
    esc = html.escape
    rows, sections = [], []
    for claim in claims.all_claims():
        record = _load(claim, root)
        cells = _summary_cells(claim, record)
        cells = [
            f'<a href="#{claim.CLAIM_ID}">{esc(cells[0])}</a>',
            esc(cells[1]),
            _verdict_span(cells[2]),
            *map(esc, cells[3:]),
        ]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
        body = [
            f'<section id="{claim.CLAIM_ID}"><h2>{esc(claim.CLAIM_ID)}</h2>',
            f"<p><em>Slide: {esc(claim.SLIDE)}</em></p>",
            f"<p><strong>Claim.</strong> {esc(claim.STATEMENT)}</p>",
            f'<div class="experiment">{_markdown_html(_experiment(claim))}</div>',
        ]
        if record is None:
            body.append("<p>Not run yet.</p>")
        else:
            body.append(
                f"<p>Verdict: {_verdict_span(record['verdict']['verdict'])}</p><table>"
                "<tr><th>rule</th><th>statistic</th><th>95% CI</th><th>threshold</th>"
                "<th>outcome</th><th>note</th></tr>"
            )
            for r in record["verdict"]["rules"]:
                outcome = f"{r['outcome']} ({r['reason']})" if r["reason"] else r["outcome"]
                body.append(
                    f"<tr><td>{esc(r['name'])}</td><td>{r['measured']:.4g}</td>"
                    f"<td>{esc(interval_text(r))}</td>"
                    f"<td>{esc(r['op'])} {r['threshold']:.4g}</td>"
                    f'<td class="{r["outcome"]}">{esc(outcome)}</td>'
                    f"<td>{esc(r['note'])}</td></tr>"
                )
            body.append("</table>")
            for name in claim.FIGURES:
                data = base64.b64encode((root / claim.CLAIM_ID / name).read_bytes()).decode()
                body.append(
                    f'<img alt="{esc(claim.CLAIM_ID)}: {esc(name)}" '
                    f'src="data:image/png;base64,{data}">'
                )
        sections.append("\n".join(body) + "</section>")
    head = "".join(f"<th>{esc(h)}</th>" for h in HEADER)
    robust = robustness_rows(root)
    if robust:
        robust_head = "".join(f"<th>{esc(h)}</th>" for h in ROBUSTNESS_HEADER)
        robust_rows = "".join(
            "<tr>" + "".join(f"<td>{esc(c)}</td>" for c in cells) + "</tr>" for cells in robust
        )
        sections.insert(
            0,
            f"<section><h2>Robustness: the same rules on seeds nobody chose</h2>"
            f"<p>{esc(ROBUST_TEXT)}</p><table><tr>{robust_head}</tr>{robust_rows}</table>"
            "</section>",
        )
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>repro: results</title><style>{STYLE}</style></head><body>"
        f"<h1>Results: the lecture's claims, reproduced</h1>"
        f"<p>Written by <code>repro report</code>; verify with <code>repro check</code>.</p>"
        f"<table><tr>{head}</tr>{''.join(rows)}</table>{''.join(sections)}</body></html>\n"
    )


TABLE_START, TABLE_END = "<!-- claims-table", "<!-- /claims-table -->"


def claims_table(root: Path) -> str:
    """The top-level README's claim table: id, slide, statement and committed verdict."""
    lines = ["| claim | slide | statement | verdict |", "|---|---|---|---|"]
    for claim in claims.all_claims():
        record = _load(claim, root)
        verdict = record["verdict"]["verdict"] if record else "not run"
        link = f"[{claim.CLAIM_ID}](results/README.md#{claim.CLAIM_ID})"
        lines.append(f"| {link} | {claim.SLIDE} | {_cell(claim.STATEMENT)} | {verdict} |")
    return "\n".join(lines)


def readme_with_table(text: str, root: Path) -> str:
    """`text` with the lines between the claims-table markers replaced by `claims_table`."""
    start = text.index(TABLE_START)
    body_start = text.index("\n", start) + 1
    end = text.index(TABLE_END)
    return text[:body_start] + claims_table(root) + "\n" + text[end:]


def write_report(root: Path, readme: Path | None = None) -> None:
    write_text(root / "README.md", markdown(root))
    write_text(root / "report.html", page(root))
    write_manifest(root)
    if readme is not None:
        write_text(readme, readme_with_table(readme.read_text(), root))
