"""Duplicates: hashing, the three levels, grouping with a kept representative, and the ukbench ground truth."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from conftest import make_photo, make_photos, shared_data
from glimpse.dedup import (
    Item,
    _dct_matrix,
    dhash,
    find_perceptual,
    group_pairs,
    hamming,
    image_hashes,
    perceptual_distance,
    phash,
    phash_pixels,
)
from glimpse.errors import UserInputError


def test_dct_matrix_is_orthonormal_and_phash_bits_follow_the_median():
    c = _dct_matrix(32)
    np.testing.assert_allclose(c @ c.T, np.eye(32), atol=1e-12)
    # An image built from chosen low-frequency coefficients: the hash bits are exactly "coefficient >
    # median of the 64", in row-major order (the inverse DCT of an orthonormal transform is its transpose).
    coefficients = np.zeros((32, 32))
    low = np.random.default_rng(0).permutation(64).reshape(8, 8).astype(float)
    coefficients[:8, :8] = low
    grey = c.T @ coefficients @ c
    value = phash_pixels(grey)
    bits = [(value >> (63 - i)) & 1 for i in range(64)]
    assert bits == (low.ravel() > np.median(low)).astype(int).tolist()


def test_hamming_and_dhash():
    assert hamming(0b1011, 0b0001) == 2
    ramp = Image.fromarray(np.tile(np.arange(0, 250, 25, dtype=np.uint8), (8, 1)))  # brighter to the right
    assert dhash(ramp) == 0
    assert dhash(ramp.transpose(Image.Transpose.FLIP_LEFT_RIGHT)) == (1 << 64) - 1


def test_phash_is_robust_to_resize_and_reencode_and_flip_is_matched(tmp_path):
    path = make_photo(tmp_path / "a.png", seed=7, size=(200, 150))
    image = Image.open(path).convert("RGB")
    image.resize((90, 70)).save(tmp_path / "small.jpg", quality=60)
    small = Image.open(tmp_path / "small.jpg")
    assert hamming(phash(image), phash(small)) <= 6
    flipped = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    a, b = image_hashes(image), image_hashes(flipped)
    assert hamming(a.full, b.full) > 10  # a plain pHash does not see the mirror ...
    assert perceptual_distance(a, b) <= 2  # ... the flip-invariant check does
    other = image_hashes(Image.open(make_photo(tmp_path / "b.png", seed=8, size=(200, 150))))
    assert perceptual_distance(a, other) > 10


def test_group_pairs_components_and_representative():
    items = [Item("/x/b.jpg", 2, 100), Item("/x/a.jpg", 1, 400), Item("/x/c.jpg", 3, 400), Item("/x/d.jpg", 4, 50)]
    groups = group_pairs(items, [(0, 1, 3.0), (1, 2, 1.0)], higher_is_closer=False)
    assert len(groups) == 1
    group = groups[0]
    # Largest image first; a tie (a and c both 400 px) goes to the older catalog id.
    assert group.keep.path == "/x/a.jpg"
    assert [d.path for d in group.duplicates] == ["/x/c.jpg", "/x/b.jpg"]
    assert group.scores == [1.0, 3.0]


def test_perceptual_on_ukbench_groups_every_variant_with_its_original_and_nothing_else():
    root = shared_data("dups")
    report = find_perceptual(sorted(str(p) for p in (root / "mixed_images").iterdir()) +
                             sorted(str(p) for p in (root / "base_images").iterdir()))
    groups = {frozenset(p.rsplit("/", 2)[-2] + "/" + p.rsplit("/", 1)[1]
                        for p in [g.keep.path] + [d.path for d in g.duplicates]) for g in report.groups}
    assert groups == {
        frozenset({"mixed_images/ukbench00120.jpg", "mixed_images/ukbench00120_hflip.jpg",
                   "mixed_images/ukbench00120_resize.jpg", "mixed_images/ukbench00120_rotation.jpg",
                   "base_images/ukbench00120.jpg"}),
        frozenset({"mixed_images/ukbench09268.jpg", "base_images/ukbench09268.jpg"}),
    }
    # The corrupt file is reported, not grouped and not fatal.
    assert [f["path"].rsplit("/", 1)[1] for f in report.failed] == ["ukbench09268_corrupt.jpg"]
    assert report.images == 15


def test_perceptual_on_formats_groups_the_same_photo_in_every_format():
    root = shared_data("dups", "formats_images")
    report = find_perceptual(sorted(str(p) for p in root.iterdir()))
    assert len(report.groups) == 1
    names = {p.rsplit("/", 1)[1] for p in [report.groups[0].keep.path] + [d.path for d in report.groups[0].duplicates]}
    assert names == {"ukbench09380.bmp", "ukbench09380.jpeg", "ukbench09380.png", "ukbench09380.svg",
                     "ukbench09380.webp"}


def test_exact_and_semantic_levels_over_a_library(tmp_path, open_lib):
    photos = make_photos(tmp_path / "photos", 3)
    shutil.copy(photos[0], tmp_path / "photos" / "copy_of_0.jpg")
    Image.open(photos[1]).save(tmp_path / "photos" / "reencoded_1.png")  # same pixels, other bytes
    lib = open_lib()
    lib.index([tmp_path / "photos"])
    from glimpse.dedup import find_duplicates

    exact = find_duplicates(lib, "exact").to_dict()
    assert len(exact["groups"]) == 1
    group = exact["groups"][0]
    assert {group["keep"]["path"].rsplit("/", 1)[1]} | {d["path"].rsplit("/", 1)[1] for d in group["duplicates"]} \
        == {"img_000.jpg", "copy_of_0.jpg"}
    semantic = find_duplicates(lib, "semantic", 0.9999).to_dict()
    names = sorted(sorted([g["keep"]["path"].rsplit("/", 1)[1]] + [d["path"].rsplit("/", 1)[1]
                                                                    for d in g["duplicates"]])
                   for g in semantic["groups"])
    # Byte copies have equal embeddings; the lossless re-encode decodes to the same pixels.
    assert ["copy_of_0.jpg", "img_000.jpg"] in names and ["img_001.jpg", "reencoded_1.png"] in names
    with pytest.raises(UserInputError, match="Hamming"):
        find_duplicates(lib, "perceptual", 99)
    with pytest.raises(UserInputError, match="unknown level"):
        find_duplicates(lib, "fuzzy")


def test_dupes_cli(tmp_path, tiny_clip):
    from typer.testing import CliRunner

    from glimpse.cli import app

    make_photos(tmp_path / "photos", 2)
    image = Image.open(tmp_path / "photos" / "img_000.jpg")
    image.resize((48, 36)).save(tmp_path / "photos" / "small.jpg")
    base = ["--library", str(tmp_path / "lib"), "--model", str(tiny_clip)]
    runner = CliRunner()
    assert runner.invoke(app, [*base, "index", str(tmp_path / "photos")]).exit_code == 0
    result = runner.invoke(app, [*base, "dupes", "--level", "perceptual", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert len(data["groups"]) == 1 and data["groups"][0]["keep"]["path"].endswith("img_000.jpg")
    assert data["groups"][0]["duplicates"][0]["path"].endswith("small.jpg")
    result = runner.invoke(app, [*base, "dupes", "--level", "exact", str(tmp_path / "photos")])
    assert result.exit_code == 1 and "--level perceptual" in result.stderr


def test_vectorised_distances_equal_the_pairwise_definition(tmp_path):
    from glimpse.dedup import _close_pairs

    hashes = [image_hashes(Image.open(make_photo(tmp_path / f"{i}.png", seed=i, size=(60, 40)))) for i in range(5)]
    hashes.append(image_hashes(Image.open(tmp_path / "0.png").transpose(Image.Transpose.FLIP_LEFT_RIGHT)))
    found = {(i, int(j)): int(d) for i, js, ds in _close_pairs(hashes, 64) for j, d in zip(js, ds, strict=True)}
    expected = {(i, j): perceptual_distance(hashes[i], hashes[j]) for i in range(6) for j in range(i + 1, 6)}
    assert found == expected
    assert found[(0, 5)] <= 2
