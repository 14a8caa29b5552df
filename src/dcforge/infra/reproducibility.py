"""Two cold builds of the same inputs, compared: each permutation and platform's image digest,
and for each that differs, the layers and files that do (:mod:`dcforge.core.archive_diff`).

The report, ``dist/reports/reproduce.json``, holds every pair of digests, the share that
is identical and the lines that explain each difference. Two builds a day apart can differ
where the package mirror moved in between: that is the mirror, not the build.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rich.table import Table

from dcforge.core import archive_diff
from dcforge.core import manifest as mf
from dcforge.core.errors import BuildError
from dcforge.core.files import atomic_write_json
from dcforge.infra import log


@dataclass(frozen=True)
class Pair:
    """One permutation and platform image, as the two builds made it."""

    name: str
    platform: str  # "" for a single-platform permutation's image
    first: str
    second: str

    @property
    def identical(self) -> bool:
        return bool(self.first) and self.first == self.second


@dataclass(frozen=True)
class Comparison:
    pairs: tuple[Pair, ...]
    explained: dict[str, list[str]]  # permutation → why its archives differ
    seconds: dict[str, float]  # "first build", "second build", "compare"

    @property
    def share_identical(self) -> float:
        return sum(p.identical for p in self.pairs) / len(self.pairs) if self.pairs else 1.0

    def to_json(self) -> dict[str, Any]:
        return {
            "identical": sum(p.identical for p in self.pairs),
            "images": len(self.pairs),
            "share_identical": round(self.share_identical, 4),
            "seconds": {k: round(v, 1) for k, v in self.seconds.items()},
            "pairs": [{**asdict(p), "identical": p.identical} for p in self.pairs],
            "differences": self.explained,
        }


def _images(entry: mf.Entry) -> dict[str, str]:
    return entry.platform_images() if entry.multi_platform else {"": entry.image_digest}


def compare(
    first: mf.Manifest, first_dist: Path, second: mf.Manifest, second_dist: Path
) -> tuple[tuple[Pair, ...], dict[str, list[str]]]:
    """Every image of ``first`` against ``second``'s, and the reasons where they differ."""
    pairs: list[Pair] = []
    explained: dict[str, list[str]] = {}
    others = {e.name: e for e in second.permutations}
    for entry in first.permutations:
        other = others.get(entry.name)
        theirs = _images(other) if other is not None else {}
        mine = _images(entry)
        pairs += [
            Pair(entry.name, platform, digest, theirs.get(platform, ""))
            for platform, digest in sorted(mine.items())
        ]
        if other is not None and any(mine[p] != theirs.get(p) for p in mine):
            diff = archive_diff.diff_archives(
                first_dist / entry.tarball, second_dist / other.tarball
            )
            explained[entry.name] = archive_diff.render(diff)
        elif other is None:
            explained[entry.name] = ["not built the second time"]
    return tuple(pairs), explained


def report(result: Comparison, reports: Path) -> Path:
    """Write the report, show the table and each difference; BuildError when any differ."""
    path = reports / "reproduce.json"
    reports.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, result.to_json())
    table = Table(title="reproducible: two cold builds of the same inputs")
    for col in ("permutation", "platform", "first build", "second build", "identical"):
        table.add_column(col)
    for p in result.pairs:
        table.add_row(p.name, p.platform or "-", p.first[:19], p.second[:19] or "-", _yes(p))
    log.table(table)
    for name, lines in result.explained.items():
        with log.group(f"{name}: why the two builds differ"):
            for line in lines:
                log.info(line)
    if not result.pairs:
        raise BuildError("nothing was built twice: no image to compare")
    differing = [p for p in result.pairs if not p.identical]
    if differing:
        first = differing[0]
        why = (result.explained.get(first.name) or [""])[0]
        raise BuildError(
            f"not reproducible: {len(differing)} of {len(result.pairs)} image(s) differ between "
            f"two cold builds, first {first.name} {first.platform}".rstrip()
            + (f" ({why})" if why else "")
            + f" — every difference is in {path}"
        )
    log.info(f"reproducible: {len(result.pairs)} image(s) identical in two cold builds ({path})")
    return path


def _yes(pair: Pair) -> str:
    return "yes" if pair.identical else "NO"
