"""Building the request messages: stream specs (from dicts or curriculum TOML files),
output settings, augmentation and cursors.

A spec dict mirrors the proto ``StreamSpec`` and the daemon's TOML format::

    {
        "seed": 0,
        "global_batch": 8,
        "curriculum": [
            {"until_step": 10, "weights": {"sft": 1.0}},
            {"until_step": 30, "ramp_steps": 5, "weights": {"sft": 0.3, "preference": 0.7}},
            {"weights": {"sft": 0.2, "preference": 0.3, "multi_turn": 0.5}},
        ],
        "category_weights": {"text_symbol": 3.0},
        "shuffle": {"block": 64, "window": 16},   # or shuffle_block / shuffle_window
        "select": {"split": "train", "exclude_categories": ["text_symbol"]},
    }

``mode`` is ``"train"`` (the default) or ``"eval"``: one pass over the selection, each
sample once across the ranks, subset by subset, without augmentation, the last batch of
each subset padded and masked by the ``valid`` tensor; ``order`` is ``"canonical"``
(the default) or ``"seeded"`` for an evaluation pass. ``multi_turn`` is ``"chains"``
(the default) or ``"steps"``: each turn t of a chain becomes one sample (image t-1,
instruction t, image t) in batches laid out as single-turn ones (``source``,
``target``), ``Batch.chain_turns`` giving t.

``select`` narrows every subset to the samples that pass its filters (``subsets``, ``split``,
``edit_types``, ``exclude_edit_types``, ``categories``, ``exclude_categories``,
``min_turns`` and ``max_turns`` for multi-turn chains, ``min_instruction_words``,
``max_instruction_words``, ``keys`` and ``exclude_keys`` as ``<subset>/<key>`` or bare
``<key>`` entries, or ``keys_file`` / ``exclude_keys_file`` naming a file of them, one
per line, read here); it is part of the cursor fingerprint.

Subsets are ``sft``, ``preference`` and ``multi_turn``; the daemon also accepts the
aliases `single_turn` for `sft`, `single-turn` for `sft`, `dpo` for `preference` and
`multi-turn` for `multi_turn` (the same subset, the same plan and cursors).

Unknown keys are refused by name, as the daemon refuses them in TOML files. The
daemon validates the values (phase order, subset names, weights) and answers
INVALID_ARGUMENT naming the field.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

from ._pb import loader_pb2
from .errors import EditFeedError

SpecLike = Union[Mapping[str, Any], loader_pb2.StreamSpec, str, os.PathLike]
"""What ``Client.stream`` accepts as a spec: a dict, a message or a TOML file path."""

_SPEC_KEYS = {
    "seed",
    "global_batch",
    "curriculum",
    "category_weights",
    "shuffle",
    "shuffle_block",
    "shuffle_window",
    "select",
    "mode",
    "order",
    "multi_turn",
}
_SELECT_LISTS = (
    "subsets",
    "edit_types",
    "exclude_edit_types",
    "categories",
    "exclude_categories",
    "keys",
    "exclude_keys",
)
_SELECT_FILES = {"keys_file": "keys", "exclude_keys_file": "exclude_keys"}
_SELECT_BOUNDS = ("min_turns", "max_turns", "min_instruction_words", "max_instruction_words")
_SELECT_KEYS = {"split", *_SELECT_LISTS, *_SELECT_BOUNDS, *_SELECT_FILES}
_PHASE_KEYS = {"until_step", "weights", "ramp_steps"}
_SHUFFLE_KEYS = {"block", "window"}
_AUGMENT_KEYS = {
    "crop",
    "crop_scale",
    "crop_scale_min",
    "crop_scale_max",
    "crop_ratio",
    "crop_ratio_min",
    "crop_ratio_max",
    "hflip",
    "flip_policy",
    "jitter",
}
_JITTER_KEYS = {"brightness", "contrast", "saturation"}
_MODES = {"train": loader_pb2.MODE_UNSPECIFIED, "eval": loader_pb2.MODE_EVAL}
_ORDERS = {"canonical": loader_pb2.EVAL_ORDER_UNSPECIFIED, "seeded": loader_pb2.EVAL_ORDER_SEEDED}
_VIEWS = {"chains": loader_pb2.MULTI_TURN_VIEW_UNSPECIFIED, "steps": loader_pb2.MULTI_TURN_VIEW_STEPS}
_FITS = {
    None: loader_pb2.FIT_UNSPECIFIED,
    "stretch": loader_pb2.FIT_STRETCH,
    "center_crop": loader_pb2.FIT_CENTER_CROP,
    "letterbox": loader_pb2.FIT_LETTERBOX,
}
_FLIP_POLICIES = {
    "skip": loader_pb2.FLIP_POLICY_SKIP,
    "swap": loader_pb2.FLIP_POLICY_SWAP,
    "ignore": loader_pb2.FLIP_POLICY_IGNORE,
}

CURSOR_PATTERN = re.compile(r"^ef1:(\d+):([^:]+):([^:]+)$")


@dataclass(frozen=True)
class Cursor:
    """A parsed cursor ``ef1:<step>:<spec fingerprint>:<dataset fingerprint>``.

    ``step`` is the global step the stream resumes at.
    """

    step: int
    spec_fingerprint: str
    dataset_fingerprint: str

    @classmethod
    def parse(cls, token: str) -> Cursor:
        """Parses a cursor token; raises EditFeedError(INVALID_ARGUMENT) if malformed."""
        m = CURSOR_PATTERN.match(token) if isinstance(token, str) else None
        if not m:
            raise EditFeedError(
                "INVALID_ARGUMENT",
                f"cursor: {token!r} is not an editfeed cursor (expected ef1:<step>:<spec fingerprint>:<dataset fingerprint>)",
            )
        return cls(int(m.group(1)), m.group(2), m.group(3))


def _check_keys(what: str, table: Mapping[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ValueError(f"{what}: unknown key {unknown[0]!r} (allowed: {', '.join(sorted(allowed))})")


def _phase(index: int, phase: Any) -> loader_pb2.Phase:
    if not isinstance(phase, Mapping):
        raise ValueError(f"curriculum[{index}]: expected a table with weights, got {type(phase).__name__}")
    _check_keys(f"curriculum[{index}]", phase, _PHASE_KEYS)
    if "weights" not in phase:
        raise ValueError(f"curriculum[{index}]: missing key 'weights'")
    weights = phase["weights"]
    if not isinstance(weights, Mapping):
        raise ValueError(f"curriculum[{index}].weights: expected a table of subset weights")
    msg = loader_pb2.Phase(
        weights={str(k): float(v) for k, v in weights.items()},
        ramp_steps=int(phase.get("ramp_steps", 0)),
    )
    if phase.get("until_step") is not None:
        msg.until_step = int(phase["until_step"])
    return msg


def read_keys_file(path: str | os.PathLike, field: str = "keys_file") -> list[str]:
    """The entries of a keys file: one ``<subset>/<key>`` or ``<key>`` per line, ``#``
    comments and blank lines skipped. A repeated entry is refused with both line
    numbers, as the daemon's own reader does."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise ValueError(f"spec.select.{field}: {path}: {e.strerror or e}") from e
    seen: dict[str, int] = {}
    entries = []
    for number, line in enumerate(text.splitlines(), 1):
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        if entry in seen:
            raise ValueError(f"spec.select.{field}: {path}: line {number} repeats {entry!r} of line {seen[entry]}")
        seen[entry] = number
        entries.append(entry)
    if not entries:
        # An empty allow list would select everything.
        raise ValueError(f"spec.select.{field}: {path}: names no key")
    return entries


