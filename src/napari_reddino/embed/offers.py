"""Which backbone to offer first: RedDino / DinoBloom weights already in the Hugging Face cache,
then the bundled model; hub models that are not cached are offered as a download of known size.

The bundled ``reddino-tiny`` is a small CPU-trained model that makes the plugin work offline; a
user who has RedDino's own weights should never be left on it silently. Nothing here touches the
network unless asked: the cache is read from disk, sizes of uncached models come from their
architecture (refined from the hub's file list when online).
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import constants as hf_constants
from huggingface_hub import try_to_load_from_cache

from napari_reddino.embed.backbones import (
    BACKBONES,
    BUNDLED_WEIGHTS_DIR,
    DEFAULT_BACKBONE,
    _hub_reachable,
    _offline,
)
from napari_reddino.progress import Progress, ProgressGen, check_cancel

# Best first: RedDino (red cells) before DinoBloom (all blood cells); S before B/L on speed.
HUB_PREFERENCE = ("reddino-small", "reddino-base", "reddino-large",
                  "dinobloom-small", "dinobloom-base", "dinobloom-large")
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
# float32 weights of ViT-S/B/L/14 (22 M / 86 M / 304 M parameters), before the hub is asked
APPROX_MB = {"small": 88, "base": 346, "large": 1217}


@dataclass(frozen=True)
class Offer:
    """One backbone choice as the dock and the CLI present it."""

    name: str
    state: str  # "cached" | "bundled" | "download"
    description: str
    size_mb: float | None = None

    @property
    def label(self) -> str:
        if self.state == "cached":
            return f"{self.name} (in your Hugging Face cache)"
        if self.state == "bundled":
            return f"{self.name} (bundled, offline)"
        size = f", ~{self.size_mb:.0f} MB" if self.size_mb else ""
        return f"{self.name} (download{size})"


def hub_repo(name: str) -> str | None:
    """The Hugging Face repo id of a registry name, None for bundled / timm-only names."""
    spec = BACKBONES.get(name)
    if spec is None or not spec.source.startswith("hf-hub:"):
        return None
    return spec.source[len("hf-hub:"):].split("@")[0]


def is_cached(name: str, cache_dir: str | Path | None = None) -> bool:
    """True when the model's ``config.json`` and a weights file are in the HF cache."""
    repo = hub_repo(name)
    if repo is None:
        return False
    cache_dir = cache_dir or hf_constants.HF_HUB_CACHE
    if not isinstance(try_to_load_from_cache(repo, "config.json", cache_dir=cache_dir), str):
        return False
    return any(isinstance(try_to_load_from_cache(repo, f, cache_dir=cache_dir), str)
               for f in WEIGHT_FILES)


def cached_backbones(cache_dir: str | Path | None = None) -> list[str]:
    """Registry names whose weights are cached, best first."""
    return [name for name in HUB_PREFERENCE if is_cached(name, cache_dir)]


def approx_size_mb(name: str) -> float | None:
    return next((mb for size, mb in APPROX_MB.items() if name.endswith(f"-{size}")), None)


def backbone_offers(cache_dir: str | Path | None = None) -> list[Offer]:
    """Cached hub models, then the bundled default, then hub models to download, then the rest."""
    cached = cached_backbones(cache_dir)
    offers = [Offer(n, "cached", BACKBONES[n].description) for n in cached]
    offers.append(Offer(DEFAULT_BACKBONE, "bundled", BACKBONES[DEFAULT_BACKBONE].description))
    offers += [Offer(n, "download", BACKBONES[n].description, approx_size_mb(n))
               for n in HUB_PREFERENCE if n not in cached]
    listed = {o.name for o in offers}
    offers += [Offer(n, "download" if hub_repo(n) else "timm", spec.description,
                     approx_size_mb(n)) for n, spec in BACKBONES.items() if n not in listed]
    return offers


def recommended_backbone(cache_dir: str | Path | None = None) -> str:
    """The best backbone usable right now without a download."""
    cached = cached_backbones(cache_dir)
    return cached[0] if cached else DEFAULT_BACKBONE


def describe_default(cache_dir: str | Path | None = None) -> str:
    """One line for the CLI / dock: what the default choice is, and what would be better."""
    cached = cached_backbones(cache_dir)
    if cached:
        return (f"using {cached[0]} ({BACKBONES[cached[0]].description}) from your Hugging Face "
                f"cache; cached: {', '.join(cached)}")
    hint = ("offline: download RedDino once while online (`hf download Snarcy/RedDino-small`)"
            if _offline() else "RedDino S/B/L can be downloaded from the dock or with "
            "`hf download Snarcy/RedDino-small`")
    return (f"using the bundled {DEFAULT_BACKBONE} (a small CPU-trained model; see its README); "
            f"{hint}")


def _parameters(weights: Path) -> int | None:
    """Parameter count from a safetensors header (shapes only; the tensors are not read)."""
    import json
    import struct

    try:
        with open(weights, "rb") as handle:
            header = json.loads(handle.read(struct.unpack("<Q", handle.read(8))[0]))
    except (OSError, ValueError, struct.error):
        return None
    return sum(math.prod(t["shape"]) for k, t in header.items() if k != "__metadata__")


