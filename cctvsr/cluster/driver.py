"""`enhance --ray`: the driver. It opens each input's output folder as one machine does (run.json,
--resume checks), plans the work units, and runs two Ray Data stages:

1. units → `detect_batch` CPU tasks (decode … select); each input's unit results are joined as soon
   as its last one arrives (join.py), into the face units one machine would super-resolve;
2. face units → `SuperResolveUnits` actors (GPU actors where the cluster has GPUs, otherwise CPU
   actors with a fractional CPU request, one torch thread each) → back to the driver, which is the
   one writer of every input folder: it writes each input's faces in one machine's order with the
   same `FaceWriter` and `ManifestWriter`, then tracks.json, report.html and finished.json.

Only the driver writes, so a task or actor that Ray retries after a crash can never write a face
twice; faces are written as their units come back, so a killed driver leaves a manifest that
`--resume` continues from. The driver holds the selected face crops between the two stages (a few
per track), never frames.
"""

from __future__ import annotations

import logging
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from cctvsr.cluster import require_ray
from cctvsr.errors import InputError
from cctvsr.output.records import MANIFEST_FILE

if TYPE_CHECKING:
    from cctvsr.cluster.join import JoinedInput
    from cctvsr.cluster.segment import UnitResult
    from cctvsr.cluster.units import WorkUnit
    from cctvsr.jobs.enhance import EnhanceOptions, EnhanceSummary, FolderState, InputSummary, ProgressFactory, _Run
    from cctvsr.output.manifest import ManifestWriter
    from cctvsr.output.writer import FaceWriter
    from cctvsr.pipeline import ProgressHooks
    from cctvsr.video import SourceInfo

LOCAL_OBJECT_STORE = 256 * 1024**2  # bytes: `--ray local` keeps Ray's shared memory small (faces, not frames, cross it)
SR_ACTOR_CPUS = 0.5  # a CPU actor's request: below one, so that tasks still get a core while actors start
# A task whose worker dies (a node lost, a process killed) is retried by Ray (3 times, Ray's default for
# tasks); a dead SR actor is restarted and its call retried (Ray Data's actor pools: without limit).


def check_options(options: EnhanceOptions) -> None:
    """Before any work: Ray is installed, and the options are ones the cluster runs as one machine does."""
    require_ray()
    if options.fusion.fuse:
        raise InputError("--fuse (on by default) is not yet supported with --ray: add --no-fuse, or run it on one machine")
    if options.faces.all_frames:
        raise InputError("--all-frames is not yet supported with --ray; run it on one machine (drop --ray)")
    if options.annotate is not None:
        raise InputError("--annotate is not supported with --ray (it writes one video); run it on one machine")


def connect(address: str) -> bool:
    """Join or start Ray; True when this call started it (and must shut it down)."""
    ray = require_ray()
    if ray.is_initialized():
        return False
    try:
        if address == "local":
            ray.init(address="local", include_dashboard=False, object_store_memory=LOCAL_OBJECT_STORE, log_to_driver=False,
                     logging_level=logging.WARNING)
        else:
            ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"--ray {address}: cannot join a Ray cluster ({first})") from None
    return True


@dataclass
class _Input:
    """One input on its way through the cluster: its folder, its units and, once joined, its writer."""

    source: SourceInfo
    folder: Path
    state: FolderState
    units: list[WorkUnit] = field(default_factory=list)
    results: list[UnitResult] = field(default_factory=list)
    joined: JoinedInput | None = None
    ready: dict[int, Any] = field(default_factory=dict)  # face unit number -> its SR images (None: all resumed)
    next: int = 0  # the next face unit to write
    manifest: ManifestWriter | None = None
    writer: FaceWriter | None = None
    failed: str | None = None


class _Nodes:
    """Per-node counts for the summary."""

    def __init__(self) -> None:
        self.counts: dict[str, dict[str, int]] = {}

    def add(self, node: str, what: str, n: int = 1) -> None:
        entry = self.counts.setdefault(node, {"units": 0, "sr_calls": 0})
        entry[what] = entry.get(what, 0) + n


