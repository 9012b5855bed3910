"""Model specs: a model named where it lives, turned into a :class:`~robench.models.ModelCard` on the fly.

``--model`` accepts (:data:`SPEC_FORMS`): a card name on the config search path; a card file
(``path/to/card.yaml``, its relative weights path resolving from the card's folder); ``timm:<name>``
(architecture, classes, preprocessing and mean/std from timm's pretrained config);
``torchvision:<name>[:<tag>]``
(the weights' transforms and metadata); ``robustbench:<name>[:<dataset>[:<threat>]]`` (through
RobustBench's own ``load_model``, when a working robustbench is installed: it is no robench extra, see
docs/guide.md). A library spec takes its weights from the library's own cache and hub, or
from ``--weights FILE``; either way robench reads the file itself, so the record holds its sha256.

Such a card is what a user would have written by hand, plus ``spec`` (the string as typed, kept in the
record's ``model_meta``), so everything downstream (the engine, the records, the boards) sees one kind of
model description.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import re
import sys
from pathlib import Path

from robench.core.config import find, read_yaml
from robench.core.errors import CheckpointError, UsageError
from robench.core.paths import cache_dir
from robench.core.registry import unknown_name
from robench.datasets import dataset_info
from robench.models import code
from robench.models.card import (
    NORMALIZATION_NEEDED,
    ModelCard,
    WeightsSpec,
    card_from_dict,
    list_models,
    load_card_file,
    parse_normalization,
)
from robench.models.weights import sha256_file, weights_format

SPEC_FORMS = (
    "NAME (robench ls models)",
    "path/to/card.yaml",
    "timm:NAME[.TAG]",
    "timm:hf-hub:ORG/NAME",
    "torchvision:NAME[:WEIGHTS]",
    "robustbench:NAME[:DATASET[:THREAT]]",
    "package.module:Callable or path/to/file.py:Callable (with --weights, --dataset, --normalization)",
)
LIBRARIES = ("timm", "torchvision", "robustbench")


def is_spec(name: str) -> bool:
    """Whether ``name`` is a spec rather than a card name on the search path."""
    return name.partition(":")[0] in LIBRARIES or code.is_code_ref(name) or is_card_path(name)


def is_card_path(name: str) -> bool:
    return name.endswith((".yaml", ".yml")) or "/" in name or os.sep in name


@dataclasses.dataclass(frozen=True)
class SpecFlags:
    """What a spec that names only code needs besides its weights: the dataset it takes, its
    normalisation (a preset or the means then the stds) and the architecture's keyword arguments."""

    dataset: str | None = None
    normalization: str | None = None
    arch_kwargs: dict = dataclasses.field(default_factory=dict)


def code_card(spec: str, weights: str | os.PathLike | None, flags: SpecFlags) -> ModelCard:
    """The card of ``--model package.module:Callable`` or ``--model file.py:Callable``: the callable
    (a file path made absolute), ``--weights`` (sha256 pinned), the dataset, its class count, and the
    normalisation, which must be stated. Named ``<Callable>-<8 hex of the weights' sha256>``."""
    if weights is None:
        raise UsageError(f"--model {spec} names code only: give its weights with --weights FILE")
    if flags.dataset is None:
        raise UsageError(f"--model {spec} needs --dataset (the images the network takes)")
    if flags.normalization is None:
        raise UsageError(NORMALIZATION_NEEDED.format(option=f"--model {spec}"))
    where, _, attr = spec.rpartition(":")
    arch = f"{Path(where).expanduser().resolve()}:{attr}" if where.endswith(".py") else spec
    pinned = _local_weights(weights)
    data = {
        "arch": arch,
        "library": "python",
        "dataset": flags.dataset,
        "num_classes": dataset_info(flags.dataset).num_classes,
        "arch_kwargs": dict(flags.arch_kwargs),
        "normalization": parse_normalization(flags.normalization, flags.dataset),
        "weights": dataclasses.asdict(pinned),
    }
    name = re.sub(r"[^A-Za-z0-9_.-]", "-", attr) + f"-{pinned.sha256[:8]}"
    return _replace(card_from_dict(name, {k: v for k, v in data.items() if v is not None}), spec=spec)


