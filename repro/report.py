"""results/README.md and results/report.html, written from the claims' own files only.

One source: the report is written as Markdown, and the HTML page is that Markdown rendered
(CommonMark with tables), its figures embedded so that the page stands alone.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

from repro import claims
from repro.check import write_manifest
from repro.records import claim_code, code_digest, read_csv, write_text
from repro.rules import BEYOND, CHECK, KINDS, LECTURE, PASS, deciding_rule

KIND_HEADINGS = {
    LECTURE: "Lecture rules (these decide the verdict)",
    CHECK: "Checks (true by construction; a failed check means the experiment is broken)",
    BEYOND: "Beyond the lecture (reported, never deciding)",
}

HOW_TO_READ = """\
Each claim's verdict is decided by its **lecture** rules alone: rules that test what a
slide asserts. A rule's statistic carries a 95% Student-t interval over seeds; the rule
passes when the whole interval lies on the passing side of its threshold, fails when the
whole interval lies on the other side, and is inconclusive otherwise. **REPRODUCED**: every
lecture rule passes. **NOT REPRODUCED**: a lecture rule's interval lies wholly on the
failing side (the evidence says the claim does not hold here), or a **check** failed: a
check is an identity that no sound experiment can fail, so its failure means the
experiment is broken. **INCONCLUSIVE**: no rule fails, but some interval straddles its
threshold: more seeds or a sharper design could decide it. **Beyond** findings go further
than the slides and are reported beside the verdict, never deciding it."""


def load(claim, root: Path) -> dict | None:
    out_dir = root / claim.CLAIM_ID
    if not (out_dir / "verdict.json").exists():
        return None
    verdict = json.loads((out_dir / "verdict.json").read_text())
    provenance = json.loads((out_dir / "provenance.json").read_text())
    return {"verdict": verdict, "provenance": provenance}


def cell(text: str) -> str:
    """Text for a Markdown table cell: a bare | would end the cell (|x|, ||w||)."""
    return str(text).replace("|", "\\|")


def interval_text(rule: dict) -> str:
    """'[0.551, 0.563]', or 'exact' for a rule that is exact by construction."""
    if rule["low"] is None:
        return "exact"
    return f"[{rule['low']:.4g}, {rule['high']:.4g}]"


def rule_text(rule: dict) -> str:
    """'0.557 [0.551, 0.563] >= 0.5': the statistic, its 95% interval and the threshold."""
    return f"{rule['measured']:.4g} {interval_text(rule)} {rule['op']} {rule['threshold']:.4g}"


def kind_counts(rules: list[dict]) -> dict[str, str]:
    """'2/3' per kind: rules passed / rules of that kind."""
    counts = {}
    for kind in KINDS:
        of_kind = [r for r in rules if r["kind"] == kind]
        if of_kind:
            counts[kind] = f"{sum(r['outcome'] == PASS for r in of_kind)}/{len(of_kind)}"
    return counts


def seed_text(seeds: list[int]) -> str:
    contiguous = seeds == list(range(seeds[0], seeds[0] + len(seeds))) if seeds else False
    return f"{seeds[0]}-{seeds[-1]}" if contiguous and len(seeds) > 1 else ",".join(map(str, seeds))


def table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]


def summary(records: dict) -> list[str]:
    rows = []
    for claim, record in records.values():
        link = f"[{claim.CLAIM_ID}](#{claim.CLAIM_ID})"
        if record is None:
            rows.append([link, claim.SLIDE, "not run", "", "", "", ""])
            continue
        rules = record["verdict"]["rules"]
        counts = kind_counts(rules)
        shown = deciding_rule(rules)
        rows.append(
            [
                link,
                claim.SLIDE,
                f"**{record['verdict']['verdict']}**",
                f"{shown['name']}: {rule_text(shown)}",
                *(counts.get(kind, "-") for kind in KINDS),
            ]
        )
    header = ["claim", "slide", "verdict", "deciding rule: statistic [95% CI] vs threshold"]
    return table(header + ["lecture passed", "beyond passed", "checks passed"], rows)


def provenance_line(claim, provenance: dict) -> list[str]:
    """Which command and module made the results, at which commit, and whether the
    claim's code has changed since."""
    module = provenance.get("module", f"repro/claims/{Path(claim.__file__).name}")
    command = f"repro run {claim.CLAIM_ID} --profile {provenance['profile']}"
    seeds = seed_text(provenance["seeds"])
    notes = f"[docs/claims/{claim.CLAIM_ID}.md](../docs/claims/{claim.CLAIM_ID}.md)"
    lines = [
        f"Made by `{command}` (`{module}`, seeds {seeds}) at commit "
        f"{provenance['git_commit'][:7]}, in {provenance['wall_seconds']:.0f} s. "
        f"The design and its history: {notes}."
    ]
    if provenance.get("code_digest") != code_digest(claim_code(claim)):
        lines += [
            "",
            f"> **Stale:** the code of this claim has changed since these results were made; "
            f"`make {claim.CLAIM_ID}` remakes them.",
        ]
    return lines


