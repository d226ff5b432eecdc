"""``make bench``: run every scripts/bench/*.py, collect their JSON into bench/results.json and a Markdown table.

    python scripts/bench/_run_all.py [--out bench] [--budget-s 840] [--only NAME ...]

Scripts are discovered (files starting with ``_`` are helpers and skipped), so a new benchmark joins by being
added. A script that accepts ``--quick`` gets it (its reduced budget; the table says which budget ran). Each runs
in its own process under a time limit drawn from one overall budget; a failing or timed-out script is recorded
with its error and the others still run. The table is generic: every timing entry (a dict with ``steps_per_sec``
or ``samples_per_sec``, whose ``first_call_s`` is compile plus one run) and every quality number (W2, energy
distance, NLL, bits/dim, MMD, BW-UVP, FLOP fraction) found in a script's JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
QUALITY = re.compile(r"(w2|energy_distance|nll|bits_per_dim|mmd|bw_uvp|fraction_of_peak|exponent)", re.I)
PER_SCRIPT_MAX_S = 300


def discover(only: list[str] | None) -> list[Path]:
    scripts = sorted(p for p in HERE.glob("*.py") if not p.name.startswith("_"))
    return [p for p in scripts if not only or p.stem in only]


def run_one(script: Path, limit_s: float) -> dict:
    flags = ["--quick"] if "--quick" in script.read_text() else []
    entry = {"budget": " ".join(flags) or "full", "limit_s": round(limit_s)}
    t0 = time.perf_counter()
    try:
        out = subprocess.run(
            [sys.executable, str(script), *flags], capture_output=True, text=True, timeout=limit_s, cwd=HERE.parents[1]
        )
    except subprocess.TimeoutExpired:
        return {**entry, "seconds": time.perf_counter() - t0, "error": f"timed out after {limit_s:.0f} s"}
    entry["seconds"] = time.perf_counter() - t0
    if out.returncode != 0:
        tail = out.stderr.strip().splitlines()[-3:]
        return {**entry, "error": f"exit code {out.returncode}: " + " | ".join(tail)}
    try:
        entry["result"] = json.loads(out.stdout)
    except json.JSONDecodeError as err:
        entry["error"] = f"output is not JSON: {err}"
    return entry


def walk(obj, path=()):
    """Yield ``(path, value)`` for every dict and number in a JSON tree."""
    yield path, obj
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from walk(v, (*path, str(k)))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            label = str(i)
            for name in ("batch", "steps_per_call", "dim"):  # name list entries by what tells them apart
                if isinstance(v, dict) and name in v:
                    label = f"{name}={v[name]}"
                    break
            yield from walk(v, (*path, label))


def fmt(x) -> str:
    if not isinstance(x, (int, float)) or isinstance(x, bool):
        return "-" if x is None else str(x)
    return f"{x:.3g}" if abs(x) < 1000 else f"{x:,.0f}"


def timing_rows(name: str, result: dict) -> list[str]:
    rows = []
    for path, node in walk(result):
        if isinstance(node, dict) and ("steps_per_sec" in node or "samples_per_sec" in node):
            rows.append(
                f"| {name} | {'.'.join(path) or '-'} | {fmt(node.get('steps_per_sec'))} | "
                f"{fmt(node.get('samples_per_sec'))} | {fmt(node.get('first_call_s'))} |"
            )
    return rows


def quality_rows(name: str, result: dict) -> list[str]:
    return [
        f"| {name} | {'.'.join(path)} | {fmt(v)} |"
        for path, v in walk(result)
        if path
        and isinstance(v, (int, float))
        and not isinstance(v, bool)
        and QUALITY.search(path[-1])
        and "curve" not in path  # learning curves stay in the JSON; the table keeps final values
    ]


def markdown(results: dict) -> str:
    m = results["machine"]
    lines = [
        f"Machine: {m.get('cpu_count')} CPU cores, {m.get('machine')}, {m.get('device')}, JAX {m.get('jax')}; load "
        f"average at start {results['load_avg_start'][0]:.1f}, at end {results['load_avg_end'][0]:.1f} (other "
        f"processes share the cores); {results['wall_s']:.0f} s in all.",
        "",
        "| script | budget | wall s | status |",
        "| --- | --- | ---: | --- |",
    ]
    for name, e in results["scripts"].items():
        status = "ok" if "result" in e else e.get("error", "?").replace("|", "/")
        lines.append(f"| {name} | {e['budget']} | {fmt(e.get('seconds'))} | {status} |")
    lines += ["", "| script | entry | training steps/s | samples/s | first call (compile + run), s |",
              "| --- | --- | ---: | ---: | ---: |"]  # fmt: skip
    for name, e in results["scripts"].items():
        lines += timing_rows(name, e.get("result", {}))
    lines += ["", "| script | quality | value |", "| --- | --- | ---: |"]
    for name, e in results["scripts"].items():
        lines += quality_rows(name, e.get("result", {}))
    return "\n".join(lines) + "\n"


def main() -> dict:
    p = argparse.ArgumentParser()
    p.add_argument("--out", default="bench", help="folder for results.json and results.md")
    p.add_argument("--budget-s", type=float, default=840.0, help="overall time budget in seconds")
    p.add_argument("--only", nargs="*", help="script names (without .py) to run")
    args = p.parse_args()
    sys.path.insert(0, str(HERE))
    from _timing import machine

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0, load_start = time.perf_counter(), list(os.getloadavg())
    scripts, entries = discover(args.only), {}
    for i, script in enumerate(scripts):
        left = args.budget_s - (time.perf_counter() - t0)
        share = left / (len(scripts) - i)  # an even share of what is left; unused time passes to later scripts
        limit = min(PER_SCRIPT_MAX_S, max(1.5 * share, 30.0), left)
        if left < 30:
            entries[script.stem] = {"budget": "-", "error": "not run: the overall budget was spent"}
            continue
        print(f"[bench] {script.name} (limit {limit:.0f} s)", file=sys.stderr, flush=True)
        entries[script.stem] = run_one(script, limit)
        print(f"[bench] {script.name}: {entries[script.stem].get('error', 'ok')}", file=sys.stderr, flush=True)
    results = {
        "machine": machine(),
        "load_avg_start": load_start,
        "load_avg_end": list(os.getloadavg()),
        "wall_s": time.perf_counter() - t0,
        "scripts": entries,
    }
    (out / "results.json").write_text(json.dumps(results, indent=2))
    (out / "results.md").write_text(markdown(results))
    print(markdown(results))
    return results


if __name__ == "__main__":
    from genflow._blas import single_threaded_lapack

    single_threaded_lapack()  # an entry point sets it, before JAX first loads LAPACK (genflow/_blas.py)
    main()
