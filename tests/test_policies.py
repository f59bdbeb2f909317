"""Policy files: the shipped default, per-camera and per-site retention, and clear errors."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta

import pytest

from policies.schema import PolicyError, load_policy, parse_duration


def write(tmp_path, text):
    p = tmp_path / "policy.toml"
    p.write_text(text)
    return p


def test_default_policy():
    p = load_policy()
    assert p.retention.default == timedelta(hours=72)
    assert p.keys.epoch == timedelta(hours=24)
    assert (p.openings.threshold, p.openings.trustees) == (2, 3)


def test_camera_beats_site_beats_default(tmp_path):
    p = load_policy(
        write(
            tmp_path,
            """
[retention]
default = "3d"
[retention.cameras]
lobby = "12h"
[retention.sites.station]
cameras = ["lobby", "platform"]
period = "2w"
""",
        )
    )
    r = p.retention
    assert r.for_camera("lobby") == timedelta(hours=12)
    assert r.for_camera("platform") == timedelta(weeks=2)
    assert r.for_camera("elsewhere") == timedelta(days=3)


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ('[retention]\ndefault = "72 hours"', "retention.default"),
        ('[retention]\ndefault = "0h"', "retention.default"),
        ("[openings]\nthreshold = 4\ntrustees = 3", "exceeds trustees"),
        ('[retention]\ndefualt = "72h"', "retention.defualt"),  # a typo is an error
        (
            '[retention.sites.a]\ncameras = ["x"]\nperiod = "1d"\n'
            '[retention.sites.b]\ncameras = ["x"]\nperiod = "2d"',
            "two sites",
        ),
        ("[sweep\nbatch = 1", "not valid TOML"),
    ],
)
def test_invalid_policies_say_where(tmp_path, text, where):
    with pytest.raises(PolicyError, match="invalid|TOML") as e:
        load_policy(write(tmp_path, text))
    assert where in str(e.value)


def test_durations():
    assert parse_duration("90m") == timedelta(minutes=90)
    assert parse_duration(" 2w ") == timedelta(weeks=2)
    assert parse_duration("45s") == timedelta(seconds=45)  # a soak's sweeper, a demo's
    for bad in ("3 days", "0s", "1.5m", "-5s", "s"):
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_the_trail_names_a_retention_as_the_policy_writes_it():
    from vault.retention import _period

    got = [_period(parse_duration(d)) for d in ("45s", "90s", "120s", "90m", "72h", "2w")]
    assert got == ["45s", "90s", "2m", "90m", "3d", "2w"]


def test_policy_check_command(tmp_path):
    def run(*args):
        cmd = [sys.executable, "-m", "escrow.cli", "policy", "check", *map(str, args)]
        return subprocess.run(cmd, capture_output=True, text=True)

    r = run()
    assert r.returncode == 0 and json.loads(r.stdout)["openings"] == "2-of-3"
    bad = run(write(tmp_path, "[openings]\nthreshold = 5\ntrustees = 3"))
    assert (
        bad.returncode == 2 and "exceeds trustees" in bad.stderr and "Traceback" not in bad.stderr
    )
    missing = run(tmp_path / "nope.toml")
    assert missing.returncode == 2 and "cannot read policy" in missing.stderr
