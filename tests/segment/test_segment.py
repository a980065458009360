"""Segmentation: classical backend against synthetic truth and real smears, bad input, progress."""

from __future__ import annotations

import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from skimage import io

from napari_reddino.progress import Cancelled, Progress
from napari_reddino.segment import cellpose_backend
from napari_reddino.segment.dispatch import (
    InputError,
    SegmentationResult,
    WeightsNotFoundError,
    classical_segment,
    iter_segment,
    segment,
    validate_image,
)
from napari_reddino.segment.metrics import instance_score, match_instances
from napari_reddino.synthetic.smear import RBC_CLASSES, synthetic_dataset

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
if not DATA.is_dir():
    DATA = Path("/work/shared/data")


def scored_truth(smear):
    """Truth ids that do not count: distractors and cells cut by the image border."""
    labels = smear.labels
    edge = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    cells = smear.cells
    ignore = cells["label"][~cells["class"].isin(RBC_CLASSES) | cells["label"].isin(edge)]
    return set(ignore.tolist())


@pytest.fixture(scope="module")
def subjects():
    return synthetic_dataset(3, 1, (768, 768), seed=0)


@pytest.fixture(scope="module")
def one_smear(subjects):
    return subjects[0]


@pytest.fixture(scope="module")
def reference_labels(one_smear):
    return classical_segment(one_smear.image)


def test_matching_on_known_cases():
    truth = np.zeros((20, 20), np.int32)
    truth[2:8, 2:8] = 1
    truth[10:18, 10:18] = 2
    truth[2:6, 12:16] = 3
    pred = np.zeros_like(truth)
    pred[2:8, 3:8] = 5  # IoU 30/36 with 1
    pred[10:18, 10:13] = 6  # IoU 24/64 with 2: too low
    pred[0:2, 0:2] = 9  # nothing there
    t, p, iou = match_instances(truth, pred)
    assert t.tolist() == [1] and p.tolist() == [5] and iou[0] == pytest.approx(30 / 36)
    score = instance_score(truth, pred)
    assert (score.tp, score.fp, score.fn) == (1, 2, 2)
    assert score.f1 == pytest.approx(2 / 6)  # 2 TP / (2 TP + FP + FN)
    assert instance_score(truth, truth).f1 == 1.0
    ignoring = instance_score(truth, pred, ignore_truth={3})
    assert (ignoring.tp, ignoring.fp, ignoring.fn) == (1, 2, 1)


@pytest.mark.parametrize("index", [0, 1, 2])
def test_classical_reaches_f1_on_each_subject(subjects, index):
    smear = subjects[index]
    labels = classical_segment(smear.image)
    score = instance_score(smear.labels, labels, ignore_truth=scored_truth(smear))
    print(f"{smear.metadata['subject']}: F1 {score.f1:.3f} P {score.precision:.3f} "
          f"R {score.recall:.3f} ({score.tp} TP)")
    assert score.f1 >= 0.90
    assert labels.dtype == np.int32 and labels.shape == smear.labels.shape
    edge = np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])
    assert edge.any()  # cells cut by the border are kept (and flagged in the table) by default
    dropped = classical_segment(smear.image, exclude_border=True)
    edge = np.concatenate([dropped[0], dropped[-1], dropped[:, 0], dropped[:, -1]])
    assert not edge.any() and dropped.max() < labels.max()


def test_tiles_give_the_same_cells(one_smear, reference_labels):
    tiled = classical_segment(one_smear.image, tile=300)
    score = instance_score(reference_labels, tiled)
    assert score.f1 > 0.97, score  # only cells near tile seams may differ
    assert len(np.unique(tiled)) - 1 == tiled.max()  # sequential ids, no duplicates


def test_iter_segment_reports_progress_and_measures_cells(one_smear):
    gen = iter_segment(one_smear.image, image_name="s.png", subject="p1", tile=400)
    reports = []
    while True:
        try:
            reports.append(next(gen))
        except StopIteration as stop:
            result = stop.value
            break
    assert all(isinstance(r, Progress) for r in reports) and len(reports) == 5  # 4 tiles + end
    assert reports[-1].fraction == 1.0
    assert isinstance(result, SegmentationResult)
    ids = np.unique(result.labels)
    assert result.features["label"].tolist() == ids[ids > 0].tolist()
    assert set(result.features["image"]) == {"s.png"} and set(result.features["subject"]) == {"p1"}
    np.testing.assert_array_equal(result.features["area"], np.bincount(result.labels.ravel())[1:])


