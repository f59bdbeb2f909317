"""A short atheris run of every parser of untrusted bytes (benchmarks/fuzz.py: the benchmark
runs 10^6 inputs of each), and the inputs that crashed a parser once, each now answered with
that parser's own error."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("atheris")

ROOT = Path(__file__).resolve().parents[1]
TARGETS = ("wire", "keyring", "policy", "trustee", "review", "shares", "checkpoint", "proof")
RUNS = 3000


@pytest.mark.parametrize("target", TARGETS)
def test_a_short_coverage_guided_run_crashes_nothing(target, tmp_path):
    # each run its own work folder: a run of `shares` rewrites the throwaway key store's
    # files with what it is fed; the interpreter with torch imported is over libFuzzer's
    # default 2 GiB memory limit on some machines, so the limit is the machine's
    r = subprocess.run(
        [
            sys.executable,
            "benchmarks/fuzz.py",
            target,
            f"-runs={RUNS}",
            "-seed=26",
            "-rss_limit_mb=8192",
        ],
        cwd=ROOT,
        env={**os.environ, "KF_FUZZ_WORK": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    err = r.stderr
    assert r.returncode == 0, err[err.find("=== Uncaught") :][:3000] or err[-3000:]
    assert f"Done {RUNS} runs" in err


@pytest.fixture(scope="module")
def fuzz(tmp_path_factory):
    os.environ["KF_FUZZ_WORK"] = str(tmp_path_factory.mktemp("fuzz"))
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import fuzz as module
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
        del os.environ["KF_FUZZ_WORK"]
    return module


def _keyring_with(fuzz, **change) -> bytes:
    ring = json.loads(fuzz.keyring_seeds()[0])
    ring["epochs"][0].update(change)
    return json.dumps(ring).encode()


def test_inputs_that_once_crashed_a_parser(fuzz):
    """Found by the fuzzer: a certificate time that is no time (ValueError deep in the
        camera's key lookup), a policy file that is not UTF-8 or names a duration longer than
    a timedelta holds (found after 10^5 inputs), an empty shares file, a trustee
        key file that is a JSON number, a proof without its path, a review of the wrong shape."""
    cases = [
        ("keyring", _keyring_with(fuzz, not_after="2026-12-01T00:00:60+00:00")),
        ("keyring", _keyring_with(fuzz, not_before=7)),
        ("keyring", _keyring_with(fuzz, public_key="not base64!")),
        ("policy", (ROOT / "policies" / "default.toml").read_bytes() + b"\n# \xf6\n"),
        ("policy", b'[retention]\ndefault = "99999999999999999999d"\n'),  # OverflowError
        ("shares", b""),
        ("shares", b'{"sealed_shares": [1], "share_digests": {}}'),
        ("trustee", b"3"),
        ("proof", json.dumps({**json.loads(fuzz.proof_seeds()[0]), "proof": None}).encode()),
        ("proof", json.dumps({**json.loads(fuzz.proof_seeds()[0]), "leaf_index": "3"}).encode()),
        ("review", json.dumps({**json.loads(fuzz.review_seeds()[0]), "keys": [7]}).encode()),
        ("review", b"[]"),
    ]
    for name, data in cases:
        fuzz.TARGETS[name][1](data)  # only the parser's own error, caught by the target
    # and the seeds still parse all the way (the targets reach the deep end)
    for name, (seeds, _) in fuzz.TARGETS.items():
        assert seeds(), name
    from escrow.keyring import CameraKeyring

    ring = CameraKeyring.from_dict(json.loads(fuzz.keyring_seeds()[0]))
    assert ring.certs and base64.b64decode(ring.certs[0].public_key)
