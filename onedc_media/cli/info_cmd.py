"""``onedc-media info``: streams, packets, true byte counts, model hashes and bpp."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from typing import Any

EPILOG = """\
bits per pixel:
  For a file holding one image stream, bpp = file bytes * 8 / pixels, headers and
  framing included: the number to compare codecs by. With several streams (or video)
  bpp is per stream, payload bytes * 8 / pixels; the output says which.

examples:
  onedc-media info photo.odc
  onedc-media info --json clip.odc | jq '.streams[0].model'
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "info",
        help="show the streams, packets, byte counts, model hash and bpp of an .odc file",
        description="Read an .odc file completely (checking every checksum) and print its "
        "form (stream or still), "
        "streams (codec, size, model name and SHA-256, parameters), packet count, total "
        "bytes, payload bytes, framing overhead and bits per pixel. A damaged or "
        "truncated file is an error.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("file", metavar="FILE.odc", help="the file to inspect")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from onedc_media import container

    with container.open(args.file) as inp:
        stats = container.measure(inp)
        index = inp.index
        report = _report(args.file, inp, stats, len(index), inp.index_source)
    if args.json:
        print(json.dumps(report, indent=2, ensure_ascii=False))
    else:
        print(_text(report))
    return 0


def _report(path: str, inp: Any, stats: Any, index_entries: int, index_source: Any) -> dict:
    streams = []
    for s in stats.streams:
        h = s.header
        streams.append(
            {
                "index": h.index,
                "media_type": h.media_type,
                "codec": h.codec,
                "width": h.width,
                "height": h.height,
                "pixel_format": h.pixel_format,
                "color": asdict(h.color),
                "time_base": _ratio(h.time_base),
                "frame_rate": None if h.frame_rate is None else _ratio(h.frame_rate),
                "codec_params": dict(h.codec_params),
                "model": None if h.model is None else asdict(h.model),
                "passthrough": h.passthrough,
                "extradata_bytes": len(h.extradata),
                "sample_rate": h.sample_rate,
                "channels": h.channels,
                "channel_layout": h.channel_layout,
                "sample_format": h.sample_format,
                "metadata": dict(h.metadata),
                "packets": s.packets,
                "keyframes": s.keyframes,
                "payload_bytes": s.payload_bytes,
                "bpp": s.bpp,
                "bpp_basis": s.bpp_basis,
            }
        )
    return {
        "file": path,
        "form": inp.form,
        "format_version": inp.format_version,
        "min_reader_version": inp.min_reader_version,
        "file_bytes": stats.file_bytes,
        "metadata": inp.metadata,
        "packets": stats.packets,
        "keyframes": stats.keyframes,
        "payload_bytes": stats.payload_bytes,
        "framing_bytes": stats.framing_bytes,
        "framing_bytes_per_packet": stats.framing_bytes_per_packet,
        "index_entries": index_entries,
        "index_source": index_source,
        "streams": streams,
    }


def _ratio(value: Any) -> str:
    return f"{value.numerator}/{value.denominator}"


_BASIS = {
    "file": "file bytes * 8 / pixels, headers included",
    "payload": "payload bytes * 8 / pixels, per frame; headers not included",
}


def _text(r: dict) -> str:
    versions = f"v{r['format_version']} (min reader v{r['min_reader_version']})"
    lines = [f"{r['file']}: .odc format {versions}, {r['form']} form, {r['file_bytes']:,} bytes"]
    if r["metadata"]:
        lines.append("  metadata: " + ", ".join(f"{k}={v}" for k, v in r["metadata"].items()))
    for s in r["streams"]:
        lines += _stream_lines(s)
    n = r["packets"]
    share = r["framing_bytes"] / r["file_bytes"] * 100 if r["file_bytes"] else 0.0
    per = f"{r['framing_bytes_per_packet']:.1f} per packet, " if n else ""
    lines.append(
        f"  total: {n:,} packets ({r['keyframes']:,} keyframes), {r['file_bytes']:,} bytes: "
        f"payload {r['payload_bytes']:,}, framing {r['framing_bytes']:,} ({per}{share:.1f}%)"
    )
    source = {"trailing": "trailing index", "scan": "no trailing index; found by a scan",
              "still": "a still holds one picture"}
    lines.append(f"  index: {r['index_entries']:,} keyframes ({source[r['index_source']]})")
    return "\n".join(lines)


def _stream_lines(s: dict) -> list[str]:
    head = f"  stream {s['index']}: {s['media_type']} {s['codec']}"
    if s["passthrough"]:
        head += " (passthrough)"
    if s["width"] or s["height"]:
        c = s["color"]
        head += (
            f" {s['width']}x{s['height']} {s['pixel_format']}, colour "
            f"{c['primaries']}/{c['transfer']}/{c['matrix']} {c['range']}"
        )
    if s["sample_rate"] or s["channels"]:
        layout = " ".join(x for x in (s["channel_layout"], s["sample_format"]) if x)
        head += f" {s['sample_rate']} Hz, {s['channels']} ch {layout}".rstrip()
    head += f", time base {s['time_base']}"
    if s["frame_rate"]:
        head += f", {s['frame_rate']} fps"
    lines = [head]
    if s["model"]:
        m = s["model"]
        parsing = f" (parsing {m['parsing_sha256']})" if m["parsing_sha256"] else ""
        if m["name"] or len(m["sha256"]) != 16:
            lines.append(f"    model:   {m['name']} sha256 {m['sha256']}{parsing}")
        else:  # a still's model id; the decoder finds the weights
            lines.append(f"    model:   id {m['sha256']} (the start of the weights' SHA-256)")
    if s["codec_params"]:
        params = json.dumps(s["codec_params"], sort_keys=True, ensure_ascii=False)
        lines.append(f"    params:  {params}")
    if s["extradata_bytes"]:
        lines.append(f"    extradata: {s['extradata_bytes']} bytes")
    if s["metadata"]:
        lines.append("    metadata: " + ", ".join(f"{k}={v}" for k, v in s["metadata"].items()))
    lines.append(
        f"    packets: {s['packets']:,} ({s['keyframes']:,} keyframes), "
        f"payload {s['payload_bytes']:,} bytes"
    )
    if s["bpp"] is not None:
        lines.append(f"    bpp:     {s['bpp']:.4f} ({_BASIS[s['bpp_basis']]})")
    return lines