def run_cluster(
    job: _Run,
    sources: list[SourceInfo],
    skipped: list[str],
    *,
    note: Callable[[str], None],
    progress: ProgressFactory,
    on_input: Callable[[InputSummary], None] | None,
) -> EnhanceSummary:
    """`enhance` over every input on Ray; the same summary, folders and files as `jobs.enhance.run`."""
    from cctvsr.jobs.enhance import EnhanceSummary, open_input, record_failures

    if any(item.kind == "stream" for item in sources):
        raise InputError("--ray works on files; a live stream is one machine's work (drop --ray)")
    options = job.options
    summary = EnhanceSummary(inputs=len(sources), warnings=list(skipped))
    pending: dict[int, _Input] = {}
    for index, item in enumerate(sources):
        opened = open_input(job, item, summary, on_input, single=len(sources) == 1)
        if opened is not None:
            pending[index] = _Input(item, *opened)
    if pending:
        started = connect(options.ray or "local")
        try:
            _quiet_ray_data()
            note(f"Ray: {_describe_cluster()}")
            with progress(f"{len(pending)} input(s) on Ray") as hooks:
                _Cluster(job, pending, summary, hooks, on_input, single=len(sources) == 1).run()
        finally:
            if started:
                require_ray().shutdown()
    record_failures(options.out, summary, skipped)
    return summary


def _quiet_ray_data() -> None:
    """Our progress bars and summary, not Ray Data's."""
    import ray.data

    logging.getLogger("ray.data").setLevel(logging.ERROR)  # before the switch, which itself warns
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False


def _describe_cluster() -> str:
    resources = require_ray().cluster_resources()
    nodes = sum(1 for key in resources if key.startswith("node:") and not key.startswith("node:__internal"))
    gpus = int(resources.get("GPU", 0))
    return f"{nodes} node(s), {resources.get('CPU', 0):g} CPU(s)" + (f", {gpus} GPU(s)" if gpus else "")