def section(claim, record) -> list[str]:
    lines = ["", f"## {claim.CLAIM_ID}", "", f"*Slide: {claim.SLIDE}*", ""]
    lines += [f"**Claim.** {claim.STATEMENT}", ""]
    if record is None:
        return lines + ["_Not run yet._"]
    lines += [f"![{claim.CLAIM_ID}: {name}]({claim.CLAIM_ID}/{name})" for name in claim.FIGURES]
    verdict = record["verdict"]
    lines += ["", f"**Verdict: {verdict['verdict']}** ({verdict['reason']})"]
    for kind in (LECTURE, CHECK, BEYOND):  # what decides, what must hold, what goes further
        rules = [r for r in verdict["rules"] if r["kind"] == kind]
        if not rules:
            continue
        rows = [
            [
                r["name"] + (f" (slide: {r['slide']})" if r["slide"] else ""),
                f"{r['measured']:.4g}",
                interval_text(r),
                f"{r['op']} {r['threshold']:.4g}",
                f"{r['outcome']} ({r['reason']})" if r["reason"] else r["outcome"],
                r["note"],
            ]
            for r in rules
        ]
        header = ["rule", "statistic", "95% CI", "threshold", "outcome", "note"]
        lines += ["", f"**{KIND_HEADINGS[kind]}**", "", *table(header, rows)]
    return lines + ["", *provenance_line(claim, record["provenance"])]


TWO_RUNS = {  # table: (column, its two runs, heading, text, make target)
    "robustness.csv": (
        "seed_set",
        {"default": "verdict seeds", "shifted": "seeds shifted by 1000"},
        "Robustness: the same rules on seeds no design was decided on",
        "Every claim rerun by `make fresh-seeds` on as many seeds again, shifted by 1000: "
        "seeds run only after the claim's design was frozen (each claim's notes say which "
        "seed sets its design saw). `robustness.csv` holds every rule of both runs.",
        "fresh-seeds",
    ),
    "backends.csv": (
        "backend",
        {"tensorflow": "TensorFlow", "jax": "JAX"},
        "Backends: the same rules on Keras' JAX backend",
        "Every claim that is not about TensorFlow itself rerun by `make backends` on Keras' "
        "JAX backend: other random streams and other kernels, the same seeds and code. "
        "`backends.csv` holds every rule of both runs.",
        "backends",
    ),
}


def two_runs(root: Path, name: str) -> list[str]:
    """Per claim: the verdict in each of the table's two runs and its lecture rules passed."""
    column, runs_shown, heading, text, target = TWO_RUNS[name]
    path = root / name
    if not path.exists():
        return []
    frame = read_csv(path)
    if not {"kind", column, "verdict", "outcome"} <= set(frame.columns):
        return ["", f"_{name} predates the current rules: `make {target}` remakes it._"]
    rows = []
    for claim_id, runs in frame.groupby("claim", sort=False):
        cells = [claim_id]
        for label in runs_shown:
            run = runs[runs[column] == label]
            lecture = run[run["kind"] == LECTURE]
            passed = int((lecture["outcome"] == PASS).sum())
            cells.append(
                f"{run['verdict'].iloc[0]} (seeds {run['seeds'].iloc[0]}; "
                f"lecture rules passed {passed}/{len(lecture)})"
            )
        rows.append(cells)
    return ["", f"## {heading}", "", text, "", *table(["claim", *runs_shown.values()], rows)]


def markdown(root: Path) -> str:
    records = {c.CLAIM_ID: (c, load(c, root)) for c in claims.all_claims()}
    lines = [
        "# Results: the lecture's claims, reproduced",
        "",
        "Written by `repro report` from the files in this directory; `repro check` "
        "recomputes every verdict from the CSVs beside it.",
        "",
        HOW_TO_READ,
        "",
        *summary(records),
        *two_runs(root, "robustness.csv"),
        *two_runs(root, "backends.csv"),
    ]
    for claim, record in records.values():
        lines += section(claim, record)
    return "\n".join(lines) + "\n"


STYLE = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:.9em}
td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left;vertical-align:top}
th{background:#f3f3f3} img{max-width:100%;display:block;margin:1em 0}
h2{border-top:1px solid #ddd;padding-top:1em;margin-top:2em}
blockquote{background:#fff4e5;border-left:4px solid #e69500;margin:1em 0;padding:.2em 1em}
"""


def page(root: Path, text: str) -> str:
    """The Markdown report as one self-contained HTML page: figures become data URIs."""
    from markdown_it import MarkdownIt

    body = MarkdownIt("commonmark", {"html": False}).enable("table").render(text)

    def embed(match):
        data = base64.b64encode((root / match[1]).read_bytes()).decode()
        return f'src="data:image/png;base64,{data}"'

    body = re.sub(r'src="([^"]+\.png)"', embed, body)
    # Anchors for the summary's links: a claim's heading gets the claim's id.
    body = re.sub(r"<h2>([a-z0-9-]+)</h2>", r'<h2 id="\1">\1</h2>', body)
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>repro: results</title><style>{STYLE}</style></head><body>\n{body}</body></html>\n"
    )


TABLE_START, TABLE_END = "<!-- claims-table", "<!-- /claims-table -->"


def claims_table(root: Path) -> str:
    """The top-level README's claim table: id, slide, statement and committed verdict."""
    lines = ["| claim | slide | what the lecture rules test | verdict |", "|---|---|---|---|"]
    for claim in claims.all_claims():
        record = load(claim, root)
        verdict = record["verdict"]["verdict"] if record else "not run"
        link = f"[{claim.CLAIM_ID}](results/README.md#{claim.CLAIM_ID})"
        lines.append(f"| {link} | {claim.SLIDE} | {cell(claim.STATEMENT)} | {verdict} |")
    return "\n".join(lines)


def readme_with_table(text: str, root: Path) -> str:
    """`text` with the lines between the claims-table markers replaced by `claims_table`."""
    start = text.index(TABLE_START)
    body_start = text.index("\n", start) + 1
    end = text.index(TABLE_END)
    return text[:body_start] + claims_table(root) + "\n" + text[end:]


def write_report(root: Path, readme: Path | None = None) -> None:
    text = markdown(root)
    write_text(root / "README.md", text)
    write_text(root / "report.html", page(root, text))
    write_manifest(root)
    if readme is not None:
        write_text(readme, readme_with_table(readme.read_text(), root))