def _selection(select: Any, base: Path) -> loader_pb2.Selection | None:
    if not isinstance(select, Mapping):
        raise ValueError("spec.select: expected a table of filters")
    _check_keys("spec.select", select, _SELECT_KEYS)
    if not select:
        return None
    msg = loader_pb2.Selection(split=str(select.get("split", "")))
    for name in _SELECT_LISTS:
        values = select.get(name, [])
        if isinstance(values, str) or not isinstance(values, Sequence):
            raise ValueError(f"spec.select.{name}: expected a list of names")
        getattr(msg, name).extend(str(v) for v in values)
    for name, target in _SELECT_FILES.items():
        if select.get(name) is not None:
            getattr(msg, target).extend(read_keys_file(base / select[name], name))
    for name in _SELECT_BOUNDS:
        value = select.get(name)
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"spec.select.{name}: expected a positive whole number, got {value!r}")
            setattr(msg, name, value)
    return msg


def spec_from_mapping(
    spec: Mapping[str, Any],
    seed: int | None = None,
    global_batch: int | None = None,
    base: str | os.PathLike | None = None,
) -> loader_pb2.StreamSpec:
    """A ``StreamSpec`` message from a dict (see the module docs).

    ``seed`` and ``global_batch`` fill in keys the dict lacks; giving a different value
    for a key the dict has is an error. ``select.keys_file`` and
    ``select.exclude_keys_file`` are read relative to ``base`` (default: the current
    folder) into the ``keys`` and ``exclude_keys`` lists sent.
    """
    _check_keys("spec", spec, _SPEC_KEYS)
    values: dict[str, int] = {}
    for name, given in (("seed", seed), ("global_batch", global_batch)):
        if name in spec and given is not None and int(spec[name]) != int(given):
            raise ValueError(f"spec: {name} is {spec[name]} in the spec but {given} was passed")
        value = spec.get(name, given)
        if value is None:
            raise ValueError(f"spec: {name} is required (in the spec or as an argument)")
        values[name] = int(value)
    curriculum = spec.get("curriculum", [])
    if not isinstance(curriculum, Sequence) or isinstance(curriculum, (str, bytes)):
        raise ValueError("spec.curriculum: expected a list of phases")
    category_weights = spec.get("category_weights", {})
    if not isinstance(category_weights, Mapping):
        raise ValueError("spec.category_weights: expected a table of category weights")
    shuffle = spec.get("shuffle", {})
    if not isinstance(shuffle, Mapping):
        raise ValueError("spec.shuffle: expected a table with block and window")
    _check_keys("spec.shuffle", shuffle, _SHUFFLE_KEYS)
    block = shuffle.get("block", spec.get("shuffle_block", 0))
    window = shuffle.get("window", spec.get("shuffle_window", 0))
    msg = loader_pb2.StreamSpec(
        seed=values["seed"],
        global_batch=values["global_batch"],
        curriculum=[_phase(i, p) for i, p in enumerate(curriculum)],
        category_weights={str(k): float(v) for k, v in category_weights.items()},
        shuffle_block=int(block or 0),
        shuffle_window=int(window or 0),
    )
    select = _selection(spec.get("select", {}), Path(base or "."))
    if select is not None:
        msg.select.CopyFrom(select)
    for name, table in (("mode", _MODES), ("order", _ORDERS), ("multi_turn", _VIEWS)):
        value = spec.get(name)
        if value is not None:
            if value not in table:
                raise ValueError(f"spec.{name}: {value!r} is not one of {', '.join(table)}")
            setattr(msg, name, table[value])
    return msg


