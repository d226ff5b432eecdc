"""Load a script under scripts/ as a module, and run a figure script at its QUICK budget."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FIGURES = ROOT / "scripts/figures"


def load_script(path: Path, name: str | None = None):
    """Import ``path`` as module ``name`` (its stem by default).

    Its folder goes on ``sys.path`` (scripts import private siblings such as ``_bridges_common``), and the module
    goes into ``sys.modules`` (dataclasses, and so equinox modules defined in a script, look their module up there).
    """
    if str(path.parent) not in sys.path:
        sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location(name or path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def load_figure(name: str):
    """Import ``scripts/figures/<name>.py`` (see :func:`load_script`)."""
    return load_script(FIGURES / f"{name}.py")


def run_quick(name: str, out: Path, timeout: float, *args: str, result: str = "numbers.json") -> dict:
    """Run ``scripts/figures/<name>.py --quick --out out [args]`` in a subprocess; return its ``result`` JSON."""
    # This checkout's experiments package (the scripts import it), whatever the editable install points at.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    subprocess.run([sys.executable, str(FIGURES / f"{name}.py"), "--quick", "--out", str(out), *args], check=True,
                   timeout=timeout, env=env)  # fmt: skip
    return json.loads((out / result).read_text())
