"""Bearer tokens: one role each, stored only as hashes, revocable at once, expiring, and for
judges, trustees and auditors signed by the escrow authority."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from vault import tokens
from vault.db import make_engine, session_factory
from vault.models import ApiToken

T = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
AUTHORITY = Ed25519PrivateKey.generate()
KEY = AUTHORITY.public_key()


@pytest.fixture
def factory(db_url):
    eng = make_engine(db_url)
    yield session_factory(eng)
    eng.dispose()


def test_create_authenticate_revoke(db_url):
    eng = make_engine(db_url)
    factory = session_factory(eng)
    tid, tok = tokens.create(factory, "judge", "Judge Rinder", T, signer=AUTHORITY)
    assert tokens.authenticate(factory, tok, T, KEY).role == "judge"
    with pytest.raises(tokens.Unauthorized):
        tokens.authenticate(factory, tok + "x", T, KEY)
    with pytest.raises(ValueError, match="unknown role"):
        tokens.create(factory, "root", "x", T)
    with eng.connect() as c:  # only the hash is at rest
        rows = [tuple(map(str, r)) for r in c.execute(sa.text("SELECT * FROM api_tokens"))]
    assert rows and not any(tok in v or tok[4:] in v for r in rows for v in r)
    assert tokens.revoke(factory, tid, T) and not tokens.revoke(factory, tid, T)
    with pytest.raises(tokens.Unauthorized, match="unknown or revoked"):
        tokens.authenticate(factory, tok, T, KEY)
    eng.dispose()


def test_tokens_expire_by_role_or_as_told(factory):
    _, cam = tokens.create(factory, "camera", "cam-1", T)
    _, inv = tokens.create(factory, "investigator", "Det. Vance", T)
    _, adm = tokens.create(factory, "admin", "Admin", T)
    _, aud = tokens.create(factory, "auditor", "DPO", T, signer=AUTHORITY)
    _, short = tokens.create(factory, "investigator", "Temp", T, expires=timedelta(days=30))
    rows = {r.name: r for r in tokens.list_tokens(factory)}
    assert tokens.expiry(rows["cam-1"]) == T + tokens.LIFETIME["camera"] == T + timedelta(365)
    assert tokens.expiry(rows["Admin"]) == T + tokens.DEFAULT_LIFETIME == T + timedelta(90)
    assert tokens.expiry(rows["Temp"]) == T + timedelta(days=30)

    def valid_at(tok: str, t: datetime) -> bool:
        try:
            tokens.authenticate(factory, tok, t, KEY)
        except tokens.Unauthorized as exc:
            assert str(exc) == "token expired" and exc.token_id
            return False
        return True

    day90, day365 = T + timedelta(days=90), T + timedelta(days=365)
    assert valid_at(short, T + timedelta(days=29)) and not valid_at(short, T + timedelta(days=30))
    for tok in (inv, adm, aud):
        assert valid_at(tok, day90 - timedelta(seconds=1)) and not valid_at(tok, day90)
    assert valid_at(cam, day365 - timedelta(seconds=1)) and not valid_at(cam, day365)
    with pytest.raises(ValueError, match="positive"):
        tokens.create(factory, "camera", "cam-2", T, expires=timedelta(0))


def test_a_row_without_an_expiry_lives_its_roles_default_from_creation(factory):
    """Rows made before expiries were recorded do not live for ever."""
    tid, tok = tokens.create(factory, "camera", "old-cam", T)
    with factory.begin() as s:
        s.get(ApiToken, tid).expires_at = None
    tokens.authenticate(factory, tok, T + timedelta(days=364), None)
    with pytest.raises(tokens.Unauthorized, match="expired"):
        tokens.authenticate(factory, tok, T + timedelta(days=365), None)


@pytest.mark.parametrize("role", tokens.PRIVILEGED)
def test_privileged_tokens_need_the_authority(factory, role):
    index = 1 if role == "trustee" else None
    with pytest.raises(ValueError, match="escrow authority"):
        tokens.create(factory, role, "Mallory", T, trustee_index=index)
    assert tokens.list_tokens(factory) == []
    _, tok = tokens.create(factory, role, "Ito", T, trustee_index=index, signer=AUTHORITY)
    row = tokens.authenticate(factory, tok, T, KEY)
    assert row.role == role and row.signature and tokens.issued_by_authority(row, KEY)
    # another authority's key, or none, does not vouch for it
    for key in (Ed25519PrivateKey.generate().public_key(), None):
        with pytest.raises(tokens.Unauthorized, match="not issued by the escrow authority"):
            tokens.authenticate(factory, tok, T, key)
    # the signature covers the role, name, index, expiry and hash: any edit breaks it
    tid = row.id
    for col, value in [
        ("name", "Judge Ito"),
        ("role", "judge" if role != "judge" else "auditor"),
        ("trustee_index", 2 if role == "trustee" else 1),
        ("expires_at", T + timedelta(days=3650)),
    ]:
        with factory.begin() as s:
            r = s.get(ApiToken, tid)
            old, _ = getattr(r, col), setattr(r, col, value)
        with pytest.raises(tokens.Unauthorized, match="not issued"):
            tokens.authenticate(factory, tok, T, KEY)
        with factory.begin() as s:
            setattr(s.get(ApiToken, tid), col, old)
        assert tokens.authenticate(factory, tok, T, KEY).id == tid


def test_others_need_no_signature(factory):
    for role in ("camera", "investigator", "admin"):
        _, tok = tokens.create(factory, role, role, T)
        assert tokens.authenticate(factory, tok, T, None).role == role


def test_a_trustee_token_carries_its_share_index(factory):
    with pytest.raises(ValueError, match="needs its trustee index"):
        tokens.create(factory, "trustee", "Trustee A", T, signer=AUTHORITY)
    for bad in (0, -1, 256):
        with pytest.raises(ValueError, match="not one of 1..255"):
            tokens.create(factory, "trustee", "A", T, trustee_index=bad, signer=AUTHORITY)
    with pytest.raises(ValueError, match="not one of 1..3"):
        tokens.create(factory, "trustee", "D", T, trustee_index=4, signer=AUTHORITY, trustees=3)
    with pytest.raises(ValueError, match="only a trustee"):
        tokens.create(factory, "judge", "J", T, trustee_index=1, signer=AUTHORITY)
    assert tokens.list_tokens(factory) == []
    _, tok = tokens.create(factory, "trustee", "B", T, trustee_index=2, signer=AUTHORITY)
    assert tokens.authenticate(factory, tok, T, KEY).trustee_index == 2


def test_models_match_migrations(db_url):
    """Every table and column of vault.models exists through Alembic migrations alone."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from vault.models import Base

    eng = make_engine(db_url)
    with eng.connect() as c:
        diff = compare_metadata(MigrationContext.configure(c), Base.metadata)
    eng.dispose()
    assert diff == []


