"""``bench/gpu.sh --smoke``: the GPU check's every section at tiny sizes on the CPU (Triton interpreted)."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_gpu_check_smoke_version_writes_one_json_with_every_section(tmp_path):
    out = tmp_path / "gpu.json"
    env = {**os.environ, "PYTHON": sys.executable}
    env.pop("TRITON_INTERPRET", None)
    done = subprocess.run(["bash", str(ROOT / "bench" / "gpu.sh"), "--smoke", "--out", str(out)], env=env,
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    sections = result["sections"]
    assert result["smoke"] and set(sections) == {"triton_tests", "attention", "ridge", "features", "dive"}
    assert {name: s["status"] for name, s in sections.items()} == dict.fromkeys(sections, "ok"), sections
    tests = sections["triton_tests"]
    assert tests["interpreted"] and tests["passed"] >= 3 and "failed" not in tests
    (line,) = sections["attention"]["lines"]
    assert set(line["time_s"]) == {"chunked", "sdpa", "reference", "triton"}
    (case,) = sections["ridge"]["cases"]
    assert case["share_alpha_differs"] < 0.2 and case["max_rel_pred_diff"] < 1e-3  # braincode agrees with himalaya
    assert sections["features"]["images_per_s"] > 0 and sections["features"]["layers"]["pooled"][0] == 8
    (run,) = sections["dive"]["runs"]
    assert run["s_per_image"] > 0 and sections["dive"]["steps"] == 2
