"""The README's Python examples run as written and print what the README says they print."""

import contextlib
import io
import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_examples_run():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert len(blocks) >= 2
    namespace, out = {}, io.StringIO()
    with contextlib.redirect_stdout(out):
        for code in blocks:  # later blocks build on names from earlier ones, as a reader's session would
            exec(compile(code, str(README), "exec"), namespace)
    assert "(500, 2) 20 (6, 500, 2)" in out.getvalue()
    assert namespace["si"].denoiser_net is not None
