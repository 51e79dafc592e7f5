"""Benchmark: gapless's SQL linter next to squawk on the same corpus.

Lints every input of ``tests/migrations/lint_corpus.py`` (single statements, Alembic ``upgrade --sql``
output, Django ``sqlmigrate`` output, multi-statement recipes) with ``gapless migrate lint`` and with
squawk (PyPI ``squawk-cli``, in the ``dev`` extra), and prints one row per input: whether it is dangerous,
each tool's verdict and rules, and which tool is right. Then a summary (caught by both, by one only,
missed by both, false positives of each) and the time each tool takes for the whole corpus: gapless in
the process, gapless as its CLI (one process for all files), squawk as its CLI (one process for all
files). squawk's style rules (``SQUAWK_STYLE_RULES``: rerunnable statements, column types) are left out
of its verdict and counted apart.

    .venv/bin/python bench/lint_compare.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.migrations.lint_corpus import (
    CORPUS,
    SQUAWK_STYLE_RULES,
    Case,
    run_squawk,
    squawk_binary,
    squawk_version,
    write_corpus,
)

from gapless.migrations.lint import lint_sql


def gapless_cli() -> list[str]:
    """argv prefix of the ``gapless`` CLI of the running environment."""
    beside = Path(sys.executable).parent / "gapless"
    if beside.is_file():
        return [str(beside)]
    found = shutil.which("gapless")
    if found is None:
        raise SystemExit("the gapless CLI is not installed (pip install -e .)")
    return [found]


def run_gapless_cli(paths: list[Path]) -> dict[Path, list[str]]:
    """gapless's rule ids per file, from one ``gapless migrate lint -o json`` over all of them."""
    out = subprocess.run(
        [*gapless_cli(), "migrate", "lint", "-o", "json", *map(str, paths)],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if out.returncode not in (0, 1):
        raise RuntimeError(f"gapless migrate lint exited {out.returncode}: {out.stderr.strip()}")
    found: dict[Path, list[str]] = {p: [] for p in paths}
    for finding in json.loads(out.stdout or "[]"):
        found[Path(finding["file"])].append(finding["rule"])
    return found


def timed(fn: Callable[[], object], repeat: int) -> float:
    """Median wall time of ``fn`` in milliseconds."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def verdict(rules: list[str] | tuple[str, ...] | frozenset[str]) -> str:
    return "flag" if rules else "pass"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs of each tool over the corpus (median)")
    args = parser.parse_args()

    binary = squawk_binary()
    if binary is None:
        print("squawk is not installed: pip install -e '.[dev]' (squawk-cli)", file=sys.stderr)
        return 2
    version = squawk_version(binary)

    with tempfile.TemporaryDirectory(prefix="lint-compare-") as tmp:
        paths = write_corpus(Path(tmp))
        files = list(paths.values())
        squawk_all = run_squawk(binary, files)
        cli = run_gapless_cli(files)
        gapless = {case.name: [f.rule for f in lint_sql(case.text)] for case in CORPUS}

        texts = [case.text for case in CORPUS]
        t_inprocess = timed(lambda: [lint_sql(t) for t in texts], max(args.repeat, 20))
        t_cli = timed(lambda: run_gapless_cli(files), args.repeat)
        t_squawk = timed(lambda: run_squawk(binary, files), args.repeat)

    rows = []
    stale = []
    style = 0
    for case in CORPUS:
        path = paths[case.name]
        g = gapless[case.name]
        s_all = squawk_all[path]
        s = sorted(set(s_all) - SQUAWK_STYLE_RULES)
        style += sum(1 for r in s_all if r in SQUAWK_STYLE_RULES)
        if cli[path] != g:
            raise RuntimeError(f"{case.name}: the CLI found {cli[path]}, lint_sql {g}")
        if tuple(g) != case.gapless or frozenset(s) != case.squawk:
            stale.append(case.name)
        rows.append((case, g, s))

    expected = {True: "dangerous", False: "safe"}
    print(f"gapless lint vs squawk {version} on {len(CORPUS)} inputs (squawk style rules left out)\n")
    header = ("input", "kind", "expected", "agree", "gapless", "squawk")
    table = [
        (
            case.name,
            case.kind,
            expected[case.dangerous],
            _agreement(case, g, s),
            f"{verdict(g)} {','.join(dict.fromkeys(g))}".strip(),
            f"{verdict(s)} {','.join(s)}".strip(),
        )
        for case, g, s in rows
    ]
    widths = [max(len(str(r[i])) for r in [header, *table]) for i in range(len(header))]
    for r in [header, *table]:
        print("  ".join(str(v).ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())

    dangerous = [(c, g, s) for c, g, s in rows if c.dangerous]
    safe = [(c, g, s) for c, g, s in rows if not c.dangerous]
    print(
        f"\n{len(dangerous)} dangerous inputs: caught by both {sum(1 for _, g, s in dangerous if g and s)}, "
        f"only gapless {sum(1 for _, g, s in dangerous if g and not s)}, "
        f"only squawk {sum(1 for _, g, s in dangerous if s and not g)}, "
        f"missed by both {sum(1 for _, g, s in dangerous if not g and not s)}"
    )
    print(
        f"{len(safe)} safe inputs: false positives of gapless {sum(1 for _, g, _ in safe if g)}, "
        f"of squawk {sum(1 for _, _, s in safe if s)}; "
        f"squawk style findings left out: {style}"
    )
    print(
        f"time for the whole corpus (median): gapless in-process {t_inprocess:.2f} ms, "
        f"gapless CLI {t_cli:.0f} ms, squawk CLI {t_squawk:.0f} ms"
    )
    if stale:
        print(
            f"\nthe corpus's recorded results are out of date for: {', '.join(stale)} "
            "(tests/migrations/test_lint_squawk.py fails too)",
            file=sys.stderr,
        )
        return 1
    return 0


def _agreement(case: Case, g: list[str], s: list[str]) -> str:
    if bool(g) == bool(s):
        return "yes" if bool(g) == case.dangerous else "yes (both wrong)"
    return "no: gapless right" if bool(g) == case.dangerous else "no: squawk right"


if __name__ == "__main__":
    raise SystemExit(main())
