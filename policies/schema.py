"""The validated policy schema: retention, key epochs, k-of-n openings, legal holds, sweeps.

Policy files are TOML (read with the standard library). Durations are written "30m", "72h",
"7d" or "2w"; "30s" too, for a sweeper that must run more than once a minute (a soak test, a
short demonstration). Unknown keys are errors, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import re
import tomllib
from datetime import timedelta
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(v: object) -> timedelta:
    if isinstance(v, timedelta):
        return v
    m = re.fullmatch(r"\s*(\d+)\s*([smhdw])\s*", str(v))
    if not m or int(m.group(1)) == 0:
        raise ValueError(f"not a positive duration like '72h' or '7d': {v!r}")
    try:
        return timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})
    except OverflowError:  # more days than a timedelta holds: pydantic passes only ValueError
        raise ValueError(f"duration too long: {v!r}") from None


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Site(Strict):
    cameras: list[str] = Field(min_length=1)
    period: Duration


class Retention(Strict):
    default: Duration = timedelta(hours=72)
    cameras: dict[str, Duration] = {}
    sites: dict[str, Site] = {}

    @model_validator(mode="after")
    def _one_site_per_camera(self) -> Retention:
        seen: dict[str, str] = {}
        for name, site in self.sites.items():
            for cam in site.cameras:
                if cam in seen:
                    raise ValueError(f"camera {cam!r} is in two sites: {seen[cam]!r}, {name!r}")
                seen[cam] = name
        return self

    def for_camera(self, camera_id: str) -> timedelta:
        """Camera override, else its site's period, else the default."""
        if camera_id in self.cameras:
            return self.cameras[camera_id]
        for site in self.sites.values():
            if camera_id in site.cameras:
                return site.period
        return self.default

    def rule(self, camera_id: str) -> str:
        """Where a camera's retention comes from, for people: 'camera override', 'site
        <name>' or 'default' (the retention report names it beside each erasure)."""
        if camera_id in self.cameras:
            return "camera override"
        for name, site in self.sites.items():
            if camera_id in site.cameras:
                return f"site {name}"
        return "default"


class Keys(Strict):
    """Deprecated: `[keys] epoch` is still read (a policy file that has it loads), but it
    does not govern the vault. The length of a key epoch is fixed when the key store is made:
    `escrow keys init --epoch-hours N` writes it into the key store (`epoch_hours`), and every
    epoch issued later takes that one; this value is only the default of `--epoch-hours`
    when it is not given (rounded to whole hours). Changing it afterwards changes nothing."""

    epoch: Duration = timedelta(hours=24)


class Openings(Strict):
    threshold: int = Field(2, ge=1)
    trustees: int = Field(3, ge=1)
    # A request not fetched this long after it was made is closed by the sweeper and the
    # sealed shares it gathered are wiped.
    unfetched_after: Duration = timedelta(days=7)
    # A release's answer stays sealed to the requester's fetch secret this long (or until the
    # requester confirms receipt), so crops lost on their way can be fetched again; never
    # past the retention of a record in it that is not under legal hold.
    redeliver_for: Duration = timedelta(hours=24)

    @model_validator(mode="after")
    def _k_le_n(self) -> Openings:
        if self.threshold > self.trustees:
            raise ValueError(f"threshold {self.threshold} exceeds trustees {self.trustees}")
        return self


class LegalHold(Strict):
    after_warrant: Duration = timedelta(days=30)


class Sweep(Strict):
    every: Duration = timedelta(hours=1)
    batch: int = Field(1000, ge=1, le=100_000)


class Policy(Strict):
    retention: Retention = Retention()
    keys: Keys = Keys()
    openings: Openings = Openings()
    legal_hold: LegalHold = LegalHold()
    sweep: Sweep = Sweep()

    def effective(self) -> dict:
        """What will actually be applied, durations in hours, for `escrow policy check`."""

        def h(d: timedelta) -> float:
            return d.total_seconds() / 3600

        r = self.retention
        return {
            "retention_hours": {
                "default": h(r.default),
                "cameras": {c: h(d) for c, d in r.cameras.items()},
                "sites": {
                    n: {"cameras": s.cameras, "hours": h(s.period)} for n, s in r.sites.items()
                },
            },
            "key_epoch_hours": h(self.keys.epoch),
            "openings": f"{self.openings.threshold}-of-{self.openings.trustees}",
            "unfetched_request_hours": h(self.openings.unfetched_after),
            "held_release_hours": h(self.openings.redeliver_for),
            "legal_hold_after_warrant_hours": h(self.legal_hold.after_warrant),
            "sweep": {"every_hours": h(self.sweep.every), "batch": self.sweep.batch},
        }


class PolicyError(ValueError):
    pass


DEFAULT_POLICY = Path(__file__).resolve().parent / "default.toml"


def load_policy(path: str | Path | None = None) -> Policy:
    """Read and validate a policy file; PolicyError with every problem, one per line."""
    path = Path(path) if path else DEFAULT_POLICY
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise PolicyError(f"cannot read policy {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise PolicyError(f"policy {path} is not UTF-8 text (byte {exc.start})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"policy {path} is not valid TOML: {exc}") from exc
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        lines = [
            f"  {'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg']}" for e in exc.errors()
        ]
        raise PolicyError(f"policy {path} is invalid:\n" + "\n".join(lines)) from exc
