#!/usr/bin/env python3
"""Reads a `sweep export tensorboard` folder back with TensorBoard's own
reader (the PyPI `tensorboard` package: the event multiplexer and the data
provider its web server uses) and prints what it found as one JSON object:

  {"runs": {RUN: {"scalars": [[tag, step, value bits, wall_time bits], ...],
                  "hparams": {name: value} | null,
                  "session_end": status name | null}},
   "experiment": {"hparams": [[name, type name], ...], "metrics": [tag, ...]} | null}

Usage: read_tensorboard.py LOGDIR. A value and a wall time are printed as the
64-bit pattern of the double (an integer), so the caller compares them with
the database bit for bit without trusting a decimal round trip.
"""
import json
import struct
import sys

from tensorboard import context
from tensorboard.backend.event_processing import data_provider
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.backend.event_processing import plugin_event_multiplexer
from tensorboard.plugins.hparams import api_pb2
from tensorboard.plugins.hparams import metadata as hp_metadata
from google.protobuf import json_format


def bits(x):
    return struct.unpack("<Q", struct.pack("<d", x))[0]


def main():
    logdir = sys.argv[1]
    # Keep every event: the default reservoir keeps a sample.
    mux = plugin_event_multiplexer.EventMultiplexer(
        size_guidance={event_accumulator.TENSORS: 0, event_accumulator.SCALARS: 0}
    )
    mux.AddRunsFromDirectory(logdir)
    mux.Reload()
    provider = data_provider.MultiplexerDataProvider(mux, logdir)
    ctx = context.RequestContext()
    scalars = provider.read_scalars(
        ctx, experiment_id="", plugin_name="scalars", downsample=10**9, run_tag_filter=None
    )
    runs = {}
    for run, tags in scalars.items():
        rows = runs.setdefault(run, {"scalars": [], "hparams": None, "session_end": None})["scalars"]
        for tag, data in tags.items():
            for d in data:
                rows.append([tag, d.step, bits(d.value), bits(d.wall_time)])
    experiment = None
    for run, tags in mux.PluginRunToTagToContent(hp_metadata.PLUGIN_NAME).items():
        entry = runs.setdefault(run, {"scalars": [], "hparams": None, "session_end": None})
        for tag, content in tags.items():
            if tag == hp_metadata.SESSION_START_INFO_TAG:
                info = hp_metadata.parse_session_start_info_plugin_data(content)
                entry["hparams"] = {
                    k: json_format.MessageToDict(v) for k, v in info.hparams.items()
                }
            elif tag == hp_metadata.SESSION_END_INFO_TAG:
                info = hp_metadata.parse_session_end_info_plugin_data(content)
                entry["session_end"] = api_pb2.Status.Name(info.status)
            elif tag == hp_metadata.EXPERIMENT_TAG:
                exp = hp_metadata.parse_experiment_plugin_data(content)
                experiment = {
                    "name": exp.name,
                    "hparams": [[h.name, api_pb2.DataType.Name(h.type), h.differs] for h in exp.hparam_infos],
                    "metrics": [m.name.tag for m in exp.metric_infos],
                }
    json.dump({"runs": runs, "experiment": experiment}, sys.stdout, sort_keys=True)


if __name__ == "__main__":
    main()
