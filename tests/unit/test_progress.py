"""dcforge.infra.progress and the runner's line pump: pure logic, no processes, no sleeps."""

from __future__ import annotations

import io
import queue
import threading
from collections.abc import Callable, Iterator, Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console, RenderableType

from dcforge.core.action_groups import GithubGroups, Out
from dcforge.infra import log, progress
from dcforge.infra.progress import Heartbeat, Hub
from dcforge.infra.runner import _Pump, line_secrets, redact, secret_values

# -- helpers --------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeLive:
    def __init__(self, render: Callable[[], RenderableType]) -> None:
        self.render = render
        self.started = 0
        self.stopped = 0

    def start(self, refresh: bool = False) -> None:
        self.started += 1
        if refresh:
            self.render()

    def stop(self) -> None:
        self.stopped += 1


class Printed:
    """Collects what a hub prints."""

    def __init__(self) -> None:
        self.lines: list[Out] = []

    def __call__(self, lines: Sequence[Out]) -> None:
        self.lines.extend(lines)

    @property
    def texts(self) -> list[str]:
        return [text for _, text in self.lines]


def hub(
    *, actions: bool = False, terminal: bool = False, clock: Clock | None = None
) -> tuple[Hub, Printed, list[FakeLive]]:
    out, lives = Printed(), []

    def make(render: Callable[[], RenderableType]) -> FakeLive:
        lives.append(FakeLive(render))
        return lives[-1]

    h = Hub(out, clock=clock or Clock(), terminal=lambda: terminal, live=make)
    h.actions = actions
    return h, out, lives


def well_formed(texts: Sequence[str]) -> None:
    """::group:: never nests and every group is closed."""
    open_ = False
    for text in texts:
        if text.startswith("::group::"):
            assert not open_, texts
            open_ = True
        elif text == "::endgroup::":
            assert open_, texts
            open_ = False
    assert not open_, texts


def on_thread(fn: Callable[[], None]) -> None:
    t = threading.Thread(target=fn)
    t.start()
    t.join()


class Worker:
    """A thread that stays alive (as a pool's workers do) and runs what it is given."""

    def __init__(self) -> None:
        self.jobs: queue.Queue[tuple[Callable[[], None], threading.Event] | None] = queue.Queue()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while (job := self.jobs.get()) is not None:
            fn, done = job
            try:
                fn()
            finally:
                done.set()

    def __call__(self, fn: Callable[[], None]) -> None:
        done = threading.Event()
        self.jobs.put((fn, done))
        assert done.wait(10)

    def stop(self) -> None:
        self.jobs.put(None)
        self.thread.join(10)


@pytest.fixture
def workers() -> Iterator[tuple[Worker, Worker]]:
    pair = (Worker(), Worker())
    yield pair
    for w in pair:
        w.stop()


def step_line(name: str, message: str) -> str:
    return f"[bold]{name}[/bold] {message}"


# -- small pieces ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(0, "0s"), (9.9, "9s"), (80, "1m20s"), (3599, "59m59s"), (7500, "2h05m"), (-3, "0s")],
)
def test_elapsed_is_short(seconds: float, shown: str) -> None:
    assert progress.format_elapsed(seconds) == shown


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("python-3.11-bookworm", "python-3.11-bookworm"),
        ("base-bookworm@linux-arm64", "base-bookworm"),
        ("base-bookworm (linux/arm64)", "base-bookworm"),
    ],
)
def test_a_platforms_step_name_is_its_permutation(name: str, key: str) -> None:
    assert progress.permutation_key(name) == key


def test_heartbeat_is_due_after_an_interval_of_silence_and_then_every_interval() -> None:
    beat = Heartbeat(10, now=0)
    assert beat.wait(0) == 10
    assert not beat.due(9.99)
    assert beat.due(10)
    assert not beat.due(10.5)  # once
    assert beat.wait(10.5) == pytest.approx(9.5)
    beat.seen(15)  # output resets the silence
    assert not beat.due(24)
    assert beat.due(25.2)
    assert beat.wait(25.2) == pytest.approx(10)


