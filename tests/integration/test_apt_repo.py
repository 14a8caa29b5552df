"""The test apt repository (apt_repo.py) is one real apt accepts: a non-system apt-get
(every directory under tmp_path, the keyring only via signed-by) updates from it with the
signature verified, sees each newly published version as the candidate and downloads the
.deb; a foreign key, or an index changed after signing, is refused. No Docker, no root
apt state touched."""

from __future__ import annotations

import gzip
import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.apt_repo import AptRepo, serve

pytestmark = pytest.mark.integration


@dataclass
class Apt:
    """apt-get/apt-cache as a private instance: its own sources, lists, cache, status."""

    root: Path

    def __post_init__(self) -> None:
        for d in ("etc/sources.list.d", "etc/trusted.gpg.d", "etc/preferences.d",
                  "state/lists/partial", "cache/archives/partial", "log", "debs"):  # fmt: skip
            (self.root / d).mkdir(parents=True, exist_ok=True)
        (self.root / "status").write_text("")
        (self.root / "etc/sources.list").write_text("")

    def point_at(
        self, repo: AptRepo, url: str, public_key: bytes, *, one_line: bool = False
    ) -> None:
        keyring = self.root / "keyring.gpg"
        keyring.write_bytes(public_key)
        parts = self.root / "etc/sources.list.d"
        if one_line:
            (parts / "dcforge-test.list").write_text(repo.sources_line(url, keyring=str(keyring)))
        else:
            (parts / "dcforge-test.sources").write_text(repo.sources(url, keyring=str(keyring)))

    def __call__(self, tool: str, *args: str) -> subprocess.CompletedProcess[str]:
        r = self.root
        options = {
            "Dir::Etc": r / "etc",
            "Dir::Etc::sourcelist": r / "etc/sources.list",
            "Dir::Etc::sourceparts": r / "etc/sources.list.d",
            "Dir::Etc::trusted": r / "etc/trusted.gpg",  # absent: no key but signed-by's
            "Dir::Etc::trustedparts": r / "etc/trusted.gpg.d",
            "Dir::Etc::preferences": r / "etc/preferences",
            "Dir::Etc::preferencesparts": r / "etc/preferences.d",
            "Dir::State": r / "state",
            "Dir::State::lists": r / "state/lists",
            "Dir::State::status": r / "status",
            "Dir::Cache": r / "cache",
            "Dir::Log": r / "log",
            "APT::Architecture": "amd64",
            "APT::Architectures": "amd64",
            "Acquire::Languages": "none",
            "APT::Sandbox::User": "root",  # tmp_path is 0700: _apt could not write into it
            "Debug::NoLocking": "1",
        }
        argv = [tool]
        for key, value in options.items():
            argv += ["-o", f"{key}={value}"]
        env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
        return subprocess.run([*argv, *args], capture_output=True, text=True, timeout=60,
                              cwd=r / "debs", env={**env, "LC_ALL": "C"}, check=False)  # fmt: skip

    def update(self) -> subprocess.CompletedProcess[str]:
        return self("apt-get", "update")

    def candidate(self, package: str) -> str:
        out = self("apt-cache", "policy", package)
        assert out.returncode == 0, out.stderr
        found = re.search(r"^\s*Candidate: (\S+)$", out.stdout, re.M)
        assert found, out.stdout
        return found.group(1)


def clean(result: subprocess.CompletedProcess[str]) -> None:
    """The update succeeded and nothing was said about keys, signatures or the repo."""
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    for bad in ("NO_PUBKEY", "not signed", "GPG error", "BADSIG", "W:", "E:", "Err:"):
        assert bad not in output, output


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[AptRepo]:
    with AptRepo(tmp_path / "repo") as r:
        yield r