def _dev_scores(readme: Path) -> tuple[str, str] | None:
    """(linear probe, 20-NN) weighted F1 of the README's row marked "bundled now"."""
    try:
        text = readme.read_text(encoding="utf-8")
    except OSError:
        return None
    for line in text.splitlines():
        if "bundled now" in line:
            cells = [c.strip(" *") for c in line.split("|")[2:-1]]
            scores = [c.split("/")[0].strip(" *") for c in cells]
            if len(scores) == 3 and all(s.replace(".", "").isdigit() for s in scores):
                return scores[0], scores[2]
    return None


def bundled_summary(folder: str | Path | None = None) -> str:
    """What the bundled model is and how good, read from its own files (config.json, the
    weights' header, the README's measured row): architecture, size, training data, dev score."""
    import json

    folder = Path(folder) if folder is not None else BUNDLED_WEIGHTS_DIR / DEFAULT_BACKBONE
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return f"bundled {DEFAULT_BACKBONE} (its files are missing in this installation)"
    args = config.get("model_args", {})
    size = args.get("img_size", [None])[0] if isinstance(args.get("img_size"), list) else None
    shape = (f"ViT, {args.get('embed_dim')}-d, {args.get('depth')} blocks, "
             f"{args.get('patch_size')} px patches" + (f", {size} px input" if size else ""))
    params = _parameters(folder / "model.safetensors")
    text = f"{DEFAULT_BACKBONE} (bundled): a small DINOv2 {shape}"
    text += f", {params / 1e6:.1f} M parameters" if params else ""
    text += ("; self-supervised, without labels, on ~23k cells of the Chula RBC-12, Chula "
             "diagnosis and BCCD smears")
    scores = _dev_scores(folder / "README.md")
    if scores:
        text += (f"; on the Chula RBC-12 dev split (12 classes; its images were among those "
                 f"unlabeled cells) weighted F1 {scores[0]} % linear probe, {scores[1]} % 20-NN")
    return text + ". Works offline; RedDino S/B/L are better (see its README)."


def hub_size_mb(name: str) -> float | None:
    """Size of the weights on the hub (one metadata request), None when it cannot be asked."""
    repo = hub_repo(name)
    if repo is None or _offline() or not _hub_reachable():
        return None
    from huggingface_hub import HfApi

    try:
        info = HfApi().model_info(repo, files_metadata=True)
    except Exception:  # any hub / network error: fall back to the architecture's size
        return None
    sizes = {s.rfilename: s.size or 0 for s in info.siblings or []}
    weights = next((sizes[f] for f in WEIGHT_FILES if f in sizes), None)
    return None if weights is None else weights / 2**20


def iter_download(name: str, cache_dir: str | Path | None = None,
                  cancel: threading.Event | None = None) -> ProgressGen[str]:
    """Download a hub backbone into the HF cache, yielding byte progress; returns its name."""
    from huggingface_hub import snapshot_download
    from tqdm.auto import tqdm

    repo = hub_repo(name)
    if repo is None:
        raise ValueError(f"{name!r} is not a Hugging Face hub backbone")
    if _offline():
        raise ConnectionError(f"cannot download {name!r}: HF_HUB_OFFLINE is set")
    if not _hub_reachable():
        raise ConnectionError(f"cannot download {name!r}: the Hugging Face hub is unreachable")
    state = {"done": 0, "total": 0, "error": None}

    class _Bytes(tqdm):  # counts the bytes of every file bar (tqdm's own update hook)
        def __init__(self, *args, **kwargs):
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)
            if kwargs.get("unit") == "B":
                state["total"] += int(kwargs.get("total") or 0)

        def update(self, n=1):
            if self.unit == "B":
                state["done"] += int(n or 0)
            return super().update(n)

    def fetch():
        try:
            snapshot_download(repo, cache_dir=cache_dir, tqdm_class=_Bytes,
                              allow_patterns=["config.json", "*.safetensors", "*.json"])
        except Exception as exc:  # reported on the calling thread
            state["error"] = exc

    thread = threading.Thread(target=fetch, daemon=True)
    thread.start()
    while thread.is_alive():
        check_cancel(cancel)
        total = max(state["total"], state["done"], 1)
        yield Progress(state["done"], total,
                       f"downloading {name}: {state['done'] / 2**20:.0f}/{total / 2**20:.0f} MB")
        time.sleep(0.2)
    if state["error"] is not None:
        raise ConnectionError(f"download of {name!r} failed: {state['error']}") from state["error"]
    return name


def cli_note(cache_dir: str | Path | None = None) -> str:
    """What the CLI says when no --backbone is given (its default stays the bundled model, so
    a run folder's results never depend on what happens to be cached)."""
    cached = cached_backbones(cache_dir)
    note = f"using the bundled {DEFAULT_BACKBONE} (a small CPU-trained model, see its README)"
    if cached:
        return (f"{note}; {', '.join(cached)} in your Hugging Face cache: pass "
                f"--backbone {cached[0]} for RedDino-quality features")
    return (f"{note}; for RedDino S/B/L: `hf download Snarcy/RedDino-small`, then "
            "--backbone reddino-small")
