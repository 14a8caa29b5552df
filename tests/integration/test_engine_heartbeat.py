"""A smoke command or image test that runs long is never silent: the engine's wait shows a
"still running" heartbeat (the docker SDK path has no tool output to stream)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import docker as sdk
import pytest

from dcforge.infra.runner import Runner
from dcforge.infra.tools.docker import Engine
from tests.integration.conftest import REGISTRY, base_env
from tests.integration.test_runner_streaming import Recording

pytestmark = pytest.mark.integration


def test_a_long_container_run_gets_heartbeats_and_still_returns_its_output(stack: str) -> None:
    image = f"{REGISTRY}/library/busybox:latest"
    client = sdk.from_env()
    client.images.pull(image)
    sink = Recording()
    engine = Engine(Runner(env=base_env(), heartbeat=1.0, sink=sink))
    marker = f"hb-{threading.get_ident()}"
    command = ["sh", "-c", f"echo {marker}; until [ -e /go ]; do sleep 0.2; done; echo done"]
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(engine.run, image, command, platform="linux/amd64", timeout=120)
        sink.wait_for(lambda: len(sink.beats) >= 1)  # it is running and said so
        (container,) = [c for c in client.containers.list() if marker in " ".join(c.attrs["Args"])]
        assert container.exec_run(["touch", "/go"]).exit_code == 0
        output = running.result(timeout=120)
    assert output.split() == [marker, "done"]
    assert sink.beats and all(b >= 1.0 for b in sink.beats)
    assert sink.closed == 1
    assert not [c for c in client.containers.list(all=True) if marker in " ".join(c.attrs["Args"])]