def card_for(spec: str, weights: str | os.PathLike | None = None, flags: SpecFlags | None = None):
    """The card ``spec`` describes; ``weights`` (a local file) replaces a library's pretrained weights or
    gives an import-path spec its weights."""
    library, _, rest = spec.partition(":")
    if library not in LIBRARIES and code.is_code_ref(spec):
        return code_card(spec, weights, flags or SpecFlags())
    if library not in LIBRARIES:
        if weights is not None:
            raise UsageError("--weights goes with a timm: or torchvision: spec; a card names its own weights")
        path = Path(spec).expanduser()
        if not path.is_file():
            raise UsageError(f"model card file {path} does not exist")
        return _replace(load_card_file(path), spec=spec)
    if library == "robustbench" and weights is not None:
        raise UsageError("--weights does not go with robustbench: (RobustBench names its own checkpoints)")
    card = _replace(card_from_dict(*library_card_data(spec)), spec=spec)
    return _replace(card, weights=_local_weights(weights)) if weights is not None else card


def load_card(
    name: str, weights: str | os.PathLike | None = None, flags: SpecFlags | None = None
) -> ModelCard:
    """The card of a ``--model`` value: a card name on the config search path, or any other form of
    :data:`SPEC_FORMS`; ``weights`` (a local file) goes with a timm/torchvision or import-path spec, and
    ``flags`` with an import-path spec."""
    if is_spec(name) or weights is not None:
        return card_for(name, weights, flags)
    known = list_models()
    if name not in known:
        raise unknown_name("model", name, known)
    path = find("models", name)
    return card_from_dict(name, read_yaml(path), source=path)


def library_card_data(spec: str) -> tuple[str, dict]:
    """(model name, card mapping) for a ``timm:``/``torchvision:``/``robustbench:`` spec: the card a user
    would otherwise write by hand, which ``robench submit --list`` registers. The name is the spec with
    ``:`` as ``-`` (a record's path component)."""
    library, _, rest = spec.partition(":")
    if library not in LIBRARIES:
        raise UsageError(f"{spec!r} is not a library spec ({', '.join(f'{lib}:' for lib in LIBRARIES)})")
    if not rest:
        raise UsageError(f"model spec {spec!r} names no model; the forms are: {', '.join(SPEC_FORMS)}")
    data = {"timm": _timm, "torchvision": _torchvision, "robustbench": _robustbench}[library](rest)
    return re.sub(r"[^A-Za-z0-9_.-]", "-", spec.replace(":", "-")), {"display_name": spec, **data}


def _replace(card, **changes):
    return dataclasses.replace(card, **changes)


def _local_weights(path: str | os.PathLike):
    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise UsageError(f"weights file {path} does not exist")
    return WeightsSpec(path=str(path), sha256=sha256_file(path), format=weights_format(path))


# --- timm -------------------------------------------------------------------------------------------------


def _timm(name: str) -> dict:
    if name.startswith(HF_HUB):
        return _timm_hub(name[len(HF_HUB) :])
    import timm
    from timm.models import get_pretrained_cfg, split_model_name_tag

    arch = split_model_name_tag(name)[0]
    if not timm.is_model(arch):
        raise unknown_name(
            "timm model", name, timm.list_models() + timm.list_models(pretrained=True), listing=None
        )
    try:
        cfg = get_pretrained_cfg(name)
    except RuntimeError:  # "Invalid pretrained tag"
        raise unknown_name(
            "timm pretrained tag", name, timm.list_models(f"{arch}.*", pretrained=True), listing=None
        ) from None
    return _timm_imagenet(name, arch, cfg, pretrained=True)


HF_HUB = "hf-hub:"


def _timm_hub(repo: str) -> dict:
    """``timm:hf-hub:<org>/<name>``: a model timm keeps on the Hugging Face Hub, described by the
    ``config.json`` beside its weights (timm's ``load_model_config_from_hf``), read from the local cache
    first, as timm's own specs are; the weights come from the same repository (:func:`pretrained_file`)."""
    import json

    from timm.models import PretrainedCfg

    config = _from_hf_cache(repo, ("config.json",), f"timm:{HF_HUB}{repo}")
    try:
        data = json.loads(config.read_text())
        arch = data["architecture"]
        cfg = PretrainedCfg(
            **{**data.get("pretrained_cfg", {}), "num_classes": data.get("num_classes", 1000)}
        )
    except (ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"{config} is not a timm model config ({type(e).__name__}: {e})") from None
    return _timm_imagenet(f"{HF_HUB}{repo}", arch, cfg, pretrained=f"{HF_HUB}{repo}")