def test_heartbeat_of_zero_never_beats() -> None:
    beat = Heartbeat(0, now=0)
    assert beat.wait(1e9) == float("inf")
    assert not beat.due(1e9)


# -- redaction and the pump -----------------------------------------------------------


class Recorder:
    def __init__(self, shown: bool = True) -> None:
        self.lines: list[tuple[str, str]] = []
        self.shown = shown

    def line(self, stream: progress.Stream, text: str) -> bool:
        self.lines.append((stream, text))
        return self.shown

    def heartbeat(self, elapsed: float) -> None:
        pass

    def close(self) -> None:
        pass


class Trickle(io.RawIOBase):
    """A pipe that hands out ``size`` bytes at a time (splits lines, \\r\\n and UTF-8)."""

    def __init__(self, data: bytes, size: int) -> None:
        self.data, self.size, self.pos = data, size, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        n = min(self.size, len(buffer), len(self.data) - self.pos)
        buffer[:n] = self.data[self.pos : self.pos + n]
        self.pos += n
        return n


def pump(data: bytes, secrets: frozenset[str] = frozenset(), size: int = 3) -> tuple[str, Recorder]:
    stream = io.TextIOWrapper(
        io.BufferedReader(Trickle(data, size)), encoding="utf-8", errors="replace"
    )
    watch, shown = Recorder(), []
    p = _Pump(stream, "stderr", watch, secrets, lambda: shown.append(1))
    p.run()
    assert p.finished.is_set()
    assert p.failure is None
    assert len(shown) == len(watch.lines)
    return p.text, watch


def communicated(data: bytes) -> str:
    """What subprocess.run(capture_output=True, text=True, errors="replace") returns."""
    return data.decode("utf-8", "replace").replace("\r\n", "\n").replace("\r", "\n")


def test_the_pumped_text_is_what_communicate_returns() -> None:
    data = b"one\r\ntwo\rthree\n\xff\xfebad \xe2\x82\xac euro\n\n  last without end"
    for size in (1, 2, 3, 7, 4096):
        text, watch = pump(data, size=size)
        assert text == communicated(data)
        assert [t for _, t in watch.lines] == communicated(data).split("\n")


@given(st.binary(max_size=300), st.integers(min_value=1, max_value=9))
def test_the_pumped_text_is_what_communicate_returns_for_any_bytes(data: bytes, size: int) -> None:
    assert pump(data, size=size)[0] == communicated(data)


def test_streamed_lines_are_redacted_but_the_result_is_not() -> None:
    key = "-----BEGIN KEY-----\nc2VjcmV0LWxpbmUtb25l\nc2VjcmV0LWxpbmUtdHdv\n-----END KEY-----"
    env = {"COSIGN_PASSWORD": "hunter22", "COSIGN_KEY": key, "PATH": "/bin"}
    secrets = line_secrets(secret_values(env))
    data = f"login with hunter22 ok\n{key}\nthe end\n".encode()
    text, watch = pump(data, secrets)
    assert text == data.decode()  # the caller parses the real output
    streamed = "\n".join(t for _, t in watch.lines)
    assert "hunter22" not in streamed
    assert "c2VjcmV0" not in streamed
    assert streamed.startswith("login with *** ok\n")
    assert all(stream == "stderr" for stream, _ in watch.lines)


def test_each_line_of_a_multi_line_secret_is_a_secret() -> None:
    assert line_secrets(frozenset({"a-b-c-d", "line-one\nline-two\nx"})) == {
        "a-b-c-d",
        "line-one\nline-two\nx",
        "line-one",
        "line-two",
    }
    assert redact("x line-two y", line_secrets(frozenset({"line-one\nline-two"}))) == "x *** y"


def test_a_failing_sink_never_stops_the_reading() -> None:
    class Broken(Recorder):
        def line(self, stream: progress.Stream, text: str) -> bool:
            raise BrokenPipeError("console gone")

    data = b"a\nb\nc\n"
    stream = io.TextIOWrapper(io.BufferedReader(Trickle(data, 1)), encoding="utf-8")
    p = _Pump(stream, "stdout", Broken(), frozenset(), lambda: None)
    p.run()
    assert p.text == "a\nb\nc\n"
    assert isinstance(p.failure, BrokenPipeError)


