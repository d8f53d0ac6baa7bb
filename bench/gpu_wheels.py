"""Wheels of braincode's dependencies for a GPU machine that reaches no package registry (``bench/gpu.sh``).

``prepare`` (on a machine with a registry): ``pip download`` for Python 3.12, binary wheels only, into ``.whl/``,
leaving out what the GPU machine brings with its torch, triton, timm and transformers, and the packages' own
test suites (:func:`slim`), at most 64 MiB in all:
groups of wheels are kept in order of need and a group that would pass the limit is left out (and named in
``.whl/manifest.json``, so that the section needing it reports what is missing).
``install`` (on the GPU machine): installs, without any index, the wheels whose distribution is not installed
there, into ``.whl/site`` (``bench/gpu.sh`` puts it on ``PYTHONPATH``).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WHEELS = ROOT / ".whl"
LIMIT = 64 * 2**20
#: Requirements in order of need: importing braincode, the Triton tests, the ridge peer, BrainDiVE.
GROUPS = {
    "core": ["scipy", "scikit-learn", "pandas", "nibabel", "h5py", "psutil"],
    "tests": ["pytest"],
    "ridge": ["himalaya"],
    "dive": ["diffusers"],
}
#: Distributions the GPU machine has with its torch, triton, timm and transformers (and pytest's optional
#: syntax highlighter): not shipped.
PROVIDED = {
    "numpy", "pillow", "pyyaml", "huggingface-hub", "safetensors", "tokenizers", "regex", "requests", "tqdm",
    "packaging", "filelock", "jinja2", "markupsafe", "sympy", "mpmath", "networkx", "fsspec", "typing-extensions",
    "torch", "torchvision", "triton", "timm", "transformers", "certifi", "charset-normalizer", "idna", "urllib3",
    "hf-xet", "anyio", "sniffio", "httpx", "httpx2", "httpcore", "httpcore2", "h11", "click", "truststore",
    "shellingham", "typer", "rich", "markdown-it-py", "mdurl", "pygments", "setuptools",
}


def dist_name(wheel: Path) -> str:
    """The normalised distribution name of a wheel file (``scikit_learn-1.9-...whl`` -> ``scikit-learn``)."""
    return re.sub(r"[-_.]+", "-", wheel.name.split("-")[0]).lower()


def slim(wheel: Path) -> None:
    """Rewrite ``wheel`` without its packages' ``tests/`` folders (and their lines in ``RECORD``): a tenth of
    scipy, pandas, scikit-learn and nibabel, which the benchmarks never import."""
    with zipfile.ZipFile(wheel) as src:
        names = [n for n in src.namelist() if "/tests/" not in n]
        if len(names) == len(src.namelist()):
            return
        tmp = wheel.with_suffix(".tmp")
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as dst:
            for name in names:
                data = src.read(name)
                if name.endswith(".dist-info/RECORD"):
                    data = b"".join(line for line in data.splitlines(keepends=True) if b"/tests/" not in line)
                dst.writestr(src.getinfo(name), data)
    tmp.replace(wheel)


def prepare(python_version: str = "3.12") -> dict:
    """Fill ``.whl/`` (emptied first) and write ``.whl/manifest.json``; returns the manifest."""
    shutil.rmtree(WHEELS, ignore_errors=True)
    WHEELS.mkdir()
    kept, dropped, seen, total = {}, {}, set(), 0
    for group, requirements in GROUPS.items():
        tmp = WHEELS / f".{group}"
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--python-version", python_version,
                        "--only-binary=:all:", "-d", str(tmp), *requirements], check=True)
        files = [f for f in sorted(tmp.glob("*.whl")) if dist_name(f) not in PROVIDED | seen]
        for f in files:
            slim(f)
        size = sum(f.stat().st_size for f in files)
        if total + size > LIMIT:
            dropped[group] = {"requirements": requirements, "mib": round(size / 2**20, 1)}
        else:
            for f in files:
                shutil.move(str(f), WHEELS / f.name)
            seen |= {dist_name(f) for f in files}
            total += size
            kept[group] = [f.name for f in files]
        shutil.rmtree(tmp)
    manifest = {"python": python_version, "mib": round(total / 2**20, 1), "limit_mib": LIMIT / 2**20,
                "groups": kept, "dropped": dropped, "provided_by_the_gpu_machine": sorted(PROVIDED)}
    (WHEELS / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return manifest


def install() -> list[str]:
    """Install the wheels of ``.whl/`` whose distributions are missing here into ``.whl/site``; returns them."""
    installed = {re.sub(r"[-_.]+", "-", d.metadata["Name"]).lower() for d in metadata.distributions()}
    missing = [f for f in sorted(WHEELS.glob("*.whl")) if dist_name(f) not in installed]
    if missing:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--upgrade",
                        "--target", str(WHEELS / "site"), *map(str, missing)], check=True)
    return [f.name for f in missing]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("action", choices=["prepare", "install"])
    args = p.parse_args()
    if args.action == "prepare":
        manifest = prepare()
        print(f"{WHEELS}: {manifest['mib']} MiB, groups {list(manifest['groups'])}"
              + (f"; left out (over {LIMIT // 2**20} MiB): {list(manifest['dropped'])}" if manifest["dropped"] else ""))
    else:
        print("installed from .whl/: " + (", ".join(install()) or "nothing (all present)"))


if __name__ == "__main__":
    main()
