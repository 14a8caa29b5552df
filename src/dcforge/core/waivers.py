"""waivers.yaml: the findings a team accepts, each with a reason, dates and a scope.

Each waiver needs a reason, a ``created`` date, an expiry at most ``max_waiver_days`` after
it, and a scope (``permutations`` and/or ``packages``, or an explicit ``scope: all``). It
may also say what it means for consumers of the images (the OpenVEX status of the finding,
:mod:`dcforge.core.vex`): ``status: affected`` (the default — the risk is accepted until
the expiry) or ``status: not_affected`` with one of OpenVEX's five ``justification``s.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jsonschema

from dcforge.core.coverage import COVERAGE_IDS
from dcforge.core.errors import ConfigError
from dcforge.core.permfile import read_yaml

if TYPE_CHECKING:
    from dcforge.core.policy import Finding

AFFECTED = "affected"
NOT_AFFECTED = "not_affected"
# OpenVEX v0.2.0's status justifications for not_affected (the vendored schema's enum).
JUSTIFICATIONS = (
    "component_not_present",
    "vulnerable_code_not_present",
    "vulnerable_code_not_in_execute_path",
    "vulnerable_code_cannot_be_controlled_by_adversary",
    "inline_mitigations_already_exist",
)


@dataclass(frozen=True)
class Waiver:
    id: str
    reason: str
    expires: dt.date
    permutations: tuple[str, ...] = ()
    packages: tuple[str, ...] = ()
    created: dt.date | None = None
    scope_all: bool = False
    status: str = AFFECTED  # what the VEX says: affected (accepted for now) or not_affected
    justification: str = ""  # one of JUSTIFICATIONS, exactly when not_affected

    def matches(self, permutation: str, finding: Finding) -> bool:
        return (
            self.id == finding.id
            and (not self.permutations or permutation in self.permutations)
            and (not self.packages or finding.package in self.packages)
        )

    def expired(self, today: dt.date) -> bool:
        return self.expires < today

    def days_left(self, today: dt.date) -> int:
        return (self.expires - today).days

    def scope(self) -> str:
        parts = [f"permutations: {', '.join(self.permutations)}"] * bool(self.permutations)
        parts += [f"packages: {', '.join(self.packages)}"] * bool(self.packages)
        return "; ".join(parts) or "all"

    def to_json(self, today: dt.date) -> dict[str, Any]:
        """As gate.json lists the waivers in force."""
        return {
            "id": self.id,
            "scope": self.scope(),
            "created": self.created.isoformat() if self.created else "",
            "expires": self.expires.isoformat(),
            "days_left": self.days_left(today),
            "reason": self.reason,
            "status": self.status,
            "justification": self.justification,
        }


def _schema() -> dict[str, Any]:
    text = resources.files("dcforge.resources").joinpath("waivers.schema.json").read_text()
    result: dict[str, Any] = json.loads(text)
    return result


def load_waivers(path: Path, *, max_days: int, today: dt.date) -> list[Waiver]:
    """Waivers from YAML; a missing file means no waivers. Anything invalid is a
    ConfigError of one line naming the file and the waiver."""
    if not path.exists():
        return []
    data = read_yaml(path)
    if isinstance(data, dict) and isinstance(data.get("waivers"), list):
        for raw in data["waivers"]:  # YAML reads 2027-01-31 as a date; the schema wants text
            for key in ("expires", "created"):
                if isinstance(raw, dict) and isinstance(raw.get(key), dt.date):
                    raw[key] = raw[key].isoformat()
    errors = list(
        jsonschema.Draft202012Validator(
            _schema(), format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
        ).iter_errors(data)
    )
    if errors:
        err = errors[0]
        where = ".".join(str(p) for p in err.absolute_path) or "(top level)"
        raise ConfigError(f"{path}: field '{where}': {err.message}")
    return [_waiver(path, i, raw, max_days, today) for i, raw in enumerate(data["waivers"] or [])]


def _waiver(path: Path, i: int, raw: Mapping[str, Any], max_days: int, today: dt.date) -> Waiver:
    where = f"{path}: waivers.{i} ({raw['id']})"
    waiver = Waiver(
        id=raw["id"],
        reason=raw["reason"],
        expires=dt.date.fromisoformat(raw["expires"]),
        permutations=tuple(raw.get("permutations", [])),
        packages=tuple(raw.get("packages", [])),
        created=dt.date.fromisoformat(raw["created"]),
        scope_all=raw.get("scope") == "all",
        status=raw.get("status", AFFECTED),
        justification=raw.get("justification", ""),
    )
    if waiver.id in COVERAGE_IDS and not waiver.permutations:
        raise ConfigError(
            f"{where}: a {waiver.id} waiver must name its permutations — a scan that could not "
            "see into an image is accepted one image at a time"
        )
    _check_scope(where, waiver)
    _check_status(where, waiver)
    created = dt.date.fromisoformat(raw["created"])
    if created > today:
        raise ConfigError(f"{where}: 'created' {created} lies in the future")
    lifetime = (waiver.expires - created).days
    if lifetime > max_days:
        raise ConfigError(
            f"{where}: lives {lifetime} days ({created} → {waiver.expires}), more than "
            f"max_waiver_days = {max_days} — give it an earlier expiry and review it then"
        )
    if lifetime < 0:
        raise ConfigError(f"{where}: expires before it was created")
    return waiver


def _check_scope(where: str, waiver: Waiver) -> None:
    narrowed = bool(waiver.permutations or waiver.packages)
    if narrowed and waiver.scope_all:
        raise ConfigError(f"{where}: 'scope: all' contradicts its permutations/packages")
    if not narrowed and not waiver.scope_all:
        raise ConfigError(
            f"{where}: no scope — name 'permutations' and/or 'packages', or write 'scope: all' "
            "if it really is meant for every image"
        )


def _check_status(where: str, waiver: Waiver) -> None:
    """not_affected needs its justification, affected has none; a coverage waiver accepts a
    scan, not a vulnerability: it is never not_affected."""
    if waiver.status == NOT_AFFECTED and not waiver.justification:
        raise ConfigError(
            f"{where}: 'status: not_affected' needs a 'justification', one of "
            f"{', '.join(JUSTIFICATIONS)}"
        )
    if waiver.status != NOT_AFFECTED and waiver.justification:
        raise ConfigError(
            f"{where}: a 'justification' is only for 'status: not_affected' (this waiver says "
            f"{waiver.status})"
        )
    if waiver.id in COVERAGE_IDS and waiver.status == NOT_AFFECTED:
        raise ConfigError(
            f"{where}: a {waiver.id} waiver accepts a scan that could not see into an image, "
            "not a vulnerability: it cannot be 'not_affected'"
        )