# -- which permutation a call is for --------------------------------------------------


def test_a_call_is_for_the_permutation_the_thread_last_stepped() -> None:
    a = progress.Attribution()
    assert a.for_call(["trivy", "image"]) is None
    a.stepped("python")
    assert a.for_call(["trivy", "image"]) == "python"
    assert a.for_call(["syft"]) == "python"  # until the thread names another
    a.stepped("node")
    assert a.for_call(["syft"]) == "node"
    seen: list[str | None] = []
    on_thread(lambda: seen.append(a.for_call(["syft"])))
    assert seen == [None]  # another thread's steps say nothing about this one
    a.reset()
    assert a.for_call(["syft"]) is None


def test_a_call_after_several_steps_in_a_row_is_for_none_of_them() -> None:
    a = progress.Attribution()
    for name in ("a", "b", "c"):  # a bake session announces its targets, then bakes
        a.stepped(name)
    assert a.for_call(["docker", "buildx", "bake"]) is None
    a.stepped("b")  # a new run of steps
    assert a.for_call(["docker", "inspect"]) == "b"


def test_the_argv_names_the_permutation_over_a_stale_step() -> None:
    a = progress.Attribution()
    for name in ("python-3.11", "python-3.11-bookworm", "node", "node-18"):
        a.stepped(name)
    a.stepped("node")  # a pool thread finished "node", then scans the next one
    assert a.for_call(["trivy", "--output", "dist/reports/python-3.11.trivy.json"]) == (
        "python-3.11"
    )
    assert a.for_call(["docker", "run", "sha256:abc"]) == "python-3.11"  # the thread moved on
    assert a.mentioned(["skopeo", "copy", "oci-archive:dist/python-3.11-bookworm.tar"]) == (
        "python-3.11-bookworm"
    )
    assert a.mentioned(["x", "reports/node-18@linux-arm64.trivy.json"]) == "node-18"
    assert a.mentioned(["x", "python-3.11.4"]) is None  # a version, not the permutation
    assert a.mentioned(["x", "dist/node.tar", "dist/python-3.11.tar"]) is None  # two of them
    assert a.mentioned(["x", "mynode", "node_modules", "nodes"]) is None


def test_an_explicit_permutation_wins() -> None:
    a = progress.Attribution()
    a.stepped("python")
    with progress.explicit_permutation("node@linux-arm64"):
        assert a.for_call(["trivy", "dist/python.tar"]) == "node"
    assert a.for_call(["trivy"]) == "python"


# -- GitHub Actions groups ------------------------------------------------------------


def L(text: str) -> Out:  # noqa: N802
    return ("plain", text)


def test_sequential_permutations_stream_live_one_group_each() -> None:
    g = GithubGroups()
    out = g.enter("build")
    out += g.loose_line(L("resolving"), tool=True)
    out += g.permutation_line("a", L("a 1"), thread=1)
    out += g.permutation_line("a", L("a 2"), thread=1)
    out += g.permutation_line("b", L("b 1"), thread=1)
    out += g.loose_line(L("… still running x"), tool=False)
    out += g.exit()
    texts = [t for _, t in out]
    assert texts == [
        "::group::build",
        "resolving",
        "::endgroup::",
        "::group::a — build",
        "a 1",
        "a 2",
        "::endgroup::",
        "::group::b — build",
        "b 1",
        "… still running x",
        "::endgroup::",
    ]
    well_formed(texts)