def _timm_imagenet(name: str, arch: str, cfg, pretrained) -> dict:
    """The card mapping of a timm ImageNet-1k model with pretrained config ``cfg``."""
    if cfg is None or cfg.num_classes != 1000:
        got = "no pretrained config" if cfg is None else f"{cfg.num_classes} classes"
        raise UsageError(
            f"timm model {name!r} has {got}; robench evaluates timm models on ImageNet-1k (1000 classes)"
        )
    channels, height, width = cfg.input_size
    if height != width or (cfg.crop_mode or "center") != "center":
        raise UsageError(
            f"timm model {name!r}: only square inputs with a centre crop are supported, "
            f"got input_size {cfg.input_size}, crop_mode {cfg.crop_mode!r}"
        )
    crop_pct = cfg.crop_pct or 0.875
    return {
        # the tag stays in the name: timm sizes some architectures (a ViT's position table) by its config
        "arch": f"{arch}.{cfg.tag}" if cfg.tag and pretrained is True else arch,
        "library": "timm",
        "dataset": "imagenet",
        "num_classes": 1000,
        "normalization": {"mean": list(cfg.mean), "std": list(cfg.std)},
        # timm's eval transform (timm.data.transforms_factory): shorter side to floor(size / crop_pct)
        "preprocessing": {
            "resize": math.floor(height / crop_pct),
            "crop": height,
            "interpolation": cfg.interpolation,
        },
        "weights": {"pretrained": pretrained},
    }


# --- torchvision --------------------------------------------------------------------------------------------


def _torchvision(rest: str) -> dict:
    import torchvision

    name, _, tag = rest.partition(":")
    known = torchvision.models.list_models(module=torchvision.models)
    if name not in known:
        raise unknown_name("torchvision classification model", name, known, listing=None)
    weights_enum = torchvision.models.get_model_weights(name)
    try:
        weights = weights_enum[tag or "DEFAULT"]
    except KeyError:
        raise unknown_name(
            f"weights tag of torchvision {name}", tag, weights_enum.__members__, listing=None
        ) from None
    transform = weights.transforms()
    try:
        resize, crop = transform.resize_size[0], transform.crop_size[0]
        mean, std, interpolation = transform.mean, transform.std, transform.interpolation.value
    except AttributeError:
        raise UsageError(
            f"torchvision {name}:{weights.name} does not use a resize-and-crop transform"
        ) from None
    return {
        "arch": name,
        "library": "torchvision",
        "dataset": "imagenet",
        "num_classes": len(weights.meta["categories"]),
        "normalization": {"mean": list(mean), "std": list(std)},
        "preprocessing": {"resize": resize, "crop": crop, "interpolation": interpolation},
        "weights": {"pretrained": weights.name},
    }


# --- robustbench ------------------------------------------------------------------------------------------


_RB_DATASETS = {"cifar10": 10, "cifar100": 100, "imagenet": 1000}
_RB_THREATS = ("Linf", "L2", "corruptions")


def _robustbench(rest: str) -> dict:
    name, dataset, threat = (rest.split(":") + ["", ""])[:3]
    dataset, threat = dataset or "cifar10", threat or "Linf"
    if dataset not in _RB_DATASETS:
        raise unknown_name("RobustBench dataset", dataset, _RB_DATASETS)
    if threat not in _RB_THREATS:
        raise unknown_name("RobustBench threat model", threat, _RB_THREATS)
    return {
        "arch": name,
        "library": "robustbench",
        "dataset": dataset,
        "num_classes": _RB_DATASETS[dataset],
        "normalization": "none",  # RobustBench's models normalise inside
        "weights": {"pretrained": f"{dataset}/{threat}"},
    }


def _robustbench_dir() -> Path:
    return cache_dir("robustbench")


