"""``tanglebrain serve --workers N``: real forked workers behind one port."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import anyio
import openai
import pytest

from tanglebrain.sim import Simulator
from tests.helpers import ROOT, WAIT, backend_toml, run_cli, wait_until, write_roster
from tests.serve.test_serve import Served, roster_file, start_serve, user


def children(pid: int) -> list[int]:
    """The live child processes of ``pid`` (Linux /proc)."""
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting for a reaper does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def start_workers(tmp: Path, sim: Simulator, n: int = 2) -> tuple[Served, list[int]]:
    server = start_serve(tmp, roster_file(tmp / "roster.toml", sim.base_url), "--workers", str(n),
                         "-v")  # fmt: skip
    assert f"{n} workers" in server.stderr[-1]
    workers = children(server.proc.pid)
    assert len(workers) == n
    return server, workers


pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


async def test_workers_share_the_port_and_the_ledger(tmp_path: Path, sim: Simulator) -> None:
    server, workers = await anyio.to_thread.run_sync(start_workers, tmp_path, sim)
    answers: list[str] = []
    async with openai.AsyncOpenAI(base_url=server.base_url, api_key="x", max_retries=0) as oai:

        async def one(i: int) -> None:
            resp = await oai.chat.completions.create(model="echo", messages=user(f"n{i}"))
            answers.append(resp.choices[0].message.content or "")

        async with anyio.create_task_group() as tg:
            for i in range(40):
                tg.start_soon(one, i)
    assert sorted(answers) == sorted(f"n{i}" for i in range(40))
    assert await anyio.to_thread.run_sync(server.stop) == 0
    assert not any(alive(pid) for pid in workers)
    assert server.runs().count(("serve", "ok", "echo")) == 40  # one ledger, both writers
    # SO_REUSEPORT spreads connections: 40 all landing on one worker is a 2^-39 event.
    served_by = {line.rsplit("(worker ", 1)[1][0] for line in server.stderr if "(worker " in line}
    assert served_by == {"1", "2"}
    assert server.stderr[-1].endswith("serve: stopped\n")


async def test_a_dead_worker_is_replaced(tmp_path: Path, sim: Simulator) -> None:
    server, workers = await anyio.to_thread.run_sync(start_workers, tmp_path, sim)
    try:
        os.kill(workers[0], signal.SIGKILL)
        await anyio.to_thread.run_sync(
            lambda: wait_until(lambda: len(children(server.proc.pid)) == 2
                               and workers[0] not in children(server.proc.pid), "no new worker")
        )  # fmt: skip
        # The parent's note is read from its stderr by another thread: wait for it too.
        await anyio.to_thread.run_sync(
            lambda: wait_until(lambda: any("killed" in ln for ln in server.stderr), "no note")
        )
        note = next(line for line in server.stderr if "killed" in line)
        assert f"worker 1 (pid {workers[0]}) was killed by SIGKILL; starting another" in note
        async with openai.AsyncOpenAI(base_url=server.base_url, api_key="x", max_retries=0) as c:
            for i in range(8):  # whichever worker the kernel picks answers
                resp = await c.chat.completions.create(model="echo", messages=user(f"m{i}"))
                assert resp.choices[0].message.content == f"m{i}"
    finally:
        assert await anyio.to_thread.run_sync(server.stop) == 0


def refused(base_url: str) -> bool:
    """Whether the server no longer accepts connections (it has begun to stop)."""
    host, port = base_url.split("//")[1].split("/")[0].rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=1).close()
    except (ConnectionRefusedError, ConnectionResetError):
        return True  # a reset: the listener closed with this connection in its queue
    return False


@pytest.mark.parametrize(
    ("workers", "force", "stream"),
    [(2, False, False), (1, True, False), (2, True, False), (2, True, True)],
)
async def test_ctrl_c_drains_in_flight_runs_and_a_second_one_forces(
    tmp_path: Path, sim: Simulator, workers: int, force: bool, stream: bool
) -> None:
    roster = roster_file(tmp_path / "roster.toml", sim.base_url)
    server = await anyio.to_thread.run_sync(
        lambda: start_serve(tmp_path, roster, "--workers", str(workers))
    )
    pids = children(server.proc.pid)
    outcome: list[str] = []
    async with openai.AsyncOpenAI(base_url=server.base_url, api_key="x", max_retries=0) as oai:

        async def in_flight() -> None:
            try:
                if stream:
                    chunks = await oai.chat.completions.create(
                        model="slow", messages=user("drain"), stream=True
                    )
                    outcome.append("".join([c.choices[0].delta.content or "" async for c in chunks
                                            if c.choices]))  # fmt: skip
                else:
                    resp = await oai.chat.completions.create(model="slow", messages=user("drain"))
                    outcome.append(resp.choices[0].message.content or "")
            except openai.APIError as exc:
                outcome.append(str(getattr(exc, "code", None) or exc.message))

        async with anyio.create_task_group() as tg:
            tg.start_soon(in_flight)
            await sim.wait_in_flight(1, "worker:latency=1.5")
            server.proc.send_signal(signal.SIGINT)  # what a terminal's Ctrl-C sends
            if force:  # a second Ctrl-C, once the first has been taken
                await anyio.to_thread.run_sync(
                    lambda: wait_until(lambda: refused(server.base_url), "still listening")
                )
                server.proc.send_signal(signal.SIGINT)
    answer = "simulated worker:latency=1.5 result for: drain"
    assert outcome == (["server_shutting_down"] if force else [answer])
    assert await anyio.to_thread.run_sync(lambda: server.proc.wait(timeout=WAIT)) == 0
    assert not any(alive(pid) for pid in pids)
    assert [r[1] for r in server.runs()] == (["interrupted"] if force else ["ok"])
    assert "Traceback" not in "".join(server.stderr)


async def test_sigterm_to_every_process_still_drains(tmp_path: Path, sim: Simulator) -> None:
    # A service manager (systemd's KillMode=control-group) signals the workers too.
    server, workers = await anyio.to_thread.run_sync(start_workers, tmp_path, sim)
    answers: list[str] = []
    async with openai.AsyncOpenAI(base_url=server.base_url, api_key="x", max_retries=0) as oai:

        async def in_flight() -> None:
            resp = await oai.chat.completions.create(model="slow", messages=user("drain"))
            answers.append(resp.choices[0].message.content or "")

        async with anyio.create_task_group() as tg:
            tg.start_soon(in_flight)
            await sim.wait_in_flight(1, "worker:latency=1.5")
            server.proc.send_signal(signal.SIGTERM)  # relayed to the workers: they stop
            await anyio.to_thread.run_sync(
                lambda: wait_until(lambda: refused(server.base_url), "still listening")
            )
            for pid in workers:  # and then the manager's own SIGTERM reaches them
                with contextlib.suppress(ProcessLookupError):  # an idle one may be gone
                    os.kill(pid, signal.SIGTERM)
    assert answers == ["simulated worker:latency=1.5 result for: drain"]
    assert await anyio.to_thread.run_sync(lambda: server.proc.wait(timeout=WAIT)) == 0


async def test_the_shutdown_timeout_cuts_runs_and_records_them(
    tmp_path: Path, sim: Simulator
) -> None:
    # Each worker has its own max_concurrency: above 6, however the kernel spreads them.
    stuck = backend_toml("stuck", "worker:latency=30", sim.base_url, extra="max_concurrency = 8")
    roster = write_roster(tmp_path / "roster.toml", stuck)
    server = await anyio.to_thread.run_sync(
        lambda: start_serve(tmp_path, roster, "--workers", "2", "--shutdown-timeout", "1")
    )
    codes: list[str] = []
    async with openai.AsyncOpenAI(base_url=server.base_url, api_key="x", max_retries=0) as oai:

        async def in_flight(i: int) -> None:
            try:
                await oai.chat.completions.create(model="stuck", messages=user(f"s{i}"))
                codes.append("answered")
            except openai.APIStatusError as exc:
                codes.append(str(exc.code))

        async with anyio.create_task_group() as tg:
            for i in range(6):
                tg.start_soon(in_flight, i)
            await sim.wait_in_flight(6, "worker:latency=30")
            server.proc.send_signal(signal.SIGTERM)
    assert codes == ["server_shutting_down"] * 6, "".join(server.stderr)
    assert await anyio.to_thread.run_sync(lambda: server.proc.wait(timeout=WAIT)) == 0
    assert server.runs() == [("serve", "interrupted", "stuck")] * 6
    with sqlite3.connect(server.home / "runs.db") as db:
        errors = {e for (e,) in db.execute("SELECT error FROM runs")}
    assert errors == {"the server stopped before this run finished"}
    assert "Traceback" not in "".join(server.stderr)


def test_workers_stop_when_the_parent_dies(tmp_path: Path, sim: Simulator) -> None:
    server, workers = start_workers(tmp_path, sim)
    server.proc.kill()  # no chance to stop them: their lifeline breaks
    server.proc.wait(timeout=WAIT)
    wait_until(lambda: not any(alive(pid) for pid in workers), "orphaned workers kept serving")


SUPERVISE = """
import os, signal, sys
from tanglebrain.serve._workers import Supervisor, listen