def test_parallel_permutations_are_buffered_into_one_group_each() -> None:
    g = GithubGroups()
    out = g.enter("gate 3")
    out += g.permutation_line("a", L("a 1"), thread=1)  # live while it is the only one
    out += g.permutation_line("b", L("b 1"), thread=2)  # a second thread: buffer
    out += g.permutation_line("a", L("a 2"), thread=1)
    out += g.loose_line(L("… still running trivy for a (10s)"), tool=False)
    out += g.loose_line(L("cosign | signing"), tool=True)
    out += g.permutation_line("c", L("c 1"), thread=1)
    out += g.loose_line(L("info line"), tool=False)
    out += g.permutation_line("b", L("b 2"), thread=2)
    live = [t for _, t in out]
    assert live == [
        "::group::a — gate 3",
        "a 1",
        "::endgroup::",
        "… still running trivy for a (10s)",  # un-grouped: the log never stays silent
        "info line",
    ]
    out += g.exit()
    texts = [t for _, t in out]
    assert texts[len(live) :] == [
        "::group::gate 3",
        "cosign | signing",
        "::endgroup::",
        "::group::b — gate 3",
        "b 1",
        "b 2",
        "::endgroup::",
        "::group::a — gate 3 (continued)",
        "a 2",
        "::endgroup::",
        "::group::c — gate 3",
        "c 1",
        "::endgroup::",
    ]
    well_formed(texts)
    assert g.block is None


def test_an_explicit_permutation_prints_its_group_when_it_ends() -> None:
    g = GithubGroups()
    out = g.enter("publish")
    out += g.permutation_line("a", L("a 1"), thread=1)
    out += g.permutation_line("b", L("b 1"), thread=2)
    out += g.permutation_line("b", L("b 2"), thread=2)
    out += g.permutation_done("b")
    assert [t for _, t in out][-4:] == ["::group::b — publish", "b 1", "b 2", "::endgroup::"]
    out += g.permutation_done("a")  # its live group was closed, nothing buffered since
    out += g.permutation_line("b", L("b 3"), thread=2)
    out += g.exit()
    texts = [t for _, t in out]
    assert texts[-3:] == ["::group::b — publish (continued)", "b 3", "::endgroup::"]
    well_formed(texts)


def test_the_live_permutation_ending_reopens_the_block_for_the_next() -> None:
    g = GithubGroups()
    out = g.enter("t")
    out += g.permutation_line("a", L("a"), thread=1)
    out += g.permutation_done("a")
    out += g.permutation_line("b", L("b"), thread=2)  # any thread may go live now
    out += g.exit()
    texts = [t for _, t in out]
    assert texts == ["::group::a — t", "a", "::endgroup::", "::group::b — t", "b", "::endgroup::"]


def test_a_group_inside_a_group_never_nests() -> None:
    g = GithubGroups()
    out = g.enter("outer")
    out += g.loose_line(L("x"), tool=False)
    out += g.enter("inner")
    out += g.loose_line(L("y"), tool=False)
    out += g.exit()
    out += g.loose_line(L("z"), tool=False)
    out += g.exit()
    texts = [t for _, t in out]
    assert texts == ["::group::outer", "x", "— inner", "y", "z", "::endgroup::"]
    assert g.exit() == []


def test_outside_a_group_lines_go_out_as_they_come() -> None:
    g = GithubGroups()
    assert g.permutation_line("a", L("a"), thread=1) == [L("a")]
    assert g.loose_line(L("b"), tool=True) == [L("b")]
    assert g.permutation_done("a") == []


# -- the hub --------------------------------------------------------------------------


def test_plain_output_is_as_before_plus_heartbeats() -> None:
    h, out, lives = hub()
    h.step("python", "scanned")
    call = h.call("trivy", ["trivy", "image"], shown="trivy image", verbose=False)
    assert not call.line("stderr", "progress 10%")  # not shown: the heartbeat goes on
    call.heartbeat(80)
    call.close()
    assert out.lines == [
        ("markup", step_line("python", "scanned")),
        ("plain", "… still running trivy for python (1m20s)"),
    ]
    assert not lives


