"""``bench score``: outside colorizers' folders scored into a run folder, a new one made
from a folder of ground-truth photos (``score_folders``) or an existing ``bench run``
(``score_into_run``), so trained losses and outside colorizers meet in one table and one set
of paired tests. Every folder is read and checked before anything is written.
"""
from __future__ import annotations

import logging
import os
import shutil
from datetime import datetime
from functools import partial
from pathlib import Path

from colorbench_datasets import load_data, load_val_photos
from colorbench_datasets.tensors import val_mode
from tqdm.auto import tqdm

from bench.config.machine import package_versions, resolve_device
from bench.config.options import default_out
from bench.run.stages import assemble_metrics, run_identity
from bench.run.reuse import discard_run
from bench.rundir.guard import SCORE_MAKER, check_new_score_folder
from bench.rundir.layout import GRAY, TRUTH, RunFolder, is_within
from bench.rundir.read import external_entries, load_run, read_config, read_json
from bench.rundir.write import write_json
from bench.score.external import (
    Outside,
    ScoreInputError,
    check_folder_free,
    check_name,
    read_outside,
    score_outside,
)
from bench.score.images import GalleryImages
from bench.score.networks import load_metric_nets
from bench.score.per_image import write_baseline_scores
from bench.score.presets import ScoringProtocol
from bench.score.protocol import metric_protocol, predictions_text, scoring_protocol_of
from bench.score.scorer import Scorer

log = logging.getLogger("colorbench")

SCORE_TASK = "bench score"  # what its lock says it does (bench/rundir/lock.py)


def parse_pairs(pairs) -> dict[str, str]:
    """``NAME=FOLDER`` arguments as ``{name: folder}``, each name once."""
    out: dict[str, str] = {}
    for pair in pairs:
        name, sep, folder = str(pair).partition("=")
        if not sep or not folder:
            raise ScoreInputError(f"{pair!r}: expected NAME=FOLDER, e.g. ddcolor=out/ddcolor")
        if name in out:
            raise ScoreInputError(f"{name!r} is given twice; name each colorizer once")
        out[name] = folder
    if not out:
        raise ScoreInputError("no predictions given: add NAME=FOLDER for each colorizer, e.g. ddcolor=out/ddcolor")
    return out


def _refuse_writing_into(out: Path, folders: dict[str, str]) -> None:
    """The run folder may not lie inside a folder that is read: truth or predictions."""
    for label, folder in folders.items():
        if is_within(out, folder):
            raise ScoreInputError(f"the output folder {out} is inside {label} {folder}, which is only read; "
                                  "choose a folder outside it (--out)")


def _photo_sizes(data):
    openers = dict(data.sources.val) if data.sources is not None else {}
    names = data.val.names

    def size(i: int):
        return openers[names[i]]().size if names[i] in openers else None

    return size


def _read_all(predictions: dict[str, str], data, size: int, resize: str, allow_missing: bool,
              workers: int) -> list[Outside]:
    sizes = _photo_sizes(data)
    outside = [read_outside(name, folder, data.val.names, data.val.rgb, size, resize, sizes, allow_missing, workers)
               for name, folder in predictions.items()]
    for o in outside:
        if not o.complete:
            log.warning("%s: scored on the %d of %d val photos it has a prediction for (--allow-missing); "
                        "%d without: %s", o.name, len(o.indices), o.of, len(o.missing), ", ".join(o.missing[:5]))
        if o.extra:
            log.warning("%s: %d file(s) named like no val photo ignored (--allow-missing), e.g. %s",
                        o.name, len(o.extra), ", ".join(o.extra[:5]))
        for warning in o.warnings():
            log.warning("%s: %s", o.name, warning)
    return outside


def _score_all(folder: RunFolder, config: dict, scorer: Scorer, outside: list[Outside], gallery) -> dict:
    """Score each into ``folder``, list it in config.json (replacing an earlier one of its
    name) and rewrite metrics.csv; returns the config as written."""
    entries = {e["name"]: e for e in external_entries(config)}
    for o in outside:
        score_outside(folder, scorer, o, gallery)
        entries[o.name] = o.entry() | {"predictions": predictions_text(scorer.protocol, outside=True),
                                       "dir": folder.external(o.name).path.name}
        write_json(folder.config, config | {"external": list(entries.values())})
    config["external"] = list(entries.values())
    assemble_metrics(folder, config)
    return config


