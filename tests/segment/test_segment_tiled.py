"""Large smears segment tile by tile from lazy arrays (issue 16): the same cells as the untiled
segmentation, cells cut by a tile seam whole, and the smear never read nor converted whole."""

from __future__ import annotations

import tracemalloc

import dask.array as da
import numpy as np
import pytest
from scipy import ndimage
from scipy.spatial import cKDTree

from napari_reddino.io.image_checks import InputError, LazyImage, validate_image
from napari_reddino.segment.dispatch import classical_segment, segment
from napari_reddino.synthetic.smear import synthetic_smear

TILE = 512
SMEAR, CANVAS = 1024, 4096  # the smear sits in the corner of a large canvas of empty glass


class _Reads:
    """A lazy array that records the size of every window read from it."""

    def __init__(self, data):
        self.data, self.shape, self.dtype, self.windows = data, data.shape, data.dtype, []

    def __getitem__(self, key):
        block = self.data[key]
        self.windows.append(int(np.prod(block.shape[:2])))
        return block


@pytest.fixture(scope="module")
def smear():
    return synthetic_smear(shape=(SMEAR, SMEAR), seed=3)


@pytest.fixture(scope="module")
def tiled(smear):
    """The smear on a lazy 4096² canvas (dask, 256² chunks), segmented in 512² tiles."""
    glass = np.median(smear.image.reshape(-1, 3), axis=0).astype(np.uint8)

    def empty(height, width):
        return da.broadcast_to(da.from_array(glass), (height, width, 3)).rechunk((256, 256, 3))

    top = da.concatenate([da.from_array(smear.image, chunks=(256, 256, 3)),
                          empty(SMEAR, CANVAS - SMEAR)], axis=1)
    canvas = da.concatenate([top, empty(CANVAS - SMEAR, CANVAS)], axis=0)
    lazy = _Reads(canvas)
    tracemalloc.start()
    result = segment(lazy, tile=TILE)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return result, lazy.windows, peak


@pytest.mark.slow
def test_a_lazy_smear_gives_the_cells_of_the_untiled_segmentation(smear, tiled):
    result, _, _ = tiled
    whole = segment(smear.image, tile=4096)
    assert abs(len(result.features) - len(whole.features)) <= 0.01 * len(whole.features)
    # every cell the untiled run finds across a tile seam comes out whole, once
    boxes = ndimage.find_objects(whole.labels)
    seams = [i for i, box in enumerate(boxes, 1) if box and any(
        s.start // TILE != (s.stop - 1) // TILE for s in box)]
    assert len(seams) > 10
    ref = whole.features.set_index("label").loc[seams]
    distance, row = cKDTree(result.features[["centroid_y", "centroid_x"]]).query(
        ref[["centroid_y", "centroid_x"]])
    areas = result.features["area"].to_numpy()[row]
    whole_cut = (distance < 1.5) & (np.abs(areas / ref["area"].to_numpy() - 1) < 0.05)
    assert whole_cut.mean() >= 0.99
    labels = result.labels
    assert np.array_equal(np.unique(labels)[1:], result.features["label"].to_numpy())


@pytest.mark.slow
def test_a_lazy_smear_is_never_read_nor_converted_whole(tiled):
    result, windows, peak = tiled
    assert max(windows) < 0.1 * CANVAS**2  # a tile and its halo at a time
    float_plane = CANVAS * CANVAS * 4  # one full-size float32 plane; the RGB would be 3x
    assert peak - result.labels.nbytes < float_plane / 2


def test_lazy_windows_are_scaled_like_the_whole_image():
    rng = np.random.default_rng(0)
    image = rng.uniform(-50, 3000, (64, 80)).astype(np.float32)
    image[5, 7] = np.nan
    lazy = LazyImage(da.from_array(image, chunks=16), strip_pixels=500)
    window = lazy.window(10, 40, 20, 60)
    expected = validate_image(np.where(np.isnan(image), np.nanmedian(image), image))[10:40, 20:60]
    assert np.abs(window.astype(int) - expected).max() <= 1


@pytest.mark.parametrize(("data", "message"), [
    (da.zeros((3, 64, 64), chunks=32), "transpose"),
    (da.zeros((64, 64), chunks=32, dtype=np.complex64), "complex"),
    (da.full((64, 64), np.nan, chunks=32), "no finite pixel values"),
])
def test_a_bad_lazy_smear_gets_the_same_message_as_an_array(data, message):
    with pytest.raises(InputError, match=message):
        classical_segment(data)


def test_a_memmap_smear_segments_into_a_zarr_label_store(tmp_path):
    import zarr

    from napari_reddino.progress import run_to_completion
    from napari_reddino.segment.tiled import iter_tiled_segment

    image = synthetic_smear(shape=(384, 384), seed=5).image
    mapped = np.lib.format.open_memmap(tmp_path / "smear.npy", mode="w+", dtype=np.uint8,
                                       shape=image.shape)
    mapped[:] = image
    store = zarr.create_array(str(tmp_path / "labels.zarr"), shape=image.shape[:2],
                              chunks=(128, 128), dtype=np.int32, fill_value=0)
    on_disk = run_to_completion(iter_tiled_segment(mapped, tile=192, out=store))
    in_memory = segment(mapped, tile=192)
    np.testing.assert_array_equal(store[:], in_memory.labels)
    assert len(on_disk.features) == len(in_memory.features) > 10
