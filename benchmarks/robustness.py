"""Robustness figures: malformed inputs, killed runs, failing writes, hostile names.

Prints one JSON object. Every trial ends in one of three ways:

- ``intact``: the input was accepted and the result keeps every promise (readers: unique ids,
  finite numbers, boxes ordered and inside known images, centres at most half a box outside,
  votes in [0, 1]; killed runs: resumed / rerun outputs complete and equal to an uninterrupted
  run's; writes: the destination holds the new content);
- ``clear_error``: a :class:`~mitokit.errors.MitokitError` whose message is one line naming the
  file (in the CLI: exit code 2, one line on stderr, no traceback), with nothing half-written;
- ``bad``: anything else. Target: 0 bad everywhere; the first few bad cases are listed.

Sections:

- ``readers``: per annotation format, ``--n`` inputs made by mutating a valid file (byte flips,
  deletions, insertions of tokens such as ``nan``, ``-1``, ``1e999``, quotes and brackets,
  truncation) and, for the JSON formats, by replacing one value of the parsed document with a
  value of another type or an out-of-range number; every 10th input also goes through
  ``mitokit labels summary`` (exit code and stderr checked).
- ``writes``: every writer and the CLI's ``labels convert`` with the write failing (no space
  left on the device, a read-only file system, a file where a folder should be, a device as
  destination).
- ``names``: hostile image ids through the writers that derive file names from them.
- ``kills``: ``mitokit train`` killed (SIGKILL) at a random moment and resumed, compared with
  an uninterrupted run tensor by tensor; ``mitokit detect`` killed and run again, compared with
  an uninterrupted run's detections (``--kills`` each; 0 skips them).

Usage::

    python benchmarks/robustness.py                 # 300 inputs per reader, 3 kills each
    python benchmarks/robustness.py --n 50 --kills 0
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import errno
import functools
import io
import json
import logging
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from unittest import mock

from mitokit.errors import MitokitError

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from _samples import sliderunner_bytes  # noqa: E402 - the fuzz tests' sample database

from mitokit.io.annotations import Annotation, AnnotationSet, ImageInfo, Vote
from mitokit.io.formats import BORDER_TOLERANCE_PX, READERS, WRITERS, read, write

TOKENS = [
    b",", b"\n", b'"', b"{", b"]", b"-1", b"-30", b"nan", b"NaN", b"inf", b"1e999", b"\x00",
    b"null", b"true", b"\xff", b"[1,2]", b"{}", b";", b":", b"<", b"/>", b"&amp;", b"0",
]  # fmt: skip
ODD_VALUES = [
    None, True, "", "x", -1, -1e9, 1e308, 0, 0.5, 2, [], {}, [1], [1, 2, 3, 4, 5], "nan", -0.0,
]  # fmt: skip
MAX_BAD_LISTED = 5


class Tally:
    """Counts of intact / clear_error / bad trials, with the first bad cases."""

    def __init__(self) -> None:
        self.counts = {"tried": 0, "intact": 0, "clear_error": 0, "bad": 0}
        self.examples: list[str] = []

    def add(self, outcome: str, detail: str = "") -> None:
        self.counts["tried"] += 1
        self.counts[outcome] += 1
        if outcome == "bad" and len(self.examples) < MAX_BAD_LISTED:
            self.examples.append(detail[:300])

    def to_dict(self) -> dict:
        out = dict(self.counts)
        if self.examples:
            out["bad_examples"] = self.examples
        return out


# --------------------------------------------------------------------------------- readers


def sample_set() -> AnnotationSet:
    anns = [
        Annotation("1", "a.tif", point=(10.0, 20.0), votes=(Vote("r1", 1.0), Vote("r2", 0.5))),
        Annotation("2", "a.tif", box=(1.0, 2.0, 51.0, 52.0), label="non_mitosis", score=0.8),
        Annotation("3", "a.tif", point=(3.0, 4.0), box=(0.0, 0.0, 8.0, 8.0), agreement=0.5),
    ]
    images = {"a.tif": ImageInfo("a.tif", "a.tif", 100, 100, 0.25)}
    return AnnotationSet(anns, images, ["r1", "r2"])


def valid_files(work: Path) -> dict[str, tuple[str, bytes]]:
    """(file name, content) of one valid file per format; folders are left out."""
    out: dict[str, tuple[str, bytes]] = {}
    s = sample_set()
    for fmt, name in (("csv", "t.csv"), ("coco", "c.json"), ("geojson", "g.geojson")):
        write(s, work / name, format=fmt)
        out[fmt] = (name, (work / name).read_bytes())
    if "gc_points" in WRITERS:
        write(s.filter(label="mitosis"), work / "p.json", format="gc_points")
        out["gc_points"] = ("p.json", (work / "p.json").read_bytes())
    out["mitos_atypia14"] = ("F_mitosis.csv", b"1094,1223,0.8 \n476,394,0.65\n")
    out["centroid_csv"] = ("points.csv", b"image,x,y,score\na,10,20,0.9\nb,30,40,0.1\n")
    out["amibr"] = (
        "amibr.csv",
        b",slide,dataset,uid,x,y,expert1_label,expert2_label,expert1_atypical,expert2_atypical,"
        b"expert3_atypical,majority_atypical\n0,002.tiff,MIDOG21,6,4422,216,NMF a,NMF b,False,"
        b"True,False,False\n",
    )
    out["asap_xml"] = (
        "a.xml",
        b'<?xml version="1.0"?><ASAP_Annotations><Annotations>'
        b'<Annotation Name="m1" Type="Dot" PartOfGroup="mitosis"><Coordinates>'
        b'<Coordinate Order="0" X="10.5" Y="20.5"/></Coordinates></Annotation>'
        b'<Annotation Name="b1" Type="Rectangle" PartOfGroup="non-mitosis"><Coordinates>'
        b'<Coordinate Order="0" X="1" Y="2"/><Coordinate Order="1" X="51" Y="2"/>'
        b'<Coordinate Order="2" X="51" Y="52"/><Coordinate Order="3" X="1" Y="52"/>'
        b"</Coordinates></Annotation></Annotations><AnnotationGroups/></ASAP_Annotations>",
    )
    out["imagescope_xml"] = (
        "s.xml",
        b'<?xml version="1.0"?><Annotations MicronsPerPixel="0.25"><Annotation Id="1" '
        b'Name="mitosis"><Regions><Region Id="1" Type="0" Text="mitosis"><Vertices>'
        b'<Vertex X="1" Y="2" Z="0"/><Vertex X="51" Y="2" Z="0"/><Vertex X="51" Y="52" Z="0"/>'
        b'<Vertex X="1" Y="52" Z="0"/></Vertices></Region><Region Id="2" Type="2" Text="">'
        b'<Vertices><Vertex X="30" Y="40" Z="0"/><Vertex X="40" Y="50" Z="0"/></Vertices>'
        b"</Region></Regions></Annotation></Annotations>",
    )
    out["sliderunner"] = ("db.sqlite", sliderunner_bytes(work / "valid.sqlite"))
    return {fmt: v for fmt, v in out.items() if fmt in READERS}


def mutate_bytes(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 6)):
        if not out:
            break
        pos = rng.randrange(len(out))
        kind = rng.choice(["flip", "delete", "insert", "truncate"])
        if kind == "flip":
            out[pos] = rng.randrange(256)
        elif kind == "delete":
            del out[pos : pos + rng.randint(1, 20)]
        elif kind == "insert":
            out[pos:pos] = rng.choice(TOKENS)
        else:
            del out[rng.randint(0, len(out)) :]
    return bytes(out)


def mutate_json(data: bytes, rng: random.Random) -> bytes:
    doc = json.loads(data)
    leaves: list[tuple[object, object]] = []

    def walk(node: object) -> None:
        items = node.items() if isinstance(node, dict) else enumerate(node)  # type: ignore[union-attr]
        for key, value in list(items):
            leaves.append((node, key))
            if isinstance(value, (dict, list)):
                walk(value)

    walk(doc)
    for _ in range(rng.randint(1, 3)):
        parent, key = rng.choice(leaves)
        value = rng.choice(ODD_VALUES)
        parent[key] = copy.deepcopy(value)  # type: ignore[index]
    return json.dumps(doc, allow_nan=True).encode()


def problems(aset: AnnotationSet) -> str:
    """What an accepted set breaks of its promises ('' when intact)."""
    ids = [a.id for a in aset]
    if len(ids) != len(set(ids)):
        return "duplicate ids"
    for a in aset:
        x, y = a.center
        if not (math.isfinite(x) and math.isfinite(y)):
            return f"{a.id}: non-finite centre"
        info = aset.images.get(a.image)
        w = math.inf if info is None or info.width is None else info.width
        h = math.inf if info is None or info.height is None else info.height
        if max(-x, -y, x - w, y - h) > BORDER_TOLERANCE_PX:
            return f"{a.id}: centre ({x}, {y}) outside {w}x{h}"
        if a.box is not None:
            x1, y1, x2, y2 = a.box
            if not (0 <= x1 <= x2 <= w and 0 <= y1 <= y2 <= h):
                return f"{a.id}: box {a.box} not inside {w}x{h}"
        if any(not 0.0 <= v.value <= 1.0 for v in a.votes):
            return f"{a.id}: vote outside [0, 1]"
    return ""


def read_outcome(path: Path, fmt: str | None, options: dict) -> tuple[str, str]:
    try:
        result = read(path, format=fmt, **options)
    except MitokitError as err:
        text = str(err)
        if "\n" in text or str(path) not in text:
            return "bad", f"{fmt}: unclear error {text!r}"
        return "clear_error", ""
    except Exception as err:  # noqa: BLE001 - what the benchmark counts
        return "bad", f"{fmt}: {type(err).__name__}: {err}"
    issue = problems(result)
    return ("bad", f"{fmt}: accepted but {issue}") if issue else ("intact", "")


def cli_outcome(path: Path) -> tuple[str, str]:
    from click.testing import CliRunner

    from mitokit.cli import cli

    result = CliRunner().invoke(cli, ["labels", "summary", str(path)])
    if result.exit_code == 0:
        return "intact", ""
    lines = result.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("mitokit: error:")]
    if result.exit_code == 2 and len(errors) == 1 and "Traceback" not in result.output:
        return "clear_error", ""
    return "bad", f"labels summary exit {result.exit_code}: {result.output[-200:]!r}"


def bench_readers(work: Path, n: int, seed: int) -> dict:
    rng = random.Random(seed)
    out: dict[str, dict] = {}
    cli = Tally()
    options = {"gc_points": {"mpp": 0.25}}
    for fmt, (name, data) in sorted(valid_files(work).items()):
        tally = Tally()
        is_json = data.lstrip()[:1] in (b"{", b"[")
        for k in range(n):
            blob = mutate_json(data, rng) if is_json and k % 2 else mutate_bytes(data, rng)
            path = work / fmt / name
            path.parent.mkdir(exist_ok=True)
            path.write_bytes(blob)
            tally.add(*read_outcome(path, fmt, options.get(fmt, {})))
            if k % 10 == 0 and fmt not in options:
                cli.add(*cli_outcome(path))
        out[fmt] = tally.to_dict()
    out["cli_labels_summary"] = cli.to_dict()
    return out


# ---------------------------------------------------------------------------------- writes


def _failing(err: int) -> Callable:
    def fail(*args, **kwargs):
        raise OSError(err, os.strerror(err))

    return fail


def _failing_open(err: int) -> Callable:
    """``open`` that fails for writing and reads as usual. As the system does: a failing
    ``open`` names its file; a failing ``write`` (no space, quota, read-only) names none."""
    real = io.open

    def fake(file, mode="r", *args, **kwargs):
        if any(c in mode for c in "wax+"):
            if err in (errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.EFBIG):
                handle = real(file, mode, *args, **kwargs)  # the file appears, writing fails
                handle.close()
                raise OSError(err, os.strerror(err))
            raise OSError(err, os.strerror(err), str(file))
        return real(file, mode, *args, **kwargs)

    return fake


def write_outcome(run: Callable[[], object], dest: Path, before: bytes | None) -> tuple[str, str]:
    """A write that must fail cleanly: a one-line MitokitError, the destination unchanged, no
    temporary left beside it."""
    try:
        run()
    except MitokitError as err:
        text = str(err)
        now = dest.read_bytes() if dest.is_file() else None
        left = (
            [p.name for p in dest.parent.iterdir() if ".tmp" in p.name]
            if (dest.parent.is_dir() and dest.parent != Path("/dev"))
            else []
        )
        if "\n" in text or now != before or left:
            return "bad", f"{dest.name}: error {text!r}, changed {now != before}, left {left}"
        return "clear_error", ""
    except Exception as err:  # noqa: BLE001
        return "bad", f"{dest.name}: {type(err).__name__}: {err}"
    return "bad", f"{dest.name}: the failing write reported success"


def bench_writes(work: Path) -> dict:
    tally = Tally()
    s = sample_set()
    folder = work / "writes"
    folder.mkdir()
    targets = {"csv": "o.csv", "coco": "o.json", "geojson": "o.geojson", "gc_points": "o.gc.json"}
    for fmt, name in targets.items():
        if fmt not in WRITERS:
            continue
        data = s.filter(label="mitosis") if fmt == "gc_points" else s
        dest = folder / name
        for existing in (None, b"old content\n"):
            if existing is None:
                dest.unlink(missing_ok=True)
            else:
                dest.write_bytes(existing)
            for err in (errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.EIO, errno.EACCES):
                for target, fake in (
                    ("os.replace", _failing(err)),
                    ("io.open", _failing_open(err)),
                ):
                    if existing is None:
                        dest.unlink(missing_ok=True)
                    else:
                        dest.write_bytes(existing)
                    with mock.patch(target, fake), mock.patch("builtins.open", io.open):
                        run = functools.partial(write, data, dest, format=fmt)
                        tally.add(*write_outcome(run, dest, existing))
        # a file where a folder should be
        blocker = folder / f"blocker_{fmt}"
        blocker.write_bytes(b"x")
        run = functools.partial(write, data, blocker / name, format=fmt)
        tally.add(*write_outcome(run, blocker / name, None))
        # a device as the destination: refused, the device left alone
        if os.path.exists("/dev/full"):
            run = functools.partial(write, data, Path("/dev/full"), format=fmt)
            tally.add(*write_outcome(run, Path("/dev/full"), None))
    out = tally.to_dict()
    out["cli"] = bench_cli_writes(work, folder)
    return out


def bench_cli_writes(work: Path, folder: Path) -> dict:
    """Commands writing where they cannot: exit 2, one line on stderr, nothing left behind."""
    from click.testing import CliRunner

    from mitokit.cli import cli

    tally = Tally()
    src = folder / "src.csv"
    write(sample_set(), src, format="csv")
    blocker = folder / "a_file"
    blocker.write_bytes(b"x")
    bad_places = [blocker / "out", Path("/proc/mitokit-out"), Path("/dev/full")]
    commands = []
    for place in bad_places:
        if place.parent != Path("/dev"):  # root may create files in /dev
            commands.append(["labels", "convert", str(src), f"{place}.geojson"])
        commands.append(["labels", "convert", str(src), str(place)])
        commands.append(["synth", "patches", "--out", str(place), "--n", "4", "--size", "32"])
    for err in (errno.ENOSPC, errno.EROFS):
        for args in (
            ["labels", "convert", str(src), str(folder / "x.geojson")],
            ["synth", "patches", "--out", str(folder / "p"), "--n", "4", "--size", "32"],
        ):
            commands.append((args, err))  # fmt: skip
    for item in commands:
        args, err = item if isinstance(item, tuple) else (item, None)
        patch = mock.patch("io.open", _failing_open(err)) if err else contextlib.nullcontext()
        with patch, mock.patch("builtins.open", io.open):
            result = CliRunner().invoke(cli, args)
        lines = result.stderr.strip().splitlines()
        left = [p.name for p in folder.iterdir() if ".tmp" in p.name]
        outputs = [p for p in (folder / "x.geojson", folder / "p") if p.exists()]
        ok = result.exit_code == 2 and len(lines) == 1 and not left and not outputs
        tally.add("clear_error" if ok else "bad", f"{args}: exit {result.exit_code} {lines[-3:]}")
    return tally.to_dict()


# ----------------------------------------------------------------------------------- names

HOSTILE = ["..", ".", "...", "a/b", "../x", "/abs", "a\x00b", "a\nb", "x" * 300, "A", "a", " ", "~"]


def bench_names(work: Path) -> dict:
    """Per-image GeoJSON over hostile image ids: every file lands inside the folder, none
    overwrites another, or the write is refused with a clear error."""
    from mitokit.io.formats import write_geojson_per_image

    tally = Tally()
    for k, name in enumerate(HOSTILE):
        folder = work / "names" / str(k)
        folder.mkdir(parents=True)
        sentinel = work / "names" / "sentinel.txt"
        sentinel.write_text("mine")
        anns = [Annotation("1", name, point=(1.0, 2.0)), Annotation("2", "ok", point=(3.0, 4.0))]
        aset = AnnotationSet(anns, {name: ImageInfo(name), "ok": ImageInfo("ok")})
        try:
            written = write_geojson_per_image(aset, folder)
        except MitokitError as err:
            ok = "\n" not in str(err) and sentinel.read_text() == "mine"
            tally.add("clear_error" if ok else "bad", f"{name!r}: {err}")
            continue
        except Exception as err:  # noqa: BLE001
            tally.add("bad", f"{name!r}: {type(err).__name__}: {err}")
            continue
        files = list(folder.rglob("*"))
        inside = all(folder.resolve() in p.resolve().parents for p in files)
        inside &= all(folder.resolve() in Path(p).resolve().parents for p in written.values())
        kept = sentinel.read_text() == "mine" and len(list(folder.iterdir())) == 2
        tally.add("intact" if inside and kept else "bad", f"{name!r}: files {files}")
    return tally.to_dict()


# ----------------------------------------------------------------------------------- kills

TRAIN_CONFIG = """
task: patch_classifier
model: {{arch: resnet18, input_size: 32}}
data: {{labels: {labels}, target: soft, folds: 4, fold: 0, balanced: true, batch_size: 16}}
optim: {{name: adam, lr: 1.0e-3}}
train: {{epochs: 4, seed: 3, num_workers: 0}}
"""


def _mitokit(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mitokit", *args], capture_output=True, text=True, **kwargs
    )


def _kill_at(cmd: list[str], after: float, env: dict) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "mitokit", *cmd],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    time.sleep(after)
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait()


def bench_train_kills(work: Path, kills: int, seed: int) -> dict:
    """Kill ``mitokit train`` at random moments, resume, compare every tensor with an
    uninterrupted run."""
    from safetensors.numpy import load_file

    tally = Tally()
    rng = random.Random(seed)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
    data = work / "train_data"
    made = _mitokit("synth", "patches", "--out", str(data), "--n", "128", "--size", "32", env=env)
    if made.returncode != 0:
        return {"skipped": f"synth patches failed: {made.stderr.strip()[-200:]}"}
    config = work / "train.yaml"
    config.write_text(TRAIN_CONFIG.format(labels=data / "labels.csv"))
    ref = work / "train_ref"
    t = time.perf_counter()
    done = _mitokit("train", str(config), "--out", str(ref), "--no-progress", env=env)
    full = time.perf_counter() - t
    if done.returncode != 0:
        return {"skipped": f"reference run failed: {done.stderr.strip()[-300:]}"}
    weights = sorted(ref.rglob("*.safetensors"))
    reference = {p.relative_to(ref): load_file(p) for p in weights}
    resumes = 0
    for k in range(kills):
        run = work / f"train_kill{k}"
        _kill_at(["train", str(config), "--out", str(run), "--no-progress"],
                 rng.uniform(0.35, 0.95) * full, env)  # fmt: skip
        resumed = _mitokit("train", str(config), "--out", str(run), "--resume", "--no-progress",
                           env=env)  # fmt: skip
        resumes += resumed.returncode == 0
        if resumed.returncode != 0:
            # killed before the first epoch's state: a fresh start is the right answer
            resumed = _mitokit("train", str(config), "--out", str(run), "--no-progress", env=env)
        if resumed.returncode != 0:
            tally.add("bad", f"kill {k}: rerun failed: {resumed.stderr.strip()[-300:]}")
            continue
        same = True
        for rel, tensors in reference.items():
            other = load_file(run / rel) if (run / rel).is_file() else None
            if other is None or other.keys() != tensors.keys():
                same = False
                break
            same &= all((other[key] == value).all() for key, value in tensors.items())
        left = [p.name for p in run.rglob("*") if p.name.endswith(".tmp")]
        tally.add("intact" if same and not left else "bad", f"kill {k}: same={same} left={left}")
    out = tally.to_dict()
    out["resumed_from_a_saved_epoch"] = resumes
    out["uninterrupted_s"] = round(full, 1)
    return out


def bench_detect_kills(work: Path, kills: int, seed: int) -> dict:
    """Kill ``mitokit detect`` at random moments, run it again, compare with an uninterrupted
    run; a user's file in the output folder must survive."""
    tally = Tally()
    rng = random.Random(seed)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    import torch

    from mitokit.data.synthetic.generate import write_synthetic_slide
    from mitokit.engines.task import get_task
    from mitokit.models.io import save_model

    torch.manual_seed(0)
    model_cfg = {"arch": "resnet18", "input_size": None}
    net = get_task("tile_classifier").build_model(model_cfg)
    model = save_model(
        net, work / "tile_model", task="tile_classifier", model_cfg=model_cfg,
        extra={"data": {"tile_size": 128}},
    )  # fmt: skip
    slides = work / "slides"
    slides.mkdir()
    for k in range(3):
        write_synthetic_slide(slides / f"s{k}.tif", size=(1600, 1600), seed=k)
    ref = work / "detect_ref"
    cmd = ["detect", str(slides), "--model", str(model), "--threshold", "0.5"]
    t = time.perf_counter()
    done = _mitokit(*cmd, "--out", str(ref), env=env)
    full = time.perf_counter() - t
    if done.returncode != 0:
        return {"skipped": f"reference detect failed: {done.stderr.strip()[-300:]}"}
    expected = sorted(p.relative_to(ref) for p in ref.rglob("*.csv"))
    for k in range(kills):
        out = work / f"detect_kill{k}"
        out.mkdir()
        (out / "notes.txt").write_text("mine")
        _kill_at([*cmd, "--out", str(out)], rng.uniform(0.2, 0.95) * full, env)
        again = _mitokit(*cmd, "--out", str(out), env=env)
        if again.returncode != 0:
            tally.add("bad", f"kill {k}: rerun failed: {again.stderr.strip()[-300:]}")
            continue
        same = all(
            (out / rel).is_file() and (out / rel).read_bytes() == (ref / rel).read_bytes()
            for rel in expected
        )
        left = [p.name for p in out.rglob("*") if ".tmp" in p.name]
        mine = (out / "notes.txt").read_text() == "mine"
        ok = same and not left and mine
        tally.add("intact" if ok else "bad", f"kill {k}: same={same} left={left} mine={mine}")
    result = tally.to_dict()
    result["uninterrupted_s"] = round(full, 1)
    return result