def is_eval(spec: loader_pb2.StreamSpec) -> bool:
    """Whether the spec asks for an evaluation pass."""
    return spec.mode == loader_pb2.MODE_EVAL


def spec_from_toml(
    text: str,
    seed: int | None = None,
    global_batch: int | None = None,
    source: str = "<toml>",
    base: str | os.PathLike | None = None,
) -> loader_pb2.StreamSpec:
    """A ``StreamSpec`` from TOML text: a curriculum file (``[[curriculum]]``,
    ``[category_weights]``, ``[shuffle]``, ``[select]``) with the seed and global batch passed as
    arguments, or a whole spec that also holds ``seed`` and ``global_batch``."""
    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"{source}: {e}") from e
    try:
        return spec_from_mapping(table, seed=seed, global_batch=global_batch, base=base)
    except ValueError as e:
        raise ValueError(f"{source}: {e}") from e


def load_spec(
    spec: SpecLike, seed: int | None = None, global_batch: int | None = None
) -> loader_pb2.StreamSpec:
    """A ``StreamSpec`` message from a dict, a message or the path of a TOML file."""
    if isinstance(spec, loader_pb2.StreamSpec):
        msg = loader_pb2.StreamSpec()
        msg.CopyFrom(spec)
        if seed is not None:
            msg.seed = int(seed)
        if global_batch is not None:
            msg.global_batch = int(global_batch)
        return msg
    if isinstance(spec, (str, os.PathLike)):
        path = Path(spec)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as e:
            raise ValueError(f"cannot read the curriculum file {path}: {e.strerror or e}") from e
        return spec_from_toml(text, seed=seed, global_batch=global_batch, source=str(path), base=path.parent)
    if isinstance(spec, Mapping):
        return spec_from_mapping(spec, seed=seed, global_batch=global_batch)
    raise TypeError(f"spec: expected a dict, a StreamSpec or a TOML file path, got {type(spec).__name__}")