def _bar(progress: bool):
    return partial(tqdm, desc="Loading photos", unit="img", leave=False, dynamic_ncols=True) if progress else None


def _lock(folder: RunFolder):
    """The run folder's lock as `bench score` takes it: another `bench score` on the same run
    is waited for (each adds its rows to what the other wrote), anything else refuses."""
    return folder.lock(task=SCORE_TASK, wait_for=(SCORE_TASK,))


def _basis(config: dict) -> tuple:
    """What outside rows are scored against: the val photos, their size and the protocol."""
    val = ((config.get("data") or {}).get("fingerprint") or {}).get("val")
    return val, config["options"].get("size"), scoring_protocol_of(config).settings()


def _check_names(folder: RunFolder, config: dict, outside: list[Outside]) -> None:
    """Each colorizer's name against the run's rows and its folder against the names that
    hold one (read inside the lock: another `bench score` may have just added one)."""
    listed = {e["name"] for e in external_entries(config)}
    for o in outside:
        check_name(o.name, [c["name"] for c in config["combinations"]])
        check_folder_free(folder.external(o.name), o.name)
        if o.name in listed:
            log.warning("%s: replacing its earlier scores in %s", o.name, folder)


def score_into_run(run_dir, predictions: dict[str, str], *, allow_missing: bool = False, device: str = "auto",
                   strict_weights: bool = False, protocol: ScoringProtocol | None = None, workers: int = 2,
                   progress: bool = False) -> list[dict]:
    """Score each ``{name: folder}`` on ``run_dir``'s own val photos under its own protocol,
    as rows beside its trained combinations; returns their records. ``protocol``: what the
    caller asked for, refused if it is not the run's."""
    run = load_run(run_dir)  # a first look, to prepare the photos; what is written is decided in the lock
    folder, config, options = run.folder, run.config, run.options
    recorded = scoring_protocol_of(config)
    if protocol is not None and protocol.settings() != recorded.settings():
        raise ScoreInputError(f"{run.path} was scored under the protocol {recorded.label}, not {protocol.label}: "
                              "outside rows are scored under the run's own, so that they compare; drop the protocol "
                              "options, or score into a new folder with --truth and --out")
    for name in predictions:
        check_name(name, run.combination_names)
    _refuse_writing_into(folder.path, {f"{n}'s predictions": f for n, f in predictions.items()}
                         | ({"the val photos": options["val_data"]} if options.get("val_data") else {}))
    size, scored = int(options.get("size", 0)), config.get("scored_truth")
    if scored:
        data = load_val_photos(scored["folder"], size, scored.get("resize", "crop"), workers, _bar(progress))
    else:
        data = load_data(options.get("data"), options.get("val_data"), options.get("dataset"), size, workers=workers,
                         progress=_bar(progress), data_root=options.get("data_root"),
                         val_geometry=recorded.val_geometry)
    recorded_val = ((config.get("data") or {}).get("fingerprint") or {}).get("val")
    if recorded_val is not None and data.manifest["fingerprint"]["val"] != recorded_val:
        raise ScoreInputError(f"the val photos of {run.path} ({data.manifest['source']}) are not those it was scored "
                              "on: they changed since; score into a new folder with --truth and --out instead")
    outside = _read_all(predictions, data, size, data.manifest.get("val_resize") or data.manifest.get("resize", "crop"),
                        allow_missing, workers)
    dev = resolve_device(device)
    nets = load_metric_nets(dev, strict=strict_weights, protocol=recorded)
    scorer = Scorer.for_split(data.val.to(dev), nets, protocol=recorded)
    gallery = (GalleryImages(scorer, options.get("gallery_photos"), dict(data.sources.val))
               if folder.gallery.is_dir() and data.sources is not None else None)
    with _lock(folder):
        # config.json as it is now, read under the lock: rows another `bench score` added
        # while these photos were prepared are kept, and a run replaced meanwhile is refused
        current = read_config(folder.config)
        if _basis(current) != _basis(config):
            raise ScoreInputError(f"{run.path} was rewritten while the predictions were prepared (its val photos, "
                                  "size or protocol changed): nothing was written; run the command again")
        _check_names(folder, current, outside)
        _score_all(folder, current, scorer, outside, gallery)
    return [read_json(folder.external(o.name).record) for o in outside]


