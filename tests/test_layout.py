"""The layout's promises, read from the source: what a camera installs never imports the
server at module level, and the quality model's core never imports the camera."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SERVER = ("vault", "fastapi", "uvicorn", "alembic", "apscheduler", "psycopg", "Crypto", "dlib")


def module_level_imports(path: Path) -> set[str]:
    """Top-level packages imported at module level (not inside functions: those run only on
    the path that needs them, e.g. a capture writing straight into a vault database)."""
    tree = ast.parse(path.read_text())
    found = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def test_camera_package_does_not_import_the_server():
    files = sorted((ROOT / "escrow").rglob("*.py"))
    assert len(files) > 15
    bad = {
        str(p.relative_to(ROOT)): sorted(module_level_imports(p) & set(SERVER))
        for p in files
        if module_level_imports(p) & set(SERVER)
    }
    assert bad == {}


def test_quality_model_core_does_not_import_the_camera():
    core = [ROOT / "vae" / f"{name}.py" for name in ("model", "train", "score", "data", "framing")]
    assert all(p.exists() for p in core)
    assert {p.name: sorted(module_level_imports(p) & {"escrow", "vault"}) for p in core} == {
        p.name: [] for p in core
    }
