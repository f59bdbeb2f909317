"""The wheel carries the Alembic migrations, and an installed vault migrates a fresh
database without a checkout (no alembic.ini, no migrations/ beside it)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.conftest import copy_sources

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_ships_migrations_and_upgrades_outside_the_checkout(tmp_path):
    src = copy_sources(tmp_path)
    dist = tmp_path / "dist"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(dist), str(src)],
        check=True,
        cwd=tmp_path,
    )
    (wheel,) = dist.glob("keyframe_escrow-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    versions = sorted(p.name for p in (ROOT / "migrations" / "versions").glob("*.py"))
    assert versions
    for name in ("__init__.py", "env.py", "script.py.mako"):
        assert f"migrations/{name}" in names
    for name in versions:
        assert f"migrations/versions/{name}" in names
    # the console's templates and stylesheet: `escrow serve` renders them from the package
    console = ROOT / "vault" / "console"
    for f in [*console.glob("templates/*.html"), *console.glob("static/*")]:
        assert f"vault/console/{f.relative_to(console)}" in names
    assert "vault/console/templates/base.html" in names

    site = tmp_path / "site"
    subprocess.run(
        [*pip, "install", "--no-deps", "--no-compile", "--target", str(site), str(wheel)],
        check=True,
        cwd=tmp_path,
    )
    # The migrations are found as a package wherever it is installed, not as a folder beside
    # vault/: here they sit in a sys.path entry of their own.
    apart = tmp_path / "apart"
    apart.mkdir()
    shutil.move(site / "migrations", apart / "migrations")
    run = tmp_path / "run"
    run.mkdir()
    db = run / "vault.db"
    script = (
        "import sys, migrations, vault.db\n"
        "from sqlalchemy import create_engine, inspect\n"
        "print(vault.db.__file__)\n"
        "print(migrations.__file__)\n"
        "vault.db.upgrade(sys.argv[1])\n"
        "print(sorted(inspect(create_engine(sys.argv[1])).get_table_names()))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("ESCROW_")}
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(apart)])
    done = subprocess.run(
        [sys.executable, "-c", script, f"sqlite:///{db}"],
        cwd=run,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout.splitlines()
    assert Path(out[0]).resolve().is_relative_to(site.resolve())  # not the checkout's
    assert Path(out[1]).resolve().is_relative_to(apart.resolve())
    tables = out[2]
    for table in ("alembic_version", "audit_log", "sealed_records", "warrants"):
        assert f"'{table}'" in tables
