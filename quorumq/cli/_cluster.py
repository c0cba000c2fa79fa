"""``quorumq cluster up`` (local broker processes in the foreground) and ``cluster status``."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from types import FrameType

import typer
from rich.console import Console, Group
from rich.table import Table

from quorumq.cli._app import app
from quorumq.cli._broker import run_trio
from quorumq.cli._topic import sasl_from_env, ssl_from_env
from quorumq.cluster import ClusterError, ClusterView, Supervisor, fetch_cluster_view

cluster_app = typer.Typer(help="Run a local cluster and look at one.", no_args_is_help=True)
app.add_typer(cluster_app, name="cluster")

console = Console()
_POLL_S = 0.5


def status_tables(view: ClusterView) -> Group:
    """The brokers table (id, address, fenced?, controller) and the partitions table."""
    brokers = Table(title=f"brokers (cluster {view.cluster_id or '?'})", title_justify="left")
    for column in ("id", "address", "fenced", "controller"):
        brokers.add_column(column, justify="right" if column == "id" else "left")
    for b in view.brokers:
        brokers.add_row(
            str(b.node_id),
            b.address,
            "[red]fenced/offline[/red]" if b.fenced else "no",
            "[bold]active[/bold]" if b.node_id == view.controller_id else "",
        )
    parts = Table(title="partitions", title_justify="left")
    for column in ("topic", "partition", "leader", "epoch", "replicas", "isr"):
        parts.add_column(column, justify="left" if column == "topic" else "right")
    for info in view.partitions:
        short = len(info.isr) < len(info.replicas)
        parts.add_row(
            info.topic,
            str(info.partition),
            "[red]none[/red]" if info.leader_id < 0 else str(info.leader_id),
            str(info.leader_epoch),
            ",".join(map(str, info.replicas)),
            f"[yellow]{','.join(map(str, info.isr))}[/yellow]" if short
            else ",".join(map(str, info.isr)),
        )  # fmt: skip
    footer = f"active controller: {view.controller_id}  (answered by {view.answered_by})"
    return Group(brokers, parts, footer)


@cluster_app.command("status")
def status(
    bootstrap: str = typer.Option(
        "127.0.0.1:9092", "--bootstrap", "-b", help="HOST:PORT[,HOST:PORT...] of brokers."
    ),
    timeout_s: float = typer.Option(5.0, "--timeout", help="Seconds to wait for each broker."),
) -> None:
    """Brokers, the active controller, and every partition's leader, epoch, replicas and ISR."""
    addresses = [a.strip() for a in bootstrap.split(",") if a.strip()]
    if not addresses:
        raise typer.BadParameter("--bootstrap is empty")

    async def first_answer() -> ClusterView:
        errors = []
        for address in addresses:
            try:
                return await fetch_cluster_view(
                    address, timeout_s=timeout_s, sasl=sasl_from_env(), ssl_context=ssl_from_env()
                )
            except ValueError:
                raise typer.BadParameter(f"--bootstrap wants HOST:PORT, got {address!r}") from None
            except ConnectionError as exc:
                errors.append(str(exc))
        raise ConnectionError("; ".join(errors))

    console.print(status_tables(run_trio(first_answer)))


class _Stop(Exception):
    """Raised from the signal handler: Ctrl-C or SIGTERM asked ``cluster up`` to stop."""


@cluster_app.command("up")
def up(
    brokers: int = typer.Option(3, "--brokers", "-n", min=1, max=32, help="Broker processes."),
    base_port: int = typer.Option(9092, "--base-port", help="Broker i listens on base + i."),
    raft_base_port: int | None = typer.Option(
        None, "--raft-base-port", help="Broker i's Raft port is this + i (default base + 10000)."
    ),
    data_dir: Path | None = typer.Option(
        None, "--data-dir", help="Cluster directory (reuse it to restart the same cluster)."
    ),
    log_level: str = typer.Option("warning", "--log-level", help="The brokers' log level."),
    timeout_s: float = typer.Option(60.0, "--timeout", help="Seconds to wait for readiness."),
    broker_arg: list[str] = typer.Option(
        [], "--broker-arg", help="Extra `quorumq broker` option for every broker (repeatable)."
    ),
) -> None:
    """Start a local cluster in the foreground; Ctrl-C or SIGTERM stops every broker cleanly."""
    supervisor = Supervisor(
        brokers,
        base_port=base_port,
        raft_base_port=raft_base_port,
        data_dir=data_dir,
        log_level=log_level,
        broker_args=[arg for item in broker_arg for arg in item.split()],
        # Brokers secured through --broker-arg: the readiness checks log in as the CLI does.
        client_sasl=sasl_from_env(),
        client_ssl=ssl_from_env(),
    )

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        raise _Stop(signal.Signals(signum).name)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        mode = "cluster (Raft controller)" if supervisor.cluster_mode else "standalone brokers"
        console.print(f"starting {brokers} broker(s), {mode}, data in {supervisor.data_dir}")
        supervisor.start(timeout_s=timeout_s)
        console.print(f"[green]ready[/green]  bootstrap: [bold]{supervisor.bootstrap}[/bold]")
        for handle in supervisor.brokers:
            console.print(
                f"  broker {handle.spec.node_id}: {handle.spec.address} pid {handle.pid} "
                f"log {handle.spec.log_path}"
            )
        try:
            console.print(status_tables(supervisor.view()))
        except ClusterError as exc:
            console.print(f"[yellow]status unavailable: {exc}[/yellow]")
        console.print("Ctrl-C stops the cluster.")
        while supervisor.running():
            for node_id, code in supervisor.poll_exits():
                console.print(
                    f"[red]broker {node_id} exited with status {code}[/red]; "
                    f"{len(supervisor.running())} still running. {supervisor.log_tail(node_id, 2)}"
                )
            time.sleep(_POLL_S)
        for node_id, code in supervisor.poll_exits():
            console.print(f"[red]broker {node_id} exited with status {code}[/red]")
        console.print("every broker is gone: exiting")
        raise typer.Exit(1)
    except _Stop as stop:
        console.print(f"{stop}: stopping {len(supervisor.running())} broker(s)")
    finally:
        # A second Ctrl-C must not abandon children half-stopped.
        for signum in previous:
            signal.signal(signum, signal.SIG_IGN)
        supervisor.close()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    console.print("stopped")
