"""A sweep folder as a TensorBoard dashboard (``tensorboard --logdir SWEEP_FOLDER``).

Every run logs its normalised score twice: as ``eval/normalized_score`` (the same tag in every
run) and under a tag that names its group, ``score/<task>/<algo>/<preset>``
(:func:`score_tag`). TensorBoard's custom-scalars charts select what they plot by tag regex
only, never by run, so the group in the tag is what lets one chart hold the seeds of one task and
algorithm; the Scalars tab shows the same grouping (a chart per ``score/...`` tag) without the
layout. :func:`write_dashboard` writes the layout, a category per task and a chart per algorithm
(and preset, when the sweep has several), into the sweep folder itself. The HParams tab needs
nothing more: each finished run logs its settings and final scores as hparams (the trainer's
``_log_hparams``), a row of the table each.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from pathlib import Path

# the event file of the layout, told apart from the runs' own by its name's suffix (rewritten whole)
DASHBOARD_SUFFIX = ".empo-dashboard"
SCORE_GROUP = "score"


def algo_label(algo: str, agent: str = "sac") -> str:
    """The algorithm as a tag segment: ``mopo``, or ``mopo+sb3-sac`` for another agent (as the report
    keeps another agent's runs apart, a chart does)."""
    return algo if agent == "sac" else f"{algo}+{agent}"


def score_tag(task: str, algo: str, preset: str, agent: str = "sac") -> str:
    """``score/<task>/<algo>/<preset>``: the tag of a run's normalised score that names its group."""
    return f"{SCORE_GROUP}/{task}/{algo_label(algo, agent)}/{preset}"


def _escape(text: str) -> str:
    """``text`` as a literal in a regex, escaping only what is special (``re.escape`` also escapes
    ``-``, which makes the regexes the dashboard shows hard to read)."""
    return re.sub(r"([.^$*+?{}\[\]\\|()])", r"\\\1", text)


def dashboard_layout(groups: Iterable[tuple[str, str, str]]) -> object:
    """The custom-scalars layout (a ``layout_pb2.Layout``) of (task, algo label, preset) groups: a
    category per task, a chart per algorithm whose regex matches its runs' :func:`score_tag`; with
    several presets, a chart per algorithm and preset (their runs are different things)."""
    from tensorboard.plugins.custom_scalar import layout_pb2

    groups = sorted(set(groups))
    several_presets = len({preset for _, _, preset in groups}) > 1
    charts: dict[str, dict[str, str]] = {}  # task -> chart title -> regex
    for task, algo, preset in groups:
        prefix = f"{SCORE_GROUP}/{task}/{algo}/"
        if several_presets:
            charts.setdefault(task, {})[f"{task} {algo} ({preset})"] = "^" + _escape(prefix + preset) + "$"
        else:
            charts.setdefault(task, {})[f"{task} {algo}"] = "^" + _escape(prefix) + "[^/]+$"
    return layout_pb2.Layout(
        category=[
            layout_pb2.Category(
                title=f"{task}: normalised score against SAC updates, a line per run",
                chart=[
                    layout_pb2.Chart(title=title, multiline=layout_pb2.MultilineChartContent(tag=[regex]))
                    for title, regex in by_title.items()
                ],
            )
            for task, by_title in charts.items()
        ]
    )


def _layout_summary(layout: object) -> object:
    """The layout as the one summary value the custom-scalars plugin reads (its config tag)."""
    from tensorboard.compat.proto.summary_pb2 import Summary
    from tensorboard.compat.proto.tensor_pb2 import TensorProto
    from tensorboard.compat.proto.tensor_shape_pb2 import TensorShapeProto
    from tensorboard.plugins.custom_scalar import metadata

    tensor = TensorProto(dtype="DT_STRING", string_val=[layout.SerializeToString()], tensor_shape=TensorShapeProto())
    value = Summary.Value(tag=metadata.CONFIG_SUMMARY_TAG, tensor=tensor, metadata=metadata.create_summary_metadata())
    return Summary(value=[value])


def write_dashboard(sweep_dir: str | Path, groups: Iterable[tuple[str, str, str]]) -> Path:
    """Write the layout of these (task, algo label, preset) groups into ``sweep_dir``, replacing the one
    written before; returns the event file's path."""
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    sweep_dir = Path(sweep_dir)
    pattern = f"events.out.tfevents.*{DASHBOARD_SUFFIX}"
    old = set(sweep_dir.glob(pattern))
    summary = _layout_summary(dashboard_layout(groups))
    writer = EventFileWriter(str(sweep_dir), filename_suffix=DASHBOARD_SUFFIX)
    try:
        # the step grows with time: a TensorBoard already reading the folder takes the newest layout
        writer.add_event(Event(wall_time=time.time(), step=int(time.time()), summary=summary))
    finally:
        writer.close()
    new = sorted(set(sweep_dir.glob(pattern)) - old)
    for stale in old:
        stale.unlink(missing_ok=True)
    return new[-1]
