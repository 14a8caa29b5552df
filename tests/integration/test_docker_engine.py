"""The engine wrapper against the real dockerd: loads and removals of images that share
their base layers, from several threads at once (the build's parallel smoke tests)."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from dcforge.core import oci_archive
from dcforge.infra.runner import Runner
from dcforge.infra.tools.docker import Engine
from tests.integration.conftest import engine_to_itself

pytestmark = pytest.mark.integration

ROUNDS = 6


def _cycle(runner: Runner, tarball: Path, rounds: int) -> int:
    digest = oci_archive.oci_archive(tarball)[0]
    for n in range(rounds):
        tag = f"dcforge-race/{tarball.stem}:{n}-{uuid.uuid4().hex[:8]}"
        with Engine(runner) as engine, engine.loaded(tarball, digest, tag, "linux/amd64") as image:
            engine.run(image, ["true"], platform="linux/amd64", timeout=120)
    return rounds


def test_images_sharing_a_base_load_and_go_while_others_do(
    runner: Runner, vulnerable_tar: Path, clean_tar: Path
) -> None:
    """Two images on one busybox base, each loaded, run and removed over and over by two
    threads: a removal must never collect the base under another thread's load (containerd
    said "parent snapshot ... does not exist" and the build failed)."""
    archives = [vulnerable_tar, clean_tar, vulnerable_tar, clean_tar]
    with engine_to_itself(), ThreadPoolExecutor(len(archives)) as pool:
        done = [pool.submit(_cycle, runner, tarball, ROUNDS) for tarball in archives]
        assert sum(future.result() for future in done) == ROUNDS * len(archives)
