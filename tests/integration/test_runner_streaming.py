"""Runner streaming against real child processes (Python scripts; no Docker, no registry).

A child that must wait for the test blocks on a FIFO the test opens once it has seen what it
waits for: nothing here synchronises with a sleep.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

from dcforge.core.errors import ToolError
from dcforge.infra import log, progress
from dcforge.infra.runner import Result, Runner

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

PY = sys.executable
TOOL = Path(PY).name
WAIT = 60.0  # seconds a test waits for a child before it fails (never reached when all works)

TOKEN = "s3cr3t-token-4711"
KEY = "-----BEGIN TEST KEY-----\nbGluZS1vbmUtb2Ytc2VjcmV0\nbGluZS10d28tb2Ytc2VjcmV0\n-----END TEST KEY-----"


class Recording:
    """A sink (and the watch of every call) that keeps what it is handed."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []
        self.beats: list[float] = []
        self.calls: list[tuple[str, bool]] = []
        self.closed = 0
        self._cond = threading.Condition()

    def call(self, tool: str, argv: Sequence[str], *, shown: str, verbose: bool) -> Recording:
        self.calls.append((shown, verbose))
        return self

    def line(self, stream: progress.Stream, text: str) -> bool:
        with self._cond:
            self.lines.append((stream, text))
            self._cond.notify_all()
        return True

    def heartbeat(self, elapsed: float) -> None:
        with self._cond:
            self.beats.append(elapsed)
            self._cond.notify_all()

    def close(self) -> None:
        self.closed += 1

    def wait_for(self, what: Callable[[], bool]) -> None:
        with self._cond:
            assert self._cond.wait_for(what, WAIT), (self.lines, self.beats)


def env(**extra: str) -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", os.defpath), **extra}


def script(tmp_path: Path, body: str) -> list[str]:
    path = tmp_path / "child.py"
    path.write_text(body)
    return [PY, str(path)]


def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "go.fifo"
    os.mkfifo(path)
    return path


def release(path: Path) -> None:
    """Let a child blocked on ``path`` go on (blocks until the child opens it)."""
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, b"go\n")
    finally:
        os.close(fd)


def in_background(run: Callable[[], Result]) -> tuple[ThreadPoolExecutor, Future[Result]]:
    pool = ThreadPoolExecutor(1)
    return pool, pool.submit(run)


WAITS_FOR_THE_TEST = """
import sys
print("first line", flush=True)
print("progress 1/2", file=sys.stderr, flush=True)
with open(sys.argv[1]) as go:
    go.read()
print("last line")
print("progress 2/2", file=sys.stderr)
"""


def test_lines_reach_the_sink_while_the_process_runs(tmp_path: Path) -> None:
    go = fifo(tmp_path)
    rec = Recording()
    runner = Runner(env=env(), sink=rec)
    pool, future = in_background(lambda: runner.run([*script(tmp_path, WAITS_FOR_THE_TEST), go]))
    with pool:
        rec.wait_for(lambda: len(rec.lines) == 2)
        assert not future.done()  # the child waits for us: it has not exited
        assert sorted(rec.lines) == [("stderr", "progress 1/2"), ("stdout", "first line")]
        release(go)
        result = future.result(WAIT)
    assert result.returncode == 0
    assert result.stdout == "first line\nlast line\n"
    assert result.stderr == "progress 1/2\nprogress 2/2\n"
    assert [t for s, t in rec.lines if s == "stdout"] == ["first line", "last line"]
    assert [t for s, t in rec.lines if s == "stderr"] == ["progress 1/2", "progress 2/2"]
    assert rec.closed == 1


def test_a_silent_process_gets_heartbeats(tmp_path: Path) -> None:
    go = fifo(tmp_path)
    rec = Recording()
    runner = Runner(env=env(), sink=rec, heartbeat=0.05)
    body = "import sys\nwith open(sys.argv[1]) as go:\n    go.read()\n"
    pool, future = in_background(lambda: runner.run([*script(tmp_path, body), go]))
    with pool:
        rec.wait_for(lambda: len(rec.beats) >= 3)
        assert not future.done()
        release(go)
        future.result(WAIT)
    assert rec.beats == sorted(rec.beats)
    assert rec.beats[0] >= 0.05
    assert rec.lines == []


