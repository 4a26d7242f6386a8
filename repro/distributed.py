"""keras-tuner's distributed mode for the searches of repro/search.py: one chief process
holds every search's oracle and serves it over gRPC; worker processes ask it for trials,
train them and report back. See docs/tuning.md for running it across machines.

keras-tuner picks a process's role from three environment variables: KERASTUNER_TUNER_ID
(an id containing "chief" for the oracle, any other unique id such as tuner0 for a
worker), KERASTUNER_ORACLE_IP and KERASTUNER_ORACLE_PORT (the chief's address). Search
number i (in the order of `search.searches`) is served on the given port + i. Every role
runs keras-tuner's own `tuner.search()`:
- the chief starts one thread per search, each in `tuner.search()`, which serves that
  search's oracle until every worker has been told to stop (the oracle tells no worker to
  stop before `--workers` of them have asked: see `search.Committing`);
- a worker runs `tuner.search()` on each search in turn, its trials trained as in a
  search of one process.
`launch` starts a chief and workers on 127.0.0.1, waits for the workers, stops the chief
(the oracle's state is committed after every trial, so nothing is lost), and writes the
results as `repro run tuning` does, from the finished searches.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time

from repro import UsageError
from repro.runner import run_claim
from repro.search import is_chief, keras_tuner_output, run_search, searches, work_root

ENVIRONMENT = ("KERASTUNER_TUNER_ID", "KERASTUNER_ORACLE_IP", "KERASTUNER_ORACLE_PORT")


def main(claim, config, seeds, args) -> int:
    """`repro tune --distributed` (the launcher) or `repro tune --role` (one process)."""
    if args.distributed:
        return launch(claim, config, seeds, args)
    tuner_id, ip, port = (os.environ.get(name) for name in ENVIRONMENT)
    if not (tuner_id and ip and port and port.isdigit()):
        raise UsageError(
            "--role is one process of a distributed search: set KERASTUNER_TUNER_ID "
            "(chief, tuner0, tuner1, ...), KERASTUNER_ORACLE_IP and KERASTUNER_ORACLE_PORT"
        )
    if is_chief():
        # What keras-tuner prints while serving (it prints each conditional value it sends).
        with keras_tuner_output(work_root() / f"chief-{port}.log"):
            serve(claim, config, seeds, ip, int(port), args.workers)
    else:
        work(claim, config, seeds, tuner_id, int(port))
    return 0


def port_is_free(ip: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((ip, port))
        except OSError:
            return False
    return True


def listening(ip: str, port: int) -> bool:
    address = "127.0.0.1" if ip in ("", "0.0.0.0") else ip
    try:
        socket.create_connection((address, port), timeout=0.5).close()
    except OSError:
        return False
    return True


def serve(claim, config, seeds, ip: str, base_port: int, workers: int) -> None:
    """The chief: every search's oracle served by keras-tuner's `tuner.search()`, each in a
    thread of its own, until each search has ended."""
    threads = []
    for index, (seed, name) in enumerate(searches(config, seeds)):
        port = base_port + index
        if not port_is_free(ip, port):
            raise UsageError(
                f"port {port} on {ip} is in use: choose another KERASTUNER_ORACLE_PORT"
            )
        # keras-tuner's server reads the port when it starts: one search at a time.
        os.environ["KERASTUNER_ORACLE_PORT"] = str(port)
        tuner = claim.open_search(name, config, seed, workers=workers)
        thread = threading.Thread(target=tuner.search, kwargs={"verbose": 0}, daemon=True)
        thread.start()
        while not listening(ip, port):
            if not thread.is_alive():
                raise UsageError(f"the chief could not serve on port {port} of {ip}")
            time.sleep(0.05)
        threads.append(thread)
    for thread in threads:
        thread.join()


def work(claim, config, seeds, tuner_id: str, base_port: int) -> None:
    """A worker: each search in turn, its trials asked of the chief."""
    for index, (seed, name) in enumerate(searches(config, seeds)):
        os.environ["KERASTUNER_ORACLE_PORT"] = str(base_port + index)  # read by the client
        tuner = claim.open_search(name, config, seed)
        run_search(tuner, claim.seed_data(config, seed), f"{tuner_id}: seed {seed}, {name}")


def launch(claim, config, seeds, args) -> int:
    """A chief and `args.workers` workers on 127.0.0.1; then the results, as `repro run`."""
    ip, base_port = "127.0.0.1", args.port
    ports = range(base_port, base_port + len(searches(config, seeds)))
    busy = [port for port in ports if not port_is_free(ip, port)]
    if busy:
        raise UsageError(
            f"port {busy[0]} on {ip} is in use (this run needs ports {ports.start}-"
            f"{ports.stop - 1}): choose another with --port"
        )
    os.environ["REPRO_TUNER_WORK"] = str(work_root() / "distributed")
    role = [sys.executable, "-m", "repro.cli", "tune", "--role", "--profile", args.profile]
    role += ["--seeds", ",".join(map(str, seeds)), "--workers", str(args.workers)]
    role += [f"--set={setting}" for setting in args.settings]

    def start(tuner_id: str):
        values = (tuner_id, ip, str(base_port))
        return subprocess.Popen(role, env=os.environ | dict(zip(ENVIRONMENT, values, strict=True)))

    chief = start("chief")
    workers = {f"tuner{i}": start(f"tuner{i}") for i in range(args.workers)}
    try:
        while any(process.poll() is None for process in workers.values()):
            if chief.poll() or any(process.poll() for process in workers.values()):
                break  # a process failed: stop the others
            time.sleep(0.2)
    finally:
        for process in [*workers.values(), chief]:
            if process.poll() is None:
                process.terminate()  # the chief: its state is committed after every trial
                process.wait()
    failed = [name for name, process in workers.items() if process.returncode != 0]
    if chief.returncode not in (0, -signal.SIGTERM):
        failed.append("chief")
    if failed:
        print(f"tune: {failed[0]} failed; outputs not written", file=sys.stderr)
        return 1
    print(run_claim(claim, args.profile, seeds, args.out, config).describe())
    return 0