def _cli(tmp_path):
    env = {
        **os.environ,
        "ESCROW_DATABASE_URL": f"sqlite:///{tmp_path / 'v.db'}",
        "ESCROW_KEYS_DIR": str(tmp_path / "keys"),
    }

    def run(*args):
        cmd = [sys.executable, "-m", "escrow.cli", "tokens", *args]
        return subprocess.run(cmd, capture_output=True, text=True, env=env)

    return run


def test_tokens_cli(tmp_path):
    run = _cli(tmp_path)
    r = run("create", "--role", "camera", "--name", "cam-7", "--expires", "30d")
    assert r.returncode == 0, r.stderr
    tid, tok = r.stdout.split()[1], r.stdout.strip().splitlines()[-1]
    assert tok.startswith("kfe_")
    r = run("create", "--role", "investigator", "--name", "Det. Vance")
    assert r.returncode == 0, r.stderr
    listed = run("list").stdout.splitlines()
    assert listed[0].split() == ["ID", "ROLE", "NAME", "EXPIRES", "(UTC)", "STATE"]
    line = next(x for x in listed if tid in x)
    assert "camera" in line and tok not in "\n".join(listed) and line.endswith("active")
    expires = datetime.strptime(" ".join(line.split()[3:5]), "%Y-%m-%d %H:%M").replace(tzinfo=UTC)
    assert abs(expires - (datetime.now(UTC) + timedelta(days=30))) < timedelta(minutes=5)
    vance = next(x for x in listed if "Det. Vance" in x)
    expires = datetime.strptime(" ".join(vance.split()[4:6]), "%Y-%m-%d %H:%M").replace(tzinfo=UTC)
    assert abs(expires - (datetime.now(UTC) + timedelta(days=90))) < timedelta(minutes=5)
    assert run("revoke", tid).returncode == 0
    assert "revoked" in run("list").stdout
    bad = run("create", "--role", "god", "--name", "x")
    assert bad.returncode == 2 and "unknown role" in bad.stderr
    assert "Traceback" not in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "args,why",
    [
        (["--role", "camera", "--expires", "forever"], "not a positive duration"),
        (["--role", "trustee"], "needs its trustee index"),
        (["--role", "camera", "--trustee-index", "1"], "only a trustee"),
    ],
)
def test_tokens_cli_refuses_bad_options(settings_env, args, why):
    """Refused before anything is made or any key is asked for (UserError: one line, exit 2)."""
    from typer.testing import CliRunner

    from escrow.cli import app
    from escrow.cli.app import UserError

    r = CliRunner().invoke(app, ["tokens", "create", "--name", "x", *args])
    assert isinstance(r.exception, UserError) and why in str(r.exception), r.output
    assert r.exception.code == 2


