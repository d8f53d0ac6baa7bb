"""The wheel transport of ``bench/gpu.sh``: slimmed wheels still install with pip and import."""

import base64
import hashlib
import importlib.util
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("gpu_wheels", ROOT / "bench" / "gpu_wheels.py")
gpu_wheels = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gpu_wheels)


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}\n"


def _toy_wheel(folder: Path) -> Path:
    files = {
        "toypkg/__init__.py": b"VALUE = 42\n",
        "toypkg/tests/__init__.py": b"",
        "toypkg/tests/test_big.py": b"x = 1\n" * 1000,
        "toypkg-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: toypkg\nVersion: 1.0\n",
        "toypkg-1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(_record_line(n, d) for n, d in files.items()) + "toypkg-1.0.dist-info/RECORD,,\n"
    path = folder / "toypkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
        z.writestr("toypkg-1.0.dist-info/RECORD", record)
    return path


def test_slim_wheel_drops_tests_and_still_installs(tmp_path):
    wheel = _toy_wheel(tmp_path)
    assert gpu_wheels.dist_name(wheel) == "toypkg"
    gpu_wheels.slim(wheel)
    names = zipfile.ZipFile(wheel).namelist()
    assert "toypkg/__init__.py" in names and not [n for n in names if "/tests/" in n]
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--target", str(target),
                    str(wheel)], check=True)
    done = subprocess.run([sys.executable, "-c", "import toypkg; print(toypkg.VALUE)"], env={"PYTHONPATH": str(target)},
                          capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "42" and not (target / "toypkg" / "tests").exists()