def score_folders(truth, predictions: dict[str, str], out=None, *, size: int = 256, resize: str = "crop",
                  protocol: ScoringProtocol | None = None, allow_missing: bool = False, device: str = "auto",
                  strict_weights: bool = False, gallery_photos: int | None = None, workers: int = 2,
                  progress: bool = False) -> Path:
    """A new run folder ``out`` scoring each ``{name: folder}`` against the photos of
    ``truth`` (prepared as a run's val photos: ``resize`` to ``size``) under ``protocol``,
    with the gray and ground-truth rows, readable by ``bench report``/``compare`` as they are.
    Written all or nothing: a failure (a full disk, Ctrl-C) removes what it wrote, and a
    folder an earlier `bench score` left unfinished (killed) is replaced by the rerun."""
    if out is None:  # a new timestamped folder, removed again if nothing gets written into it
        out = Path(default_out(kind="score"))
        try:
            return score_folders(truth, predictions, out, size=size, resize=resize, protocol=protocol,
                                 allow_missing=allow_missing, device=device, strict_weights=strict_weights,
                                 gallery_photos=gallery_photos, workers=workers, progress=progress)
        except BaseException:
            if out.is_dir() and not any(out.iterdir()):
                out.rmdir()
            raise
    protocol, out = protocol or ScoringProtocol(), Path(out)
    resize = val_mode(resize, protocol.val_geometry)  # the protocol's val geometry (bicubic: --resize's)
    check_new_score_folder(out)  # before the photos load; again in the lock
    for name in predictions:
        check_name(name, [])
    _refuse_writing_into(out, {"the truth folder": str(truth)} | {f"{n}'s predictions": f for n, f in predictions.items()})
    data = load_val_photos(truth, size, resize, workers, _bar(progress))
    outside = _read_all(predictions, data, size, resize, allow_missing, workers)
    dev = resolve_device(device)
    nets = load_metric_nets(dev, strict=strict_weights, protocol=protocol)
    scorer = Scorer.for_split(data.val.to(dev), nets, protocol=protocol)
    folder = RunFolder(out)
    with _lock(folder):
        if check_new_score_folder(out).is_run:
            log.warning("%s: replacing the unfinished `bench score` folder there (its command never finished)", out)
            discard_run(out)
        made = not out.exists()
        try:
            out.mkdir(parents=True, exist_ok=True)
            gray = scorer.gray_scores()
            config = {
                "made_by": SCORE_MAKER,
                "options": {"seeds": [0], "size": size, "data": None, "val_data": os.fspath(truth), "dataset": None,
                            "losses": "", "gallery_photos": gallery_photos, **protocol_options(protocol)},
                "combinations": [], "external": [],
                "scored_truth": {"folder": os.fspath(truth), "resize": resize},
                "device": str(dev), "versions": package_versions(), "data": data.manifest,
                "started": datetime.now().isoformat(timespec="seconds"),
                "ground_truth": scorer.ground_truth(), "gray": gray.means, "metric_notes": scorer.notes,
                "baselines_scored_on": scorer.device.type,
                "protocol": metric_protocol(scorer, data.manifest, size),
                **run_identity((), [], list(gray.means)),  # the installed plugins and the metrics' declarations
            }
            write_json(folder.config, config)  # first: whatever follows is this command's, unfinished until the end
            write_baseline_scores(out, scorer, gray)
            gallery = GalleryImages(scorer, gallery_photos, dict(data.sources.val)) if gallery_photos != 0 else None
            if gallery is not None:
                gallery.write_baselines(folder.gallery / GRAY, folder.gallery / TRUTH)
            _check_names(folder, config, outside)
            config = _score_all(folder, config, scorer, outside, gallery)
            write_json(folder.config, config | {"finished": datetime.now().isoformat(timespec="seconds")})
        except BaseException:
            _remove_written(out, made)
            raise
    return out


def _remove_written(out: Path, made: bool) -> None:
    """Undo a `bench score --out` that failed part-way: the folder if it made it, else the
    files by a run's names it wrote there (the user's own files stay)."""
    if made:
        shutil.rmtree(out, ignore_errors=True)
    else:
        discard_run(out)


def protocol_options(protocol: ScoringProtocol) -> dict:
    """The protocol as ``bench run``'s options record it: the preset and what was changed."""
    return {"protocol": protocol.name, **{k: getattr(protocol, k) for k in protocol.changed}}