def test_verbose_streams_every_line_with_the_permutation_or_tool_name() -> None:
    h, out, _ = hub()
    h.step("python", "scanning")
    call = h.call("trivy", ["trivy"], shown="trivy --password ***", verbose=True)
    assert call.line("stdout", "{json}")
    assert call.line("stderr", "INFO done")
    call.close()
    h.attribution.reset()
    other = h.call("skopeo", ["skopeo"], shown="skopeo inspect", verbose=True)
    other.line("stderr", "x" * 5000)
    other.close()
    assert out.texts[1:] == [
        "+ trivy --password ***",
        "python | {json}",
        "python | INFO done",
        "+ skopeo inspect",
        "skopeo | " + "x" * (progress.MAX_LINE - 1) + "…",
    ]


def test_actions_holds_a_quick_calls_stderr_and_streams_a_long_ones() -> None:
    clock = Clock()
    h, out, _ = hub(actions=True, clock=clock)
    log_group = "gate 1 permutation(s)"
    h.group_enter(log_group)
    h.step("python", "scanning")
    quick = h.call("crane", ["crane", "digest"], shown="crane digest", verbose=False)
    assert not quick.line("stderr", "MANIFEST_UNKNOWN")  # a probe that expects to fail
    quick.close()
    long = h.call("trivy", ["trivy"], shown="trivy image", verbose=False)
    long.line("stderr", "downloading DB")
    long.line("stdout", "{report}")  # stdout is data: only --verbose shows it
    clock.now += progress.STREAM_AFTER
    assert long.line("stderr", "scanning")
    assert long.line("stderr", "done")
    long.close()
    h.step("python", "scanned")
    h.group_exit()
    assert out.texts == [
        f"::group::python — {log_group}",
        step_line("python", "scanning"),
        "trivy | downloading DB",
        "trivy | scanning",
        "trivy | done",
        step_line("python", "scanned"),
        "::endgroup::",
    ]


def test_actions_heartbeat_releases_what_was_held() -> None:
    h, out, _ = hub(actions=True)
    h.group_enter("build")
    h.step("a", "building")
    call = h.call("docker", ["docker", "buildx", "bake"], shown="docker buildx bake", verbose=False)
    call.line("stderr", "#1 [internal] load")
    call.heartbeat(12)
    call.close()
    h.group_exit()
    assert out.texts == [
        "::group::a — build",
        step_line("a", "building"),
        "docker | #1 [internal] load",
        "… still running docker for a (12s)",
        "::endgroup::",
    ]


def test_actions_parallel_work_keeps_every_permutation_in_its_own_group(
    workers: tuple[Worker, Worker],
) -> None:
    clock = Clock()
    h, out, _ = hub(actions=True, clock=clock)
    h.group_enter("gate 2")
    calls: dict[str, progress.Watch] = {}

    def start(name: str) -> None:
        h.step(name, "scanning")
        calls[name] = h.call("trivy", ["trivy", f"reports/{name}.json"], shown="", verbose=True)

    workers[0](lambda: start("a"))
    workers[1](lambda: start("b"))
    clock.now += 30
    calls["a"].line("stderr", "a-line")
    calls["b"].heartbeat(30)
    calls["b"].line("stderr", "b-line")
    for c in calls.values():
        c.close()
    during = list(out.texts)
    h.group_exit()
    texts = out.texts
    well_formed(texts)
    assert during == [
        "::group::a — gate 2",
        step_line("a", "scanning"),
        "+ ",
        "::endgroup::",
        "… still running trivy for b (30s)",
    ]
    assert texts[len(during) :] == [
        "::group::b — gate 2",
        step_line("b", "scanning"),
        "+ ",
        "trivy | b-line",
        "::endgroup::",
        "::group::a — gate 2 (continued)",
        "trivy | a-line",
        "::endgroup::",
    ]


def test_actions_warnings_and_errors_are_never_buffered(workers: tuple[Worker, Worker]) -> None:
    h, out, _ = hub(actions=True)
    h.group_enter("g")
    workers[0](lambda: h.step("a", "1"))
    workers[1](lambda: h.step("b", "1"))
    h.info(("raw", "::error::it broke"))
    assert out.texts[-1] == "::error::it broke"
    h.group_exit()
    well_formed(out.texts)