# ------------------------------------------------------------------------------------ main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=300, help="malformed inputs per reader")
    parser.add_argument("--kills", type=int, default=3, help="kills of train and of detect")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--sections", default="readers,writes,names,kills", help="comma-separated sections to run"
    )
    args = parser.parse_args()
    sections = set(args.sections.split(","))
    logging.getLogger("mitokit").setLevel(logging.ERROR)  # the readers' notes are expected here
    work = Path(tempfile.mkdtemp(prefix="mitokit-robustness-"))
    try:
        t = time.perf_counter()
        result: dict = {}
        if "readers" in sections:
            result["readers"] = bench_readers(work, args.n, args.seed)
        if "writes" in sections:
            result["writes"] = bench_writes(work)
        if "names" in sections:
            result["names"] = bench_names(work)
        if args.kills and "kills" in sections:
            result["kills"] = {
                "train": bench_train_kills(work, args.kills, args.seed),
                "detect": bench_detect_kills(work, args.kills, args.seed),
            }
        result["bad_total"] = sum(_bad(v) for v in result.values())
        result["seconds"] = round(time.perf_counter() - t, 1)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result, indent=2))


def _bad(node: object) -> int:
    if isinstance(node, dict):
        return int(node.get("bad", 0)) + sum(_bad(v) for k, v in node.items() if k != "bad")
    return 0


if __name__ == "__main__":
    main()
