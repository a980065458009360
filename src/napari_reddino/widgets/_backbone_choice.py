"""What the embedding dock's backbone list shows: cached hub weights first, then the bundled
model, then downloads of known size (see :mod:`napari_reddino.embed.offers`)."""

from __future__ import annotations

import textwrap
from typing import Any

INFO_WIDTH = 58  # characters per line of the info label (the dock is ~340 px wide)
STATE_TEXT = {
    "cached": "weights in your Hugging Face cache",
    "bundled": "",  # embed.offers.bundled_summary: what it is and how good
    "download": "not cached: Download fetches it once into the Hugging Face cache",
    "timm": "timm weights (downloaded on first use)",
    "local": "a local model",
}


def backbone_choices(extra_sources: list[str]) -> tuple[list[tuple[str, str]], dict[str, Any]]:
    """(label, name) pairs for the combo box, and the offers by name."""
    from napari_reddino.embed import offers

    by_name = {o.name: o for o in offers.backbone_offers()}
    choices = [(o.label, o.name) for o in by_name.values()]
    return choices + [(source, source) for source in extra_sources], by_name


def describe(offer: Any) -> tuple[str, str | None]:
    """Info line for the chosen backbone, and the Download button's text (None: no button)."""
    state = offer.state if offer is not None else "local"
    if state == "bundled":
        from napari_reddino.embed.offers import bundled_summary

        return textwrap.fill(bundled_summary(), INFO_WIDTH), None
    if state != "download":
        return STATE_TEXT.get(state, ""), None
    size = f" (~{offer.size_mb:.0f} MB)" if offer.size_mb else ""
    return STATE_TEXT[state], f"Download {offer.name}{size}"


def start_download(widget: Any, name: str) -> None:
    """Run :func:`~napari_reddino.embed.offers.iter_download` in the dock's task runner
    (napari's progress bar shows the megabytes); select the model once it is cached."""
    from napari_reddino.embed import offers

    def job(cancel: Any) -> Any:
        return (yield from offers.iter_download(name, cancel=cancel))

    def on_result(_name: str) -> None:
        widget.backbone.reset_choices()
        widget.backbone.value = name
        widget._describe_backbone()

    widget.runner.start(job, on_result, task="Downloading backbone")


def weights_message(exc: BaseException) -> str | None:
    """The dock's words for backbone weights that are neither cached nor downloadable: point at
    the cache folder and the Browse folder... button, not at Python (None: another error)."""
    from napari_reddino.embed.backbones import WeightsNotFoundError

    if not isinstance(exc, WeightsNotFoundError) or not hasattr(exc, "repo"):
        return None
    why = exc.why if "offline" in exc.why or "unreachable" in exc.why else f"{exc.why}; offline?"
    return (f"could not download {exc.backbone} ({exc.repo}) from Hugging Face ({why}). Put its "
            f"weights in the Hugging Face cache {exc.cache_folder} (download them once while "
            "online), or choose a folder with config.json + model.safetensors with Browse "
            "folder... in the Embed smear dock")