def child(sock, index, ready, lifeline):
    {body}

def note(line):  # one write per line: the workers write concurrently
    os.write(1, (line + "\\n").encode())

sup = Supervisor(listen("127.0.0.1", 0, 2), 2, child, note)
code = sup.run(lambda: note("ready"))
note("exit " + str(code))
"""


def supervise(tmp: Path, body: str) -> subprocess.Popen[str]:
    script = tmp / "supervise.py"
    script.write_text(SUPERVISE.format(body=body))
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)  # fmt: skip


@pytest.mark.parametrize(
    ("body", "lines"),
    [
        # One dies before it is ready: the other is stopped too, exit 1.
        (
            "ready() if index == 0 else os._exit(3)\n    os.read(lifeline, 1)",
            ["1 of 2 workers failed to start", "worker 2 exited with code 3", "exit 1"],
        ),
        # A crash inside a worker is one line each, not a traceback.
        ("raise RuntimeError('boom')", ["worker 1 failed: RuntimeError: boom",
                                        "worker 2 failed: RuntimeError: boom",
                                        "2 of 2 workers failed to start",
                                        "worker 1 exited with code 1",
                                        "worker 2 exited with code 1", "exit 1"]),
    ],
)  # fmt: skip
def test_supervisor_failures(tmp_path: Path, body: str, lines: list[str]) -> None:
    out, err = supervise(tmp_path, body).communicate(timeout=WAIT)
    assert "Traceback" not in out + err
    assert sorted(out.splitlines()) == sorted(lines)


def test_supervisor_clean_stop(tmp_path: Path) -> None:
    body = "import signal; signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM}); ready(); "
    body += "signal.sigwait({signal.SIGTERM})"  # blocked first: a SIGTERM cannot slip past
    proc = supervise(tmp_path, body)
    assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    proc.send_signal(signal.SIGTERM)  # relayed: both workers return normally
    out, err = proc.communicate(timeout=WAIT)
    assert out == "exit 0\n" and "Traceback" not in err


def test_a_stop_during_startup_forks_no_more_and_exits_0(tmp_path: Path) -> None:
    # The first worker stops the supervisor while the others may not be forked yet.
    body = "if index == 0: os.kill(os.getppid(), signal.SIGTERM)\n    ready(); os.read(lifeline, 1)"
    script = tmp_path / "supervise.py"
    script.write_text(SUPERVISE.format(body=body).replace(", 2, child", ", 6, child"))
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         env=env, timeout=WAIT)  # fmt: skip
    assert out.stdout == "exit 0\n" and out.stderr == ""  # not "ready": it stopped first


def test_a_port_served_already_is_refused(tmp_path: Path, sim: Simulator) -> None:
    server, _ = start_workers(tmp_path, sim)
    try:
        port = server.base_url.rsplit(":", 1)[1].split("/")[0]
        for n in ("1", "2"):  # SO_REUSEPORT must not let a second server share it
            out = run_cli(["serve", "--port", port, "--workers", n,
                           "--roster", str(tmp_path / "roster.toml")], tmp_path)  # fmt: skip
            assert out.code == 2 and "cannot listen" in out.stderr, out.stderr
    finally:
        assert server.stop() == 0


def test_workers_out_of_range_exit_2(tmp_path: Path) -> None:
    for bad in ("0", "65"):
        out = run_cli(["serve", "--port", "0", "--workers", bad], tmp_path)
        assert out.code == 2 and "--workers must be between 1 and 64" in out.stderr