def robustbench_network(card):
    """(network, checkpoint file) through RobustBench's own ``load_model`` (its downloads, its key fixes)."""
    try:
        from robustbench.utils import load_model
    except ImportError as e:  # docs/guide.md: PyPI's robustbench 1.1.1 cannot be imported as published
        raise UsageError(
            f"{card.spec} needs a working robustbench (import failed: {type(e).__name__}: {e}): install it "
            "from git+https://github.com/RobustBench/robustbench with git+https://github.com/fra31/auto-attack"
        ) from None
    dataset, threat = card.weights.pretrained.split("/")
    folder = _robustbench_dir()
    file = folder / dataset / threat / f"{card.arch}.pt"
    try:
        with contextlib.redirect_stdout(sys.stderr), _quiet():
            net = load_model(
                model_name=card.arch, model_dir=str(folder), dataset=dataset, threat_model=threat
            )
    except (KeyError, ValueError) as e:
        raise UsageError(
            f"{card.spec}: RobustBench has no {dataset} {threat} model {card.arch!r} ({e})"
        ) from None
    except Exception as e:  # noqa: BLE001 - requests/gdown raise many kinds; offline, all mean the same
        raise CheckpointError(
            f"{card.spec}: checkpoint {file.name} not found and not downloadable ({type(e).__name__}): "
            f"download it where there is network and put it at {file}"
        ) from None
    return net, file


# --- library downloads --------------------------------------------------------------------------------------


@contextlib.contextmanager
def _quiet():
    """Hub clients log every retry; a failed download must end in robench's one line, not twenty."""
    import logging

    loggers = [logging.getLogger(n) for n in ("huggingface_hub", "httpx", "urllib3", "gdown")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def pretrained_file(card) -> Path:
    """The local file of a library's pretrained weights: found in the library's cache, else downloaded there.

    The same caches the libraries use ($HF_HOME for timm's Hugging Face weights, $TORCH_HOME/hub/checkpoints
    for URLs), so weights fetched once by timm or torchvision are found, and a user can put a file there.
    """
    if card.library == "timm":
        from timm.models import get_pretrained_cfg

        tag = card.weights.pretrained  # True: the tag, if any, is in the arch name (timm: specs)
        if isinstance(tag, str) and tag.startswith(HF_HUB):
            return _from_hf(card, tag[len(HF_HUB) :])
        cfg = get_pretrained_cfg(card.arch if tag is True else f"{card.arch}.{tag}")
        if cfg.hf_hub_id:
            return _from_hf(card, cfg.hf_hub_id)
        url = cfg.url
    else:
        import torchvision

        url = torchvision.models.get_model_weights(card.arch)[card.weights.pretrained].url
    return _from_url(card, url)


def _from_hf(card, repo: str) -> Path:
    """The weights file of Hub repository ``repo`` (timm's own order of file names)."""
    return _from_hf_cache(
        repo, ("model.safetensors", "pytorch_model.bin"), f"pretrained weights of {card.spec or card.name}"
    )


def _from_hf_cache(repo: str, names: tuple[str, ...], what: str) -> Path:
    """The first of ``names`` in Hub repository ``repo``: from the local cache, else downloaded into it;
    one line naming the cache and the command that fills it when neither works."""
    import huggingface_hub
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    for offline in (True, False):
        for filename in names:
            try:
                with _quiet():
                    return Path(huggingface_hub.hf_hub_download(repo, filename, local_files_only=offline))
            except LocalEntryNotFoundError:  # not in the cache; when downloading: the Hub was not reached
                if offline:
                    continue
                break  # the second file would wait for the same unreachable Hub
            except EntryNotFoundError:  # the Hub has no such file: try the other
                continue
            except (OSError, ValueError):  # proxy refused, disk full, a malformed repository id, ...
                break
    cache = huggingface_hub.constants.HF_HUB_CACHE
    raise CheckpointError(
        f"{what} not in the Hugging Face cache {cache} and not downloadable (no network?): where there is "
        f"network run 'hf download {repo} {names[0]}' and copy models--{repo.replace('/', '--')} into "
        f"{cache}, or pass --weights FILE"
    )


def _from_url(card, url: str) -> Path:
    import torch

    folder = Path(torch.hub.get_dir()) / "checkpoints"
    path = folder / os.path.basename(url)
    if path.is_file():
        return path
    hash_prefix = re.search(r"-([a-f0-9]{8,})\.", path.name)  # torchvision/timm file names carry one
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with _quiet():
            torch.hub.download_url_to_file(
                url, str(path), hash_prefix and hash_prefix.group(1), progress=False
            )
    except (OSError, RuntimeError, ValueError) as e:
        raise CheckpointError(
            f"pretrained weights of {card.spec or card.name} not found at {path} and not downloadable "
            f"({type(e).__name__}): fetch {url} where there is network and put it at {path}"
        ) from None
    return path