def test_terminal_shows_a_live_table_and_no_heartbeat_lines() -> None:
    clock = Clock()
    h, out, lives = hub(terminal=True, clock=clock)
    call = h.call("skopeo", ["skopeo"], shown="", verbose=False)
    call.heartbeat(10)  # a silent call starts the display: it is the heartbeat
    assert len(lives) == 1
    assert lives[0].started == 1
    assert out.lines == []
    call.close()
    h.step("python-3.11", "building")
    bake = h.call("docker", ["docker", "buildx", "bake"], shown="", verbose=False)
    clock.now += 75
    assert bake.line("stderr", "#7 [2/3] RUN apt-get update")
    assert out.texts == [step_line("python-3.11", "building")]  # printed above the table
    rendered = render(h.render())
    assert "python-3.11" in rendered
    assert "building" in rendered
    assert "docker 1m15s" in rendered
    assert "apt-get update" in rendered
    bake.close()
    h.finish()
    h.finish()
    assert lives[0].stopped == 1
    assert len(lives) == 1


def test_the_table_keeps_the_running_and_latest_rows() -> None:
    clock = Clock()
    h, _, _ = hub(terminal=True, clock=clock)
    for i in range(progress.LIVE_ROWS + 5):
        clock.now += 1
        h.step(f"perm-{i}", "built")
    h.attribution.reset()
    h.step("perm-0", "scanning")
    on_thread(lambda: None)
    rendered = render(h.render())
    assert "perm-0 " in rendered
    assert "perm-1 " not in rendered
    assert f"perm-{progress.LIVE_ROWS + 4}" in rendered
    assert "and 5 more" in rendered


def test_render_never_waits_for_a_busy_hub() -> None:
    h, _, _ = hub(terminal=True)
    h.step("a", "one")
    first = h.render()
    taken = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with h.lock:
            taken.set()
            release.wait(10)

    t = threading.Thread(target=hold)
    t.start()
    assert taken.wait(10)
    assert h.render() is first  # the last table, not a deadlock
    release.set()
    t.join()


def render(table: RenderableType) -> str:
    console = Console(width=200, file=io.StringIO(), color_system=None)
    console.print(table)
    assert isinstance(console.file, io.StringIO)
    return console.file.getvalue()


# -- the log module on top ------------------------------------------------------------


@pytest.fixture
def actions() -> Iterator[None]:
    log.configure(github_actions=True)
    try:
        yield
    finally:
        log.configure(github_actions=False)


@pytest.mark.usefixtures("actions")
def test_log_group_in_actions_names_each_permutations_group(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with log.group("verify"):
        log.info("checking")
        log.step("python", "ok")
        log.warn("careful")
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "::group::verify",
        "checking",
        "::endgroup::",
        "::group::python — verify",
        "python ok",
        "::warning::careful",
        "::endgroup::",
    ]


@pytest.mark.usefixtures("actions")
def test_log_permutation_flushes_its_group_at_its_end(
    capsys: pytest.CaptureFixture[str], workers: tuple[Worker, Worker]
) -> None:
    with log.group("scan"):
        workers[0](lambda: log.step("a", "first"))
        with log.permutation("b"):
            workers[1](lambda: log.step("b", "1"))  # parallel work: buffered
            log.step("b", "2")
        assert capsys.readouterr().err.splitlines() == [
            "::group::a — scan",
            "a first",
            "::endgroup::",
            "::group::b — scan",
            "b 1",
            "b 2",
            "::endgroup::",
        ]
    assert capsys.readouterr().err == ""


def test_log_outside_actions_is_as_before(capsys: pytest.CaptureFixture[str]) -> None:
    with log.group("build"):
        log.step("python", "built [3 cached]")
        log.info("wrote dist/manifest.json")
    err = capsys.readouterr().err
    assert "build" in err.splitlines()[0]
    assert err.splitlines()[1:] == ["python built [3 cached]", "wrote dist/manifest.json"]
    assert "::group::" not in err
    log.finish()  # nothing started: nothing to stop
