"""napari sample data: real smears (Chula RBC-12, MIT) and synthetic smears with their truth,
as LayerData tuples (no Qt here).

The real smears ship in ``napari_reddino/data`` (see its README for the attribution); their
image layers carry ``metadata`` ``image`` (the file name) and ``subject`` (the diagnosis).

Each smear gives an RGB Image layer (``metadata``: ``image``, ``subject``, ``synthetic`` style)
and a Labels layer "<name> truth" whose ``features`` are the truth table. There the truth class
is ``true_class`` (and ``true_parasitized``), so it never looks like the user's own ``class``
labels that the labeling dock writes.
"""

from __future__ import annotations

from importlib import resources

from napari_reddino.names import IMAGE, SUBJECT
from napari_reddino.synthetic.smear import Smear, synthetic_dataset, synthetic_smear

SAMPLE_SHAPE = (1024, 1024)
SUBJECTS_SHAPE = (768, 768)
#: bundled real smears: file in napari_reddino/data -> subject (the smear's diagnosis)
REAL_SMEARS = {"chula_elliptocytosis.jpg": "hereditary elliptocytosis",
               "chula_thalassemia.jpg": "thalassemia"}


def real_smear_path(name: str = "chula_elliptocytosis.jpg"):
    """Path of a bundled real smear photo."""
    if name not in REAL_SMEARS:
        raise KeyError(f"no bundled smear {name!r}; there are {sorted(REAL_SMEARS)}")
    return resources.files("napari_reddino") / "data" / name


def _real_layer(name: str) -> tuple:
    import imageio.v3 as iio

    with resources.as_file(real_smear_path(name)) as path:
        image = iio.imread(path)
    meta = {IMAGE: name, SUBJECT: REAL_SMEARS[name], "source": "Chula RBC-12 (MIT)"}
    return image, {"name": name.rsplit(".", 1)[0], "rgb": True, "metadata": meta}, "image"


def real_smear_sample() -> list[tuple]:
    """A real 1280 x 960 Wright-stained smear (hereditary elliptocytosis, Chula RBC-12)."""
    return [_real_layer("chula_elliptocytosis.jpg")]


def real_smears_sample() -> list[tuple]:
    """Two real smears of two diagnoses (elliptocytosis, thalassemia): two subjects."""
    return [_real_layer(name) for name in REAL_SMEARS]


def smear_layers(smear: Smear) -> list[tuple]:
    """An image layer and its truth labels layer for one synthetic smear."""
    name = smear.metadata["image"]
    subject = smear.metadata["subject"]
    style = {k: v for k, v in smear.metadata.items() if k not in ("image", "subject")}
    image_meta = {"image": name, "subject": subject, "synthetic": style}
    truth = smear.cells.rename(columns={"class": "true_class", "parasitized": "true_parasitized"})
    labels_meta = {"image": name, "subject": subject, "image_layer": name, "truth": True}
    return [
        (smear.image, {"name": name, "rgb": True, "metadata": image_meta}, "image"),
        (smear.labels, {"name": f"{name} truth", "features": truth, "metadata": labels_meta,
                        "opacity": 0.4}, "labels"),
    ]


def synthetic_smear_sample() -> list[tuple]:
    """One 1024 x 1024 synthetic smear (some ring-stage parasites) and its truth."""
    return smear_layers(synthetic_smear(SAMPLE_SHAPE, seed=0, parasites=True,
                                        name="synthetic_smear"))


def synthetic_subjects_sample() -> list[tuple]:
    """Three subjects' smears (768 x 768, batch effects at full strength) and their truth."""
    layers = []
    for smear in synthetic_dataset(n_subjects=3, images_per_subject=1, shape=SUBJECTS_SHAPE,
                                   seed=0):
        layers += smear_layers(smear)
    return layers