def test_cancel_stops_between_tiles(one_smear):
    cancel = threading.Event()
    gen = iter_segment(one_smear.image, cancel=cancel, tile=256)
    next(gen)
    cancel.set()
    with pytest.raises(Cancelled):
        next(gen)


def test_equivalent_encodings_give_the_same_cells(one_smear, reference_labels):
    rgb = one_smear.image
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    np.testing.assert_array_equal(classical_segment(rgba), reference_labels)
    np.testing.assert_array_equal(classical_segment(rgb.astype(np.uint16) * 257),
                                  reference_labels)
    np.testing.assert_array_equal(classical_segment(rgb / 255.0), reference_labels)
    gray = rgb.mean(2)
    gray_labels = classical_segment(gray)
    assert instance_score(reference_labels, gray_labels).f1 > 0.85


def test_nan_pixels_are_filled_not_segmented(one_smear, reference_labels):
    floats = one_smear.image.astype(np.float32)
    floats[:40, :40] = np.nan
    floats[300, 300] = np.inf
    labels = classical_segment(floats)
    assert instance_score(reference_labels, labels).f1 > 0.97
    typical = np.median(floats[np.isfinite(floats)])  # bright glass, never a dark 0
    assert (validate_image(floats)[5, 5] == round(float(typical))).all()
    assert typical > 200


def test_validate_image_conversions():
    gray16 = np.array([[0, 65535], [1000, 2000]] * 8, np.uint16)
    out = validate_image(np.tile(gray16, (1, 8)))
    assert out.shape == (16, 16, 3) and out.dtype == np.uint8 and out.max() == 255
    floats = np.linspace(-1, 1, 256).reshape(16, 16)
    assert validate_image(floats).min() == 0 and validate_image(floats).max() == 255
    with_nan = np.ones((16, 16), np.float32)
    with_nan[0, 0] = np.nan
    assert (validate_image(with_nan) == 255).all()  # NaN takes the typical (median) value
    assert validate_image(np.ones((10, 10), bool)).max() == 255


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (np.zeros((1, 1, 3), np.uint8), "at least"),
        (np.zeros(100, np.uint8), "2D gray"),
        (np.zeros((4, 32, 32, 3), np.uint8), "2D gray"),
        (np.zeros((32, 32, 5), np.uint8), "2D gray"),
        (np.full((32, 32), np.nan), "no finite"),
        (np.array([["a", "b"], ["c", "d"]]), "numbers"),
    ],
)
def test_bad_input_raises_a_clear_input_error(data, message):
    with pytest.raises(InputError, match=message):
        segment(data)
    assert issubclass(InputError, ValueError)


def test_unknown_method_or_parameter_is_an_input_error(one_smear):
    with pytest.raises(InputError, match="classical"):
        segment(one_smear.image, method="magic")
    with pytest.raises(InputError, match=r"no parameter\(s\) \['diameter'\].*min_area"):
        segment(one_smear.image, method="classical", diameter=30)
    with pytest.raises(InputError, match="min_area"):
        segment(one_smear.image, method="cellpose", min_area=30)


def test_empty_smears_have_no_cells():
    rng = np.random.default_rng(0)
    blank = np.full((256, 256, 3), (235, 225, 230), np.uint8)
    noisy = np.clip(blank + rng.normal(0, 3, blank.shape), 0, 255).astype(np.uint8)
    for image in (blank, noisy):
        result = segment(image)
        assert result.labels.max() == 0 and len(result.features) == 0