class Tap:
    """The console's own sink (dcforge.infra.log), with an event once it printed a heartbeat."""

    def __init__(self) -> None:
        self.inner = log.sink()
        self.watch: progress.Watch | None = None
        self.beat = threading.Event()

    def call(self, tool: str, argv: Sequence[str], *, shown: str, verbose: bool) -> Tap:
        self.watch = self.inner.call(tool, argv, shown=shown, verbose=verbose)
        return self

    def line(self, stream: progress.Stream, text: str) -> bool:
        assert self.watch is not None
        return self.watch.line(stream, text)

    def heartbeat(self, elapsed: float) -> None:
        assert self.watch is not None
        self.watch.heartbeat(elapsed)
        self.beat.set()

    def close(self) -> None:
        assert self.watch is not None
        self.watch.close()


def test_the_console_says_still_running(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    go = fifo(tmp_path)
    tap = Tap()
    runner = Runner(env=env(), heartbeat=0.05, sink=tap)  # plain console: not a terminal
    body = "import sys\nprint('hidden', flush=True)\nwith open(sys.argv[1]) as go:\n    go.read()\n"
    pool, future = in_background(lambda: runner.run([*script(tmp_path, body), go]))
    with pool:
        assert tap.beat.wait(WAIT)
        assert not future.done()
        shown = capfd.readouterr().err
        release(go)
        assert future.result(WAIT).stdout == "hidden\n"
    assert f"… still running {TOOL} (0s)" in shown
    assert "hidden" not in shown + capfd.readouterr().err  # not --verbose: output not shown


SECRETS = """
import os, sys
print("token:", os.environ["DCFORGE_TEST_TOKEN"], flush=True)
print("key:", os.environ["COSIGN_KEY"], file=sys.stderr, flush=True)
print("done")
"""


def test_secrets_never_reach_the_sink_or_the_console(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    rec = Recording()
    argv = script(tmp_path, SECRETS)
    secrets = {"DCFORGE_TEST_TOKEN": TOKEN, "COSIGN_KEY": KEY}
    secret_env = env(**secrets)
    # An unknown executable sees none of the base's secrets: hand them to it, as a wrapper
    # does, to see what it prints redacted.
    result = Runner(env=secret_env, sink=rec, verbose=True).run(argv, env=secrets)
    streamed = "\n".join(t for _, t in rec.lines)
    assert TOKEN not in streamed
    assert "c2VjcmV0" not in streamed and "LW9mLXNlY3JldA" not in streamed
    assert "token: ***" in streamed
    assert result.stdout == f"token: {TOKEN}\ndone\n"  # callers parse the real output
    assert result.stderr == f"key: {KEY}\n"

    capfd.readouterr()
    Runner(env=secret_env, verbose=True).run(argv, env=secrets)  # the console: every line
    printed = capfd.readouterr().err
    assert f"{TOOL} | token: ***" in printed
    assert f"{TOOL} | done" in printed
    assert TOKEN not in printed
    assert "LW9mLXNlY3JldA" not in printed


def test_a_timeout_kills_the_process_and_raises(tmp_path: Path) -> None:
    go = fifo(tmp_path)  # never released
    rec = Recording()
    body = "import os, sys\nprint(os.getpid(), flush=True)\nopen(sys.argv[1]).read()\n"
    with pytest.raises(ToolError, match=rf"^{TOOL} timed out after 1 s: .*child\.py"):
        Runner(env=env(), sink=rec).run([*script(tmp_path, body), go], timeout=1)
    (pid,) = [int(t) for s, t in rec.lines if s == "stdout"]
    with pytest.raises(ProcessLookupError):  # killed, and reaped
        os.kill(pid, 0)
    assert rec.closed == 1


MANY = r"""
import sys
out, err = sys.stdout.buffer, sys.stderr.buffer
for i in range(3000):  # more than a pipe holds, both streams at once
    out.write(b"out %d \xe2\x82\xac " % i + b"x" * (i % 97) + b"\n")
    err.write(b"err %d\r\n" % i)
    if i % 500 == 0:
        out.flush()
        err.write(b"cr only\rbad \xff\xfe bytes\n")
out.write(b"no line end")
err.write(b"trailing \r")
"""


def test_the_result_is_what_subprocess_run_captures(tmp_path: Path) -> None:
    argv = script(tmp_path, MANY)
    rec = Recording()
    result = Runner(env=env(), sink=rec).run(argv)
    captured = subprocess.run(
        argv, env=env(), capture_output=True, text=True, errors="replace", check=False
    )
    assert result.stdout == captured.stdout
    assert result.stderr == captured.stderr
    assert result.stdout.endswith("no line end")
    assert len([1 for s, _ in rec.lines if s == "stdout"]) == 3001


def test_the_result_is_byte_identical_to_what_the_process_wrote(tmp_path: Path) -> None:
    body = (
        "import sys\n"
        "data = ''.join(f'{i} \u00e9\u20ac {\"y\" * (i % 300)}\\n' for i in range(5000))\n"
        "sys.stdout.write(data)\n"
        "sys.stderr.write(data[::-1].replace('\\n', '|') + '\\n')\n"
    )
    argv = script(tmp_path, body)
    raw = subprocess.run(argv, env=env(), capture_output=True, check=True)
    result = Runner(env=env(), sink=Recording()).run(argv)
    assert result.stdout.encode() == raw.stdout
    assert result.stderr.encode() == raw.stderr


def test_input_text_is_written_then_stdin_closed(tmp_path: Path) -> None:
    body = (
        "import sys\n"
        "for line in sys.stdin:\n"
        "    sys.stdout.write(line.upper())\n"
        "    sys.stderr.write('.')\n"
        "print('eof')\n"
    )
    text = "".join(f"line {i}\n" for i in range(100_000))  # more than a pipe holds
    result = Runner(env=env(), sink=Recording()).run(script(tmp_path, body), input_text=text)
    assert result.stdout == text.upper() + "eof\n"
    assert result.stderr == "." * 100_000


def test_a_failure_names_the_tool_and_its_last_line(tmp_path: Path) -> None:
    body = (
        "import sys\nprint('working')\nprint('first problem', file=sys.stderr)\n"
        f"print('it broke: {TOKEN}', file=sys.stderr)\nsys.exit(3)\n"
    )
    runner = Runner(env=env(DCFORGE_TEST_TOKEN=TOKEN), sink=Recording())
    with pytest.raises(ToolError, match=rf"^{TOOL} exited 3: it broke: \*\*\*$") as err:
        runner.run(script(tmp_path, body))
    assert err.value.details is not None and "first problem" in err.value.details
    ok = runner.run(script(tmp_path, body), ok_codes=(0, 3))
    assert ok.returncode == 3
    assert ok.stdout == "working\n"
    unchecked = runner.run(script(tmp_path, body), check=False)
    assert unchecked.returncode == 3


def test_a_tool_that_cannot_start_is_a_tool_error(tmp_path: Path) -> None:
    not_executable = tmp_path / "tool"
    not_executable.write_text("#!/nonexistent/interpreter\n")
    not_executable.chmod(0o755)
    rec = Recording()
    with pytest.raises(ToolError, match=r"^tool could not start: "):
        Runner(env=env(), sink=rec).run([not_executable])
    assert rec.closed == 1


def test_a_timeout_names_a_long_command_briefly() -> None:
    """A batch of hundreds of images timing out is one readable line, not every ref."""
    refs = [f"registry.example/p{i}@sha256:{i:064x}" for i in range(300)]
    with pytest.raises(ToolError) as caught:
        Runner().run(["sh", "-c", "sleep 5", *refs], timeout=0.2)
    message = str(caught.value)
    assert message.startswith("sh timed out after 0.2 s: sh -c 'sleep 5' registry.example/p0@")
    assert message.endswith("… (303 arguments)")
    assert len(message) < 400
    assert refs[-1] in caught.value.details