def test_real_apt_updates_sees_the_newest_version_and_downloads_it(
    tmp_path: Path, repo: AptRepo
) -> None:
    apt = Apt(tmp_path / "apt")
    repo.publish("demo-lib", "1.0-1", source="demo-lib")
    with serve(repo) as url:
        apt.point_at(repo, url, repo.public_key())
        clean(apt.update())
        # Debian 12's apt reads the clearsigned InRelease and nothing else of the signatures.
        assert f"GET /dists/{repo.suite}/InRelease 200" in repo.requests
        assert not any("Release.gpg" in r or "/Release " in r for r in repo.requests)
        assert apt.candidate("demo-lib") == "1.0-1"

        got = apt("apt-get", "download", "demo-lib")
        assert got.returncode == 0, got.stderr
        (deb,) = (tmp_path / "apt/debs").glob("*.deb")
        assert deb.name == "demo-lib_1.0-1_all.deb"
        fields = subprocess.run(["dpkg-deb", "-f", str(deb), "Package", "Version", "Source"],
                                capture_output=True, text=True, check=True).stdout  # fmt: skip
        assert fields == "Package: demo-lib\nVersion: 1.0-1\nSource: demo-lib\n"
        listing = subprocess.run(["dpkg-deb", "-c", str(deb)], capture_output=True, text=True,
                                 check=True).stdout  # fmt: skip
        assert "root/root" in listing and "./usr/share/demo-lib/VERSION" in listing

        # The fix is published to the same repository: both versions served, the newest wins.
        repo.publish("demo-lib", "1.1-1", source="demo-lib")
        clean(apt.update())
        assert apt.candidate("demo-lib") == "1.1-1"
        table = apt("apt-cache", "madison", "demo-lib").stdout
        assert re.findall(r"\|\s+(\S+) \|", table) == ["1.1-1", "1.0-1"]

        # replace=True: only that version is served any more.
        repo.publish("demo-lib", "1.2-1", source="demo-lib", replace=True)
        clean(apt.update())
        assert re.findall(r"\|\s+(\S+) \|", apt("apt-cache", "madison", "demo-lib").stdout) == [
            "1.2-1"
        ]


def test_release_gpg_alone_is_accepted_too(tmp_path: Path, repo: AptRepo) -> None:
    """Without InRelease, apt falls back to Release + Release.gpg: that signature is valid.
    (And the one-line sources form works, and an epoch, and an arch-specific package.)"""
    apt = Apt(tmp_path / "apt")
    repo.publish("zlib1g", "1:1.2.13.dfsg-1", source="zlib", architecture="amd64")
    (repo.root / f"dists/{repo.suite}/InRelease").unlink()
    with serve(repo) as url:
        apt.point_at(repo, url, repo.public_key(), one_line=True)
        clean(apt.update())
        assert f"GET /dists/{repo.suite}/Release.gpg 200" in repo.requests
    assert apt.candidate("zlib1g") == "1:1.2.13.dfsg-1"


def test_apt_refuses_another_key_and_an_index_changed_after_signing(
    tmp_path: Path, repo: AptRepo
) -> None:
    repo.publish("demo-lib", "1.0-1", source="demo-lib")
    with AptRepo(tmp_path / "other") as other, serve(repo) as url:
        stranger = Apt(tmp_path / "stranger")
        stranger.point_at(repo, url, other.public_key())
        refused = stranger.update()
        assert refused.returncode != 0
        assert "NO_PUBKEY" in refused.stdout + refused.stderr
        assert "is not signed" in refused.stderr
        assert stranger("apt-cache", "show", "demo-lib").returncode != 0  # nothing was listed

        apt = Apt(tmp_path / "apt")
        apt.point_at(repo, url, repo.public_key())
        clean(apt.update())
        # 1.1-1 is published and signed, then someone swaps in a 6.6-6 behind the signature's
        # back: the indices no longer match the hashes signed, and apt keeps what it had.
        repo.publish("demo-lib", "1.1-1", source="demo-lib")
        for path in (repo.root / "dists" / repo.suite / "main").glob("binary-*/Packages*"):
            text = (gzip.decompress(path.read_bytes()) if path.suffix == ".gz"
                    else path.read_bytes()).replace(b"Version: 1.1-1", b"Version: 6.6-6")  # fmt: skip
            path.write_bytes(gzip.compress(text) if path.suffix == ".gz" else text)
        repo.requests.clear()
        tampered = apt.update()
        assert tampered.returncode != 0
        # (the .gz apt fetches grew: "unexpected size"; a same-size change: "Hash Sum mismatch")
        assert re.search(r"Packages\.gz +(Hash Sum mismatch|File has unexpected size)",
                         tampered.stderr), tampered.stderr  # fmt: skip
        assert any("/Packages" in r for r in repo.requests)  # it did fetch, and refused
        assert apt.candidate("demo-lib") == "1.0-1"
