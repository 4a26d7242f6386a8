"""The `repro` command: list, run, check and report the lecture's claims."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from repro import UsageError, claims
from repro.report import kind_counts, rule_text
from repro.rules import deciding_rule
from repro.runner import choose_seeds, leftover_scratch, override, run_claim, runs_here

RESULTS = Path("results")


class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line and exit status 2, no usage dump
        raise UsageError(message)


def _table(rows, header) -> str:
    widths = [max(len(str(x)) for x in column) for column in zip(header, *rows, strict=True)]
    lines = [header, ["-" * w for w in widths], *rows]
    return "\n".join(
        "  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in lines
    )


def _verdict_in(root: Path, claim_id: str) -> dict | None:
    try:
        return json.loads((root / claim_id / "verdict.json").read_text())
    except (OSError, ValueError):  # not run, or unreadable (which check reports)
        return None


def _deciding_rule_in(root: Path, claim_id: str) -> str:
    record = _verdict_in(root, claim_id)
    return rule_text(deciding_rule(record["rules"])) if record and record.get("rules") else ""


def cmd_list(args) -> int:
    rows = []
    for claim in claims.all_claims():
        record = _verdict_in(args.out, claim.CLAIM_ID)
        counts = kind_counts(record["rules"]) if record else {}
        rows.append(
            (
                claim.CLAIM_ID,
                claim.SLIDE,
                record["verdict"] if record else "not run",
                *(counts.get(kind, "") for kind in ("lecture", "beyond", "check")),
                rule_text(deciding_rule(record["rules"])) if record else "",
            )
        )
    header = ("claim", "slide", f"verdict in {args.out}/", "lecture", "beyond", "check")
    print(_table(rows, (*header, "deciding rule (95% CI)")))
    print("lecture rules decide a verdict; beyond findings are reported beside it; a failed")
    print("check means the experiment is broken. Counts are rules passed / rules.")
    return 0


def cmd_run(args) -> int:
    selected = [claims.get(claim_id) for claim_id in args.claims]  # fail fast on a bad id
    for claim in selected:
        runs_here(claim)
    if args.settings and len(selected) > 1:
        raise UsageError("--set applies to one claim at a time")
    plans = [
        (
            claim,
            override(claim.PROFILES[args.profile], args.settings),
            choose_seeds(claim.SEEDS[args.profile], args.seeds, args.seed_offset),
        )
        for claim in selected
    ]  # every setting is checked before anything is written
    try:
        args.out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UsageError(f"cannot create the output directory {args.out}: {err.strerror}") from None
    for claim, config, seeds in plans:
        print(run_claim(claim, args.profile, seeds, args.out, config).describe())
    return 0


def cmd_check(args) -> int:
    from repro.check import check

    rows, problems = check(_results_dir(args.dir))
    for stale in leftover_scratch(args.dir):
        print(f"note: ignoring {stale}, a scratch directory left by an interrupted run")
    rows = [(*row, _deciding_rule_in(args.dir, row[0])) for row in rows]
    header = ("claim", "recorded", "recomputed", "status", "deciding rule (95% CI)")
    print(_table(rows, header))
    for problem in problems:
        print(f"FAIL {args.dir}/{problem}")
    print(f"{len(problems)} problem(s) in {args.dir}/" if problems else f"{args.dir}/: all ok")
    return 1 if problems else 0


def cmd_report(args) -> int:
    from repro.report import write_report

    write_report(args.out, args.readme)
    print(f"wrote {args.out}/README.md, {args.out}/report.html and the manifest")
    if args.readme:
        print(f"updated the claim table in {args.readme}")
    return 0


def _results_dir(path: Path) -> Path:
    if not path.is_dir():
        raise UsageError(f"no results directory at {path}")
    return path


def cmd_compare(args) -> int:
    from repro.verify import compare

    rows, ok, comparison = compare(
        _results_dir(args.new), _results_dir(args.against), args.verdicts_only
    )
    print(_table(rows, ("claim", "compared", "status", "detail")))
    print(f"compared: {'verdicts only' if args.verdicts_only else comparison}")
    print("everything matched" if ok else "MISMATCH: see the rows above")
    return 0 if ok else 1


def write_rule_table(table, path: Path, column: str, labels: tuple[str, str]) -> int:
    """Write a table of every rule on two runs; report each claim whose verdict differs."""
    from repro.records import write_csv

    write_csv(table, path)
    verdicts = table.drop_duplicates(["claim", column]).pivot(
        index="claim", columns=column, values="verdict"
    )
    changed = verdicts[verdicts[labels[0]] != verdicts[labels[1]]]
    print(f"wrote {path}: {len(verdicts)} claims, {' and '.join(labels)}")
    for claim_id, row in changed.iterrows():
        print(f"CHANGED {claim_id}: {row[labels[0]]} ({labels[0]}), {row[labels[1]]} ({labels[1]})")
    return 1 if len(changed) else 0


def cmd_robustness(args) -> int:
    from repro.verify import ROBUSTNESS, robustness

    table = robustness(_results_dir(args.against), _results_dir(args.shifted))
    return write_rule_table(table, args.against / ROBUSTNESS, "seed_set", ("default", "shifted"))


def cmd_backends(args) -> int:
    from repro.verify import BACKENDS, backends

    table = backends(_results_dir(args.against), _results_dir(args.jax))
    return write_rule_table(table, args.against / BACKENDS, "backend", ("tensorflow", "jax"))


def cmd_tune(args) -> int:
    """`repro tune`: the tuning claim's searches and then its results, one shard of the
    searches (no results), or keras-tuner's distributed mode (repro/distributed.py)."""
    claim = claims.get("tuning")  # handed to the search machinery, which knows no claim
    if args.workers < 1:
        raise UsageError("--workers must be at least 1")
    if not 1024 <= args.port <= 65535:
        raise UsageError(f"--port must be between 1024 and 65535, got {args.port}")
    shard, _, shards = (args.shard or "1/1").partition("/")
    if not (shard.isdigit() and shards.isdigit() and 1 <= int(shard) <= int(shards)):
        raise UsageError(f"--shard must look like I/N with 1 <= I <= N, got {args.shard!r}")
    config = override(claim.PROFILES[args.profile], args.settings)
    seeds = choose_seeds(claim.SEEDS[args.profile], args.seeds, args.seed_offset)
    if args.distributed or args.role:
        from repro import distributed

        return distributed.main(claim, config, seeds, args)
    if args.shard:
        from repro.search import search_shard

        search_shard(claim, config, seeds, int(shard), int(shards))
        return 0
    print(run_claim(claim, args.profile, seeds, args.out, config).describe())
    return 0


