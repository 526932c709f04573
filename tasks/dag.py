"""Submitting the flow's tasks in dependency order, from the flow's own thread.

Why not ``task.submit(upstream_future, ...)`` all at once: Prefect creates a task run when a worker
thread picks it up, and records as its *parent* (``task_inputs.__parents__``, Prefect's inference
for generator tasks) any input whose task run is Running at that moment; the UI then draws the
task inside that upstream's collapsed node (the graph API's ``encapsulating``), and the timeline
shows gaps. Submitting ``train`` with ingest's future while ingest ran hid eight of 38 tasks inside
``ingest``. The same happens to a task submitted from a callback or a thread inside a running task
(its context is active there). So here a task is submitted only once every input it takes has
finished, and only by the thread that calls ``Dag.run`` (the flow's): each task is a node of its own,
with an edge from each input. Nothing is lost: a task could not start before its inputs were done.

A task whose input failed (or was itself not run) is never submitted. It is recorded as a task run
under the name it would have had (``evaluate[bias]``), in a terminal ``NotRun`` state (Prefect's
Cancelled type) with edges from its inputs and a message naming the failed input: not a hashed
``evaluate-d9f`` Pending forever, and the failed flow run's graph ends where the run did.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from prefect.context import FlowRunContext, TagsContext
from prefect.futures import PrefectFuture, as_completed
from prefect.states import Cancelled, State

NOT_RUN = "NotRun"


@dataclass(eq=False)
class Node:
    """One task of the flow: what to submit, and once ``Dag.run`` has settled it, its future or its NotRun state.

    Behaves like a finished future where the flow reads it (``state``, ``result()``, ``task_run_id``).
    """

    name: str
    task: Any
    args: tuple
    kwargs: dict
    future: PrefectFuture | None = None
    not_run: State | None = None
    not_run_id: Any = None
    settled: bool = False  # set by Dag.run once the task run reached a final state (or was marked NotRun)
    tolerated: frozenset[str] = frozenset()  # parameters whose failed input passes None instead of marking this node NotRun

    def tolerating(self, *parameters: str) -> Node:
        """Run even when the inputs of these parameters failed or were not run, given None for them (a report
        that must say what happened, whatever happened)."""
        self.tolerated = frozenset(parameters)
        return self

    def parameters(self) -> dict[str, list[Node]]:
        """The task's parameters that are other nodes' outputs (a node, or a dict of nodes), by parameter name."""
        bound = inspect.signature(self.task.fn).bind_partial(*self.args, **self.kwargs).arguments
        upstream = {name: _nodes_in(value) for name, value in bound.items()}
        return {name: nodes for name, nodes in upstream.items() if nodes}

    @property
    def inputs(self) -> list[Node]:
        return [n for nodes in self.parameters().values() for n in nodes]

    @property
    def required(self) -> list[Node]:
        """The inputs that must complete for this node to run (all but the tolerated parameters')."""
        return [n for name, nodes in self.parameters().items() if name not in self.tolerated for n in nodes]

    @property
    def state(self) -> State:
        if self.not_run is not None:
            return self.not_run
        if self.future is None:
            raise RuntimeError(f"{self.name} has not been submitted")
        return self.future.state

    @property
    def task_run_id(self) -> Any:
        return self.not_run_id if self.not_run is not None else self.future.task_run_id

    def result(self, raise_on_failure: bool = True) -> Any:
        if self.not_run is not None:
            if raise_on_failure:
                raise RuntimeError(f"{self.name} was not run: {self.not_run.message}")
            return None
        return self.future.result(raise_on_failure=raise_on_failure)


def _nodes_in(value: Any) -> list[Node]:
    if isinstance(value, Node):
        return [value]
    return [v for v in value.values() if isinstance(v, Node)] if isinstance(value, dict) else []


def is_not_run(state: State) -> bool:
    return state.name == NOT_RUN


@dataclass
class Dag:
    """Tasks added with their inputs (other nodes, or dicts of nodes, among the arguments); ``run`` submits and settles them all."""

    nodes: list[Node] = field(default_factory=list)

    def add(self, name: str, task: Any, *args: Any, **kwargs: Any) -> Node:
        node = Node(name, task, args, kwargs)
        self.nodes.append(node)
        return node

    def run(self) -> list[Node]:
        """Submit each node once all its inputs completed (mark it NotRun once one did not), until every node is settled."""
        waiting = [n for n in self.nodes if not n.settled and n.future is None]
        running = [n for n in self.nodes if not n.settled and n.future is not None]
        while waiting or running:
            for node in list(waiting):
                if not all(i.settled for i in node.inputs):
                    continue
                waiting.remove(node)
                lost = [i for i in node.required if not i.state.is_completed()]
                if lost:
                    mark_not_run(node, lost)
                else:
                    node.future = node.task.submit(*_resolved(node.args), **_resolved(node.kwargs))
                    running.append(node)
            if running:
                finished = _first_finished([n.future for n in running])
                finished.wait()  # keeps its final state: no API read each time the flow looks at it
                for node in [n for n in running if n.future is finished]:
                    node.settled = True
                    running.remove(node)
            elif waiting:  # every input settled yet nothing submittable: a cycle
                raise RuntimeError(f"tasks waiting on each other: {[n.name for n in waiting]}")
        return self.nodes


def _first_finished(futures: list[PrefectFuture]) -> PrefectFuture:
    completed = as_completed(futures)
    try:
        return next(completed)
    finally:
        completed.close()


def _resolved(value: Any) -> Any:
    """Arguments with every Node replaced by its (finished) future: Prefect resolves it and draws the edge;
    a tolerated input that did not complete becomes None."""
    if isinstance(value, Node):
        return value.future if value.not_run is None and value.future.state.is_completed() else None
    if isinstance(value, tuple):
        return tuple(_resolved(v) for v in value)
    if isinstance(value, dict):
        return {k: _resolved(v) for k, v in value.items()}
    return value


def mark_not_run(node: Node, lost: Iterable[Node]) -> None:
    """Record ``node`` as a task run of its own name in a terminal NotRun state, with edges from its inputs."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import TaskRunResult

    lost = list(lost)
    message = "not run: " + ", ".join(f"{i.name} {'was not run' if is_not_run(i.state) else 'failed'}" for i in lost)
    node.not_run = Cancelled(name=NOT_RUN, message=message)
    node.settled = True
    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        return
    inputs = {name: [TaskRunResult(id=u.task_run_id) for u in upstream if u.task_run_id is not None] for name, upstream in node.parameters().items()}
    with get_client(sync_client=True) as client:
        run = client.create_task_run(
            task=node.task,
            flow_run_id=context.flow_run.id,
            dynamic_key=node.name,
            name=node.name,
            extra_tags=TagsContext.get().current_tags,
            state=node.not_run,
            task_inputs=inputs,
        )
    node.not_run_id = run.id
