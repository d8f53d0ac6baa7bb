"""The README's Python example runs as shown."""

import os
import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_example_runs_as_shown(tmp_path):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)
    assert len(blocks) == 1
    (tmp_path / "example.py").write_text(blocks[0])
    done = subprocess.run([sys.executable, "example.py"], cwd=tmp_path, capture_output=True, text=True, timeout=900,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", "BRAINCODE_PROGRESS": "0"}, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "unique_r2_text" in done.stdout and "FFA-1" in done.stdout and "cross-validated" in done.stdout