def build_parser() -> Parser:
    parser = Parser(prog="repro", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    p = sub.add_parser("list", help="claims, their slides and current verdicts")
    p.add_argument("--out", type=Path, default=RESULTS, help="results directory")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("run", help="run claims, write CSVs, verdict and figures")
    p.add_argument("claims", nargs="+", metavar="CLAIM")
    p.add_argument("--profile", choices=("quick", "full"), default="quick")
    p.add_argument("--seeds", help="e.g. 0-4, 7 or 0,2,5 (default: the profile's seeds)")
    p.add_argument(
        "--seed-offset",
        type=int,
        default=0,
        metavar="N",
        help="shift the profile's seeds by N (fresh seeds the rules were not tuned on)",
    )
    p.add_argument("--out", type=Path, default=RESULTS, help="results directory")
    p.add_argument(
        "--set",
        dest="settings",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override one config setting (repeatable)",
    )
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("check", help="verify a results directory from its files alone")
    p.add_argument("dir", nargs="?", type=Path, default=RESULTS)
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("compare", help="compare regenerated results with the committed ones")
    p.add_argument("new", type=Path, help="the regenerated results directory")
    p.add_argument("--against", type=Path, default=RESULTS)
    p.add_argument("--verdicts-only", action="store_true", help="compare verdicts, not numbers")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("robustness", help="tabulate every rule on the default and on shifted seeds")
    p.add_argument("shifted", type=Path, help="results of the same claims on shifted seeds")
    p.add_argument("--against", type=Path, default=RESULTS, help="default-seed results")
    p.set_defaults(func=cmd_robustness)

    p = sub.add_parser("backends", help="tabulate every rule on TensorFlow and on JAX")
    p.add_argument("jax", type=Path, help="results of the same claims on Keras' JAX backend")
    p.add_argument("--against", type=Path, default=RESULTS, help="TensorFlow results")
    p.set_defaults(func=cmd_backends)

    p = sub.add_parser("tune", help="the tuning claim's searches: all, a shard, or distributed")
    p.add_argument("--profile", choices=("quick", "full"), default="quick")
    p.add_argument("--seeds", help="e.g. 0-4 (default: the profile's seeds)")
    p.add_argument("--seed-offset", type=int, default=0, metavar="N", help="shift the seeds")
    p.add_argument("--shard", help="I/N: run the searches of seeds I, I+N, ... only, no results")
    p.add_argument("--distributed", action="store_true", help="keras-tuner's chief and workers")
    p.add_argument("--workers", type=int, default=2, help="worker processes (distributed)")
    p.add_argument("--port", type=int, default=8470, help="first port (distributed)")
    p.add_argument("--role", action="store_true", help="one process of a distributed search")
    p.add_argument("--out", type=Path, default=RESULTS, help="results directory")
    p.add_argument("--set", dest="settings", action="append", default=[], metavar="NAME=VALUE")
    p.set_defaults(func=cmd_tune)

    p = sub.add_parser("report", help="write README.md, report.html and the manifest")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--readme", type=Path, help="also rewrite the claim table of this README")
    p.set_defaults(func=cmd_report)
    return parser


def main(argv=None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return args.func(args)
    except UsageError as err:
        print(f"repro: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("repro: interrupted; finished claims are kept", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
