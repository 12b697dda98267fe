"""Build a Lambda deployment zip: ``python -m sdq_infra.package <service>``.

The zip holds services/<name>/src, the src of every sdq library under libs/ the service depends
on (directly or through another library: sdq-contracts, sdq-observability) and their third-party
dependencies as Lambda's platform needs them (manylinux2014 x86_64 wheels for CPython 3.11,
binary only), at the versions pinned in constraints.txt. The same inputs give the same bytes:
entries are sorted, timestamps and permissions fixed, bytecode left out.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from sdq_infra.console import complain, say
from sdq_infra.options import InfraError, find_repo_root

LAMBDA_SERVICES = ("api_validator", "model_sync")
LAMBDA_PLATFORM = "x86_64-manylinux2014"
LAMBDA_PYTHON = "3.11"
FIXED_TIME = (1980, 1, 1, 0, 0, 0)
SKIP_DIRS = frozenset({"__pycache__", ".pytest_cache", ".mypy_cache"})
SKIP_SUFFIXES = (".pyc", ".pyo")
# uv's lock file and console scripts (their shebangs name the build machine's interpreter).
SKIP_TOP_LEVEL = frozenset({".lock", "bin"})
FIRST_PARTY = re.compile(r"^sdq[-_]")


@dataclass(frozen=True)
class BuiltZip:
    path: Path
    sha256_b64: str
    files: int


def requirement_name(requirement: str) -> str:
    return re.split(r"[\s<>=!~;\[]", requirement, maxsplit=1)[0]


def third_party_requirements(pyprojects: list[Path]) -> list[str]:
    """Dependencies of the given projects that are not sdq's own packages, deduplicated."""
    found: dict[str, str] = {}
    for pyproject in pyprojects:
        project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
        for requirement in project.get("dependencies", []):
            name = requirement_name(requirement)
            if not FIRST_PARTY.match(name):
                found.setdefault(name.lower(), requirement)
    return sorted(found.values())


def first_party_libraries(pyproject: Path, repo_root: Path) -> list[Path]:
    """The folders under libs/ of the sdq libraries ``pyproject`` depends on, directly or
    through another library, in a stable order; InfraError for an sdq package with no folder."""
    libraries = {
        tomllib.loads(p.read_text(encoding="utf-8"))["project"]["name"]: p.parent
        for p in sorted((repo_root / "libs").glob("*/pyproject.toml"))
    }
    found: dict[str, Path] = {}
    pending = [pyproject]
    while pending:
        project = tomllib.loads(pending.pop().read_text(encoding="utf-8"))["project"]
        for requirement in project.get("dependencies", []):
            name = requirement_name(requirement)
            if not FIRST_PARTY.match(name) or name in found:
                continue
            if name not in libraries:
                raise InfraError(f"{pyproject} depends on {name}, which is not a library in libs/")
            found[name] = libraries[name]
            pending.append(libraries[name] / "pyproject.toml")
    return [found[name] for name in sorted(found)]


def install_dependencies(requirements: list[str], target: Path, constraints: Path) -> None:
    if not requirements:
        return
    uv = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    if uv is None:
        raise InfraError("uv is not installed in the workspace venv: run `make setup`")
    command = [
        uv, "pip", "install", "--quiet",
        "--target", str(target),
        "--python-platform", LAMBDA_PLATFORM,
        "--python-version", LAMBDA_PYTHON,
        "--only-binary", ":all:",
        "--constraint", str(constraints),
        *requirements,
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
    if result.returncode != 0:
        raise InfraError(f"installing {requirements} for Lambda failed:\n{result.stderr.strip()}")


def copy_packages(src: Path, target: Path) -> None:
    for package in sorted(src.iterdir()):
        if package.is_dir() and package.name not in SKIP_DIRS:
            shutil.copytree(package, target / package.name, dirs_exist_ok=True)


def _entries(root: Path) -> Iterator[Path]:
    for path in sorted(root.rglob("*"), key=lambda item: item.relative_to(root).as_posix()):
        relative = path.relative_to(root)
        if relative.parts[0] in SKIP_TOP_LEVEL or path.suffix in SKIP_SUFFIXES:
            continue
        if any(part in SKIP_DIRS for part in relative.parts):
            continue
        if path.is_file():
            yield path


def write_zip(root: Path, destination: Path) -> int:
    """Zip ``root`` deterministically; returns the number of files."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_suffix(".zip.partial")
    count = 0
    with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
        for path in _entries(root):
            info = zipfile.ZipInfo(path.relative_to(root).as_posix(), date_time=FIXED_TIME)
            mode = 0o755 if path.stat().st_mode & 0o111 else 0o644
            info.external_attr = (0o100000 | mode) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, path.read_bytes(), compresslevel=6)
            count += 1
    partial.replace(destination)
    return count


def build(service: str, repo_root: Path, out_dir: Path) -> BuiltZip:
    service_dir = repo_root / "services" / service
    if not (service_dir / "pyproject.toml").is_file():
        raise InfraError(f"no service {service!r}: {service_dir / 'pyproject.toml'} is missing")
    libraries = first_party_libraries(service_dir / "pyproject.toml", repo_root)
    requirements = third_party_requirements(
        [service_dir / "pyproject.toml", *(lib / "pyproject.toml" for lib in libraries)]
    )
    with tempfile.TemporaryDirectory(prefix=f"sdq-lambda-{service}-") as tmp:
        staging = Path(tmp) / "root"
        staging.mkdir()
        install_dependencies(requirements, staging, repo_root / "constraints.txt")
        for library in libraries:
            copy_packages(library / "src", staging)
        copy_packages(service_dir / "src", staging)
        destination = out_dir / f"{service}.zip"
        files = write_zip(staging, destination)
    digest = base64.b64encode(hashlib.sha256(destination.read_bytes()).digest()).decode()
    return BuiltZip(destination, digest, files)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sdq_infra.package", description=__doc__)
    parser.add_argument("services", nargs="+", choices=LAMBDA_SERVICES, metavar="SERVICE")
    parser.add_argument("--out", type=Path, help="output directory (default: build/lambda)")
    args = parser.parse_args(argv)
    try:
        root = find_repo_root()
        out_dir = args.out or root / "build" / "lambda"
        for service in args.services:
            built = build(service, root, out_dir)
            size_mb = built.path.stat().st_size / 1e6
            say(f"{built.path}  {size_mb:.1f} MB  {built.files} files  sha256={built.sha256_b64}")
    except InfraError as exc:
        complain(f"error: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