def _real(pattern: str, count: int):
    paths = sorted(DATA.glob(pattern))[:: max(1, len(sorted(DATA.glob(pattern))) // count)]
    if not paths:
        pytest.skip(f"no real smears under {DATA}")
    return paths[:count]


def test_real_chula_smears_give_plausible_cells():
    for path in _real("chula_rbc_diseases/*/*.JPG", 3):
        image = io.imread(path)
        result = segment(image, image_name=path.name)
        features = result.features
        assert 25 <= len(features) <= 120, (path.name, len(features))
        # RBCs at 1000x in 1280x960 frames are ~45-75 px across
        diameter = 2 * np.sqrt(features["area"].median() / np.pi)
        assert 35 < diameter < 90, (path.name, diameter)
        assert features["solidity"].median() > 0.9  # whole cells, not fragments


def _rbc_boxes(xml_path: Path) -> np.ndarray:
    """Annotated RBC boxes (xmin, ymin, xmax, ymax) of one BCCD image."""
    boxes = []
    for obj in ET.parse(xml_path).getroot().iter("object"):
        if obj.findtext("name") == "RBC":
            box = obj.find("bndbox")
            boxes.append([float(box.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax")])
    return np.asarray(boxes).reshape(-1, 4)


def test_real_bccd_cells_agree_with_annotated_boxes():
    """BCCD boxes are incomplete (many RBCs unboxed), so check recall of boxes and cell size."""
    hits, boxed, found, detected_size, box_size = 0, 0, 0, [], []
    for path in _real("bccd/JPEGImages/*.jpg", 8):
        xml_path = DATA / "bccd" / "Annotations" / f"{path.stem}.xml"
        if not xml_path.is_file():
            continue
        boxes = _rbc_boxes(xml_path)
        features = segment(io.imread(path), exclude_border=False).features
        cy, cx = features["centroid_y"].to_numpy(), features["centroid_x"].to_numpy()
        inside = ((cx[None] >= boxes[:, :1]) & (cx[None] <= boxes[:, 2:3])
                  & (cy[None] >= boxes[:, 1:2]) & (cy[None] <= boxes[:, 3:4]))
        hits += int(inside.any(1).sum())
        boxed += len(boxes)
        found += len(features)
        detected_size.append(np.sqrt(features["area"].median() * 4 / np.pi))
        sides = boxes[:, 2:] - boxes[:, :2]
        box_size.append(np.median(np.sqrt(sides[:, 0] * sides[:, 1])))
    print(f"BCCD: {hits}/{boxed} boxed RBCs hit, {found} cells found; "
          f"diameter {np.median(detected_size):.0f} px vs boxes {np.median(box_size):.0f} px")
    assert hits / boxed > 0.75
    assert boxed * 0.8 < found < boxed * 2.5  # unboxed RBCs are real cells too
    assert np.median(detected_size) == pytest.approx(np.median(box_size), rel=0.35)


@pytest.mark.slow
def test_cellpose_backend_runs_a_real_model_from_local_weights(tiny_cellpose, one_smear):
    path, saved_net = tiny_cellpose
    image = one_smear.image[:128, :128]
    result = segment(image, method="cellpose", model="cpsam", diameter=40, gpu=False,
                     image_name="crop")
    assert result.labels.shape == (128, 128) and result.labels.dtype == np.int32
    ids = np.unique(result.labels)
    assert result.features["label"].tolist() == ids[ids > 0].tolist()
    loaded = cellpose_backend._load_model(str(path.resolve()), False)
    assert len(loaded.net.encoder.blocks) == 1  # our file, not a downloaded CPSAM
    np.testing.assert_array_equal(loaded.net.out.weight.detach().float().numpy(),
                                  saved_net.out.weight.detach().float().numpy())
    by_path = cellpose_backend.cellpose_segment(image, model=path, diameter=40, gpu=False)
    np.testing.assert_array_equal(by_path, result.labels)


def test_missing_cellpose_weights_fail_fast_with_directions(monkeypatch, tmp_path, one_smear):
    empty = tmp_path / "no_models"
    monkeypatch.setenv("CELLPOSE_LOCAL_MODELS_PATH", str(empty))
    start = time.perf_counter()
    with pytest.raises(WeightsNotFoundError) as info:
        segment(one_smear.image, method="cellpose", model="cpsam")
    assert time.perf_counter() - start < 5  # no download attempt, no hang
    message = str(info.value)
    assert str(empty / "cpsam") in message and "CELLPOSE_LOCAL_MODELS_PATH" in message
    assert "huggingface.co/mouseland/cellpose-sam" in message
    with pytest.raises(WeightsNotFoundError, match="neither a weights file"):
        cellpose_backend.cellpose_segment(one_smear.image, model=str(tmp_path / "mine.pt"))
    assert issubclass(WeightsNotFoundError, FileNotFoundError)