class _Cluster:
    """The two Ray Data stages and the writing, for the inputs still to do."""

    def __init__(
        self, job: _Run, pending: dict[int, _Input], summary: EnhanceSummary, hooks: ProgressHooks,
        on_input: Callable[[InputSummary], None] | None, *, single: bool,
    ) -> None:
        self.job, self.pending, self.summary, self.hooks, self.on_input = job, pending, summary, hooks, on_input
        self.single = single  # one input: its error is the run's (as on one machine)
        self.nodes = _Nodes()
        self.frames = self.found = self.saved = 0

    def run(self) -> None:
        self._detect()
        self._super_resolve()
        self.summary.nodes = self.nodes.counts

    # -- stage 1: units → decode … select, joined per input -----------------------------------

    def _detect(self) -> None:
        import ray.data

        from cctvsr.cluster.stages import detect_batch
        from cctvsr.cluster.units import frame_times, plan_input

        options = self.job.options
        rows = []
        for index, item in self.pending.items():
            item.units = plan_input(index, item.source, frame_times(item.source), self.job.pipeline, options.segment_minutes)
            rows += [{"key": f"{index}/{u.segment}", "payload": pickle.dumps((u, item.source))} for u in item.units]
        dataset = ray.data.from_items(rows, override_num_blocks=len(rows)).map_batches(
            detect_batch, batch_size=1, num_cpus=1,
            fn_kwargs={"faces": options.faces, "options": self.job.pipeline, "threads": 1},
        )
        for row in dataset.iter_rows():
            outcome = pickle.loads(row["payload"])
            item = self.pending[int(row["key"].split("/")[0])]
            if isinstance(outcome, str):  # a damaged input: as on one machine, the others go on
                item.failed = item.failed or outcome
                item.results.append(None)  # type: ignore[arg-type]
            else:
                item.results.append(outcome)
                self.nodes.add(outcome.node, "units")
                self.frames += outcome.frames
                self.found += outcome.faces_found
                self.hooks.frame(self.frames)
                self.hooks.found(self.found)
            if len(item.results) == len(item.units):
                self._joined(item)

    def _joined(self, item: _Input) -> None:
        from cctvsr.cluster.join import join_input
        from cctvsr.jobs.enhance import discard_failed_start

        if item.failed is not None:
            discard_failed_start(item.folder, item.state)
            if self.single:
                raise InputError(item.failed)
            self.summary.failed.append((item.source.label, item.failed))
            return
        item.joined = join_input(item.results, self.job.pipeline)
        item.results = []

    # -- stage 2: face units → SR actors → the writer --------------------------------------------

    def _super_resolve(self) -> None:
        import ray
        import ray.data

        from cctvsr.cluster.stages import SuperResolveUnits

        rows = []
        for index, item in self.pending.items():
            if item.joined is None:
                continue
            for number, faces in enumerate(item.joined.units):
                if all(face.key in item.state.done for face in faces):
                    item.ready[number] = None
                    continue
                crops = [face.crop.image for face in self.job.pipeline.enhanced(faces)]
                if crops:
                    rows.append({"key": f"{index}/{number}", "payload": pickle.dumps(crops)})
                else:
                    item.ready[number] = []
            self._flush(item)
        if rows:
            gpus = int(ray.cluster_resources().get("GPU", 0))
            resources = {"num_gpus": 1} if gpus else {"num_cpus": SR_ACTOR_CPUS}
            actors = gpus or max(1, int(ray.cluster_resources().get("CPU", 1)))
            dataset = ray.data.from_items(rows, override_num_blocks=len(rows)).map_batches(
                SuperResolveUnits, batch_size=1, compute=ray.data.ActorPoolStrategy(size=min(actors, len(rows))), **resources,
                fn_constructor_kwargs={"sr": self.job.options.sr, "plan": self.job.resolver.plan.describe(), "threads": 1},
            )
            for row in dataset.iter_rows():
                self._super_resolved(row)
        for item in self.pending.values():  # inputs whose every unit was resumed or empty
            self._flush(item)

    def _super_resolved(self, row: dict[str, Any]) -> None:
        """One face unit back from an SR actor: written as soon as the units before it are."""
        index, number = (int(part) for part in row["key"].split("/"))
        item = self.pending[index]
        item.ready[number] = pickle.loads(row["payload"])
        self.nodes.add(row["node"], "sr_calls")
        self._flush(item)

    def _flush(self, item: _Input) -> None:
        """Write the input's face units that are ready, in one machine's order; finish it after the last."""
        from cctvsr.jobs.enhance import end_input, finish_input
        from cctvsr.output.manifest import ManifestWriter
        from cctvsr.output.writer import FaceWriter
        from cctvsr.pipeline import ProgressHooks, save_faces

        joined = item.joined
        if joined is None or item.next > len(joined.units):
            return
        job, result = self.job, joined.result
        while item.next in item.ready:
            faces, outputs = joined.units[item.next], item.ready.pop(item.next)
            item.next += 1
            if outputs is None:
                result.faces_resumed += len(faces)
                continue
            if item.writer is None:
                item.manifest = ManifestWriter(item.folder / MANIFEST_FILE)
                item.writer = FaceWriter(item.folder, item.manifest, job.provenance(item.source), job.model_label, job.resolver.scale)
            before = result.faces_saved
            sr = dict(zip((face.key for face in job.pipeline.enhanced(faces)), outputs))
            save_faces(faces, sr, item.writer, item.state.done, result, ProgressHooks())
            self.saved += result.faces_saved - before
            self.hooks.saved(self.saved)
        if item.next == len(joined.units):
            item.next += 1  # finished: never again
            if item.manifest is not None:
                item.manifest.close()
            end_input(self.summary, finish_input(job, item.source, item.folder, result), self.on_input)