def _pair(augment: Mapping[str, Any], name: str) -> tuple[float | None, float | None]:
    lo = augment.get(f"{name}_min")
    hi = augment.get(f"{name}_max")
    if name in augment:
        value = augment[name]
        if not isinstance(value, Sequence) or len(value) != 2:
            raise ValueError(f"augment.{name}: expected a (min, max) pair")
        lo, hi = value
    return lo, hi


def augment_message(augment: Mapping[str, Any] | loader_pb2.Augment | None) -> loader_pb2.Augment:
    """An ``Augment`` message from a dict, a message or None (the daemon's defaults).

    Dict keys: ``crop`` (bool), ``crop_scale`` and ``crop_ratio`` as (min, max) pairs
    or their ``_min``/``_max`` halves, ``hflip`` (probability), ``flip_policy``
    (``"skip"``, ``"swap"`` or ``"ignore"``) and ``jitter`` (a dict of ``brightness``,
    ``contrast`` and ``saturation``). Absent keys keep the daemon's defaults.
    """
    if augment is None:
        return loader_pb2.Augment()
    if isinstance(augment, loader_pb2.Augment):
        return augment
    if not isinstance(augment, Mapping):
        raise TypeError(f"augment: expected a dict or an Augment message, got {type(augment).__name__}")
    _check_keys("augment", augment, _AUGMENT_KEYS)
    msg = loader_pb2.Augment()
    if augment.get("crop") is not None:
        msg.crop = bool(augment["crop"])
    for name in ("crop_scale", "crop_ratio"):
        lo, hi = _pair(augment, name)
        if lo is not None:
            setattr(msg, f"{name}_min", float(lo))
        if hi is not None:
            setattr(msg, f"{name}_max", float(hi))
    if augment.get("hflip") is not None:
        msg.hflip = float(augment["hflip"])
    policy = augment.get("flip_policy")
    if policy is not None:
        if policy not in _FLIP_POLICIES:
            raise ValueError(f"augment.flip_policy: {policy!r} is not one of {', '.join(_FLIP_POLICIES)}")
        msg.flip_policy = _FLIP_POLICIES[policy]
    jitter = augment.get("jitter")
    if jitter is not None:
        if not isinstance(jitter, Mapping):
            raise ValueError("augment.jitter: expected a dict of brightness, contrast and saturation")
        _check_keys("augment.jitter", jitter, _JITTER_KEYS)
        msg.jitter.CopyFrom(loader_pb2.Jitter(**{k: float(v) for k, v in jitter.items()}))
    return msg


def output_message(
    size: int = 256,
    height: int | None = None,
    encoded: bool = False,
    buckets: Sequence[tuple[int, int]] | None = None,
    fit: str | None = None,
) -> loader_pb2.OutputSpec:
    """An ``OutputSpec``: ``size`` is the width (and the height unless ``height`` is
    given); ``encoded`` asks for the stored image bytes instead of pixels; ``buckets``
    is a list of (width, height) aspect-ratio buckets, one drawn per global step;
    ``fit`` is how a whole image meets the output without a random crop:
    ``"stretch"``, ``"center_crop"`` (the evaluation default) or ``"letterbox"``."""
    if fit not in _FITS:
        raise ValueError(f"fit: {fit!r} is not one of {', '.join(f for f in _FITS if f)}")
    return loader_pb2.OutputSpec(
        fit=_FITS[fit],
        width=int(size),
        height=int(height or 0),
        format=loader_pb2.OUTPUT_FORMAT_ENCODED if encoded else loader_pb2.OUTPUT_FORMAT_UINT8_HWC,
        buckets=[loader_pb2.Size(width=int(w), height=int(h)) for w, h in (buckets or [])],
    )