def test_tokens_cli_privileged_needs_the_authority_signer(tmp_path):
    """Without a key store that can sign, no judge token is made: one line, exit 2."""
    run = _cli(tmp_path)
    r = run("create", "--role", "judge", "--name", "Judge Ito")
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert run("list").stdout.strip().splitlines()[1:] == []  # the header only


@pytest.fixture
def settings_env(tmp_path, monkeypatch):
    """This process's settings pointed at a fresh database and key store; -> the URL."""
    from escrow.settings import get_settings

    url = f"sqlite:///{tmp_path / 'v.db'}"
    monkeypatch.setenv("ESCROW_DATABASE_URL", url)
    monkeypatch.setenv("ESCROW_KEYS_DIR", str(tmp_path / "keys"))
    get_settings.cache_clear()
    yield url
    get_settings.cache_clear()


def test_tokens_cli_signs_privileged_tokens_with_the_authority(tmp_path, monkeypatch, settings_env):
    """`escrow tokens create --role judge|trustee` signs with the authority's key (from the key
    store, under ESCROW_AUTHORITY_PASSPHRASE) and the token it prints authenticates with its
    public half, and only with it."""
    from typer.testing import CliRunner

    from escrow.cli import app
    from escrow.cli.app import UserError
    from tests.conftest import PASSPHRASE, make_authority

    url = settings_env
    ks, _ = make_authority(tmp_path / "keys", T, cameras=())
    monkeypatch.setenv("ESCROW_AUTHORITY_PASSPHRASE", PASSPHRASE)
    runner = CliRunner()
    judge = runner.invoke(app, ["tokens", "create", "--role", "judge", "--name", "Judge Ito"])
    assert judge.exit_code == 0, judge.output
    trustee = runner.invoke(
        app, ["tokens", "create", "--role", "trustee", "--name", "T2", "--trustee-index", "2"]
    )
    assert trustee.exit_code == 0, trustee.output
    past_n = runner.invoke(
        app, ["tokens", "create", "--role", "trustee", "--name", "T4", "--trustee-index", "4"]
    )
    assert isinstance(past_n.exception, UserError) and "not one of 1..3" in str(past_n.exception)
    eng = make_engine(url)
    factory = session_factory(eng)
    now = datetime.now(UTC)
    for out, role in ((judge.output, "judge"), (trustee.output, "trustee")):
        tok = out.strip().splitlines()[-1]
        assert tokens.authenticate(factory, tok, now, ks.authority_public()).role == role
        with pytest.raises(tokens.Unauthorized, match="not issued"):
            tokens.authenticate(factory, tok, now, Ed25519PrivateKey.generate().public_key())
    assert [r.trustee_index for r in tokens.list_tokens(factory)] == [None, 2]
    listed = runner.invoke(app, ["tokens", "list"]).output
    assert "trustee 2" in listed
    eng.dispose()
