"""Channels → datasets: both channel layouts, nested and hidden files, class checks, unreadable images skipped, empty
splits named."""

import os
import shutil
from pathlib import Path

import pytest
import torch

from dogbreed import data
from dogbreed.errors import UserError
from local_test.make_sample_data import make_dataset


@pytest.fixture
def dog_images(tmp_path: Path) -> Path:
    return make_dataset(tmp_path / "dogImages", per_class=3, classes=3, size=(24, 24))


def test_one_training_channel_holding_the_dogimages_layout(dog_images):
    splits = data.find_splits({"training": dog_images})
    expected = (dog_images / "train", dog_images / "valid", dog_images / "test")
    assert (splits.train, splits.valid, splits.test) == expected


def test_separate_channels_accept_validation_as_valid(dog_images):
    splits = data.find_splits({"train": dog_images / "train", "validation": dog_images / "valid"})
    assert splits.valid == dog_images / "valid" and splits.test is None


def test_missing_channels_say_what_is_expected():
    with pytest.raises(UserError, match="expected a 'train' channel"):
        data.find_splits({"images": Path("/nowhere")})


def test_an_upload_wrapped_in_folders_is_found_whichever_channel_holds_it(dog_images, tmp_path):
    """s3://bucket/uploads/ holding dogImages/ (and the __MACOSX/ a Mac's zip adds, and a README) as `training`,
    or the whole dogImages/ given as the `train` channel: the split folders inside are the splits."""
    upload = tmp_path / "uploads"
    upload.mkdir()
    dog_images.rename(upload / "dogImages")
    dog_images = upload / "dogImages"
    (upload / "__MACOSX" / "dogImages").mkdir(parents=True)
    (upload / "README.txt").write_text("dog breeds")
    (dog_images / "valid").rename(dog_images / "Validation")  # split folders' names in any case
    expected = (dog_images / "train", dog_images / "Validation", dog_images / "test")
    for channels in ({"training": tmp_path}, {"train": upload}, {"train": dog_images}):
        splits = data.find_splits(channels)
        assert (splits.train, splits.valid, splits.test) == expected, channels
    with pytest.raises(UserError, match=r"holds the splits \['test', 'train', 'validation'\], and channels \['val'\]"):
        data.find_splits({"train": dog_images, "val": dog_images / "Validation"})


def test_a_layout_without_class_folders_says_what_it_found_and_how_to_lay_it_out(dog_images, tmp_path):
    """Loose images, an archive below the channel's folder, a manifest, splits nested deeper than the wrapper folders
    looked through, an empty folder: each is named in the error, with the layout to use instead."""
    loose = tmp_path / "loose"
    loose.mkdir()
    for image in sorted((dog_images / "train").rglob("*.jpg")):
        shutil.copy(image, loose / f"{image.parent.name}-{image.name}")
    nested = tmp_path / "nested" / "upload"
    nested.mkdir(parents=True)
    (nested / "dogImages.zip").write_bytes(b"PK")
    manifest = tmp_path / "manifest"
    manifest.mkdir()
    (manifest / "train.manifest").write_text('{"source-ref": "s3://b/x.jpg", "class": 0}\n')
    deep = tmp_path / "deep" / "a" / "b" / "c"
    deep.mkdir(parents=True)
    dog_images.rename(deep / "dogImages")
    (tmp_path / "empty").mkdir()
    expected = {
        "loose": f"found 9 image file(s) directly in {loose} (001.Affenpinscher-",
        "nested": f"found archive(s) not unpacked: {nested / 'dogImages.zip'}; an archive is unpacked only when",
        "manifest": f"found {manifest / 'train.manifest'}: manifest files are not read; upload the images themselves",
        "deep": f"found a train/ split folder in {deep / 'dogImages'}, below more than 3 wrapper folders: point",
        "empty": f"{tmp_path / 'empty'} is empty",
    }
    for channel, message in expected.items():
        with pytest.raises(UserError, match="a classifier needs at least two") as raised:
            data.load_splits(data.find_splits({"training": tmp_path / channel}))
        assert message in str(raised.value), channel
        if channel == "loose":
            assert f"put each class's images in its own folder, e.g. {loose}/001.Affenpinscher/" in str(raised.value)


def test_class_folders_alone_hold_out_a_validation_split_by_file_path(dog_images, tmp_path, caplog):
    """Only training images: each class of 2+ images gives valid_fraction of them (at least one, never all) to a
    validation split, the same ones wherever the files are mounted."""
    caplog.set_level("INFO", logger="dogbreed.data")
    train = dog_images / "train"
    for junk in ("__MACOSX", "$RECYCLE.BIN", "System Volume Information"):  # what a Mac's zip or a USB stick adds
        (train / junk / "x").mkdir(parents=True)  # not classes
    source = next(train.glob("001.*/*.jpg"))
    for number in range(7):  # 001: 10 images, 002: 3, 003: 1
        (source.parent / f"more{number}.jpg").write_bytes(source.read_bytes())
    for image in sorted(train.glob("003.*/*.jpg"))[1:]:
        image.unlink()
    splits = data.load_splits(data.find_splits({"train": train}), valid_fraction=0.2)
    assert splits.class_names == ["001.Affenpinscher", "002.Afghan_hound", "003.Airedale_terrier"]
    held = [label for _, label in splits.valid.samples]
    assert held == [0, 0, 1] and [label for _, label in splits.train.samples] == [0] * 8 + [1] * 2 + [2]
    assert sorted(path for path, _ in splits.train.samples + splits.valid.samples) == sorted(train.rglob("*.jpg"))
    assert "3 of the 14 training images are held out to validate on (valid_fraction=0.2" in caplog.text

    moved = tmp_path / "elsewhere"
    train.rename(moved)
    again = data.load_splits(data.find_splits({"training": moved}), valid_fraction=0.2)
    assert [path.relative_to(moved) for path, _ in again.valid.samples] == [
        path.relative_to(train) for path, _ in splits.valid.samples
    ]


def test_unreadable_image_is_skipped_and_counted(dog_images, caplog):
    (dog_images / "train" / "001.Affenpinscher" / "broken.jpg").write_bytes(b"not a jpeg")
    splits = data.load_splits(data.find_splits({"training": dog_images}))
    assert len(splits.train) == 9 and splits.class_names[0] == "001.Affenpinscher"
    assert "skipped 1 unreadable image(s) in train split" in caplog.text


def test_an_image_serving_would_refuse_as_too_elongated_is_skipped(dog_images, caplog):
    """Its eval resize scales the short side to 256: a 20000x1 banner would take 4 GB in a loader worker."""
    from PIL import Image

    folder = dog_images / "valid" / "002.Afghan_hound"
    Image.new("RGB", (2100, 100)).save(folder / "banner.png")  # 21:1
    Image.new("RGB", (100, 2000)).save(folder / "tall.png")  # 20:1, as serving allows
    names = [path.name for path, _ in load(dog_images).valid.samples]
    assert "tall.png" in names and "banner.png" not in names
    assert f"skipped 1 {data.ELONGATED} image(s) in valid split, e.g. {folder / 'banner.png'}" in caplog.text


def test_split_without_images_names_its_path(dog_images):
    for image in (dog_images / "valid").rglob("*.jpg"):
        image.unlink()
    with pytest.raises(UserError, match=f"no readable images in the valid split at {dog_images / 'valid'}"):
        data.load_splits(data.find_splits({"training": dog_images}))


def load(dog_images: Path) -> data.Splits:
    return data.load_splits(data.find_splits({"training": dog_images}))


def nest(folder: Path, *parts: str) -> list[Path]:
    """Move the images of a class folder into folder/<parts>/; returns their new paths."""
    target = folder.joinpath(*parts)
    target.mkdir(parents=True)
    return [image.rename(target / image.name) for image in sorted(folder.glob("*.jpg"))]


def test_images_in_subfolders_of_a_class_folder_are_found_in_sorted_order(dog_images):
    train = dog_images / "train"
    deep = nest(train / "002.Afghan_hound", "phone", "2024")
    shallow = nest(train / "003.Airedale_terrier", "Camera")
    splits = load(dog_images)
    labels = dict(splits.train.samples)
    assert [labels[path] for path in deep + shallow] == [1] * 3 + [2] * 3
    assert splits.train.samples == sorted(splits.train.samples, key=lambda sample: (sample[1], sample[0]))


def test_symlinked_folders_are_followed_and_a_symlink_cycle_ends(dog_images, tmp_path):
    folder = dog_images / "train" / "001.Affenpinscher"
    elsewhere = tmp_path / "elsewhere"
    moved = nest(folder, "album")
    (folder / "album").rename(elsewhere)
    (folder / "linked").symlink_to(elsewhere, target_is_directory=True)
    (elsewhere / "loop").symlink_to(elsewhere, target_is_directory=True)  # two cycles: a walk that follows links
    (elsewhere / "up").symlink_to(folder, target_is_directory=True)  # blindly never ends
    paths = [path for path, label in load(dog_images).train.samples if label == 0]
    assert paths == [folder / "linked" / image.name for image in moved]


def test_a_symlinked_folder_leading_to_other_classes_is_skipped_with_a_warning(dog_images, caplog):
    """Links to the split folder (`dirloop -> ..`), to an ancestor of it, to another class's folder or into one would
    label that class's images (or every image) with this class too: each is skipped, named in a warning."""
    train = dog_images / "train"
    before = load(dog_images).train.samples
    (train / "002.Afghan_hound" / "dirloop").symlink_to("..", target_is_directory=True)
    (train / "001.Affenpinscher" / "up").symlink_to(dog_images, target_is_directory=True)
    (train / "003.Airedale_terrier" / "sibling").symlink_to(train / "001.Affenpinscher", target_is_directory=True)
    nest(train / "001.Affenpinscher", "album")
    (train / "003.Airedale_terrier" / "album").symlink_to(train / "001.Affenpinscher" / "album")
    after = load(dog_images).train.samples
    assert sorted(label for _, label in after) == sorted(label for _, label in before) == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    for link in ("002.Afghan_hound/dirloop", "001.Affenpinscher/up", "003.Airedale_terrier/sibling"):
        assert f"skipped folder {train / link}: it leads to" in caplog.text
    assert "which holds other classes' images (they would be labelled 002.Afghan_hound too)" in caplog.text


def test_hidden_files_and_folders_are_skipped(dog_images, caplog):
    folder = dog_images / "train" / "001.Affenpinscher"
    first = sorted(folder.glob("*.jpg"))[0]
    (folder / f"._{first.name}").write_bytes(b"\x00\x05\x16\x07 AppleDouble resource fork")
    (folder / ".ipynb_checkpoints").mkdir()
    (folder / ".ipynb_checkpoints" / first.name).write_bytes(first.read_bytes())
    (dog_images / "train" / ".cache").mkdir()  # a hidden folder is not a class either
    splits = load(dog_images)
    assert len(splits.train) == 9 and len(splits.class_names) == 3
    parts = {part for path, _ in splits.train.samples for part in path.relative_to(dog_images).parts}
    assert not [part for part in parts if part.startswith(".")]
    assert "unreadable" not in caplog.text


def test_images_are_found_by_every_name_pillow_gives_their_format_and_other_files_are_reported(dog_images, caplog):
    """Web downloads are often .jfif/.jpe, scanners write .tif and .pgm: all train. Other files are not silently
    dropped: the log counts them. A file is read only as a format serving reads (not EPS, whatever its name)."""
    folder = dog_images / "train" / "001.Affenpinscher"
    jpeg_bytes = sorted(folder.glob("*.jpg"))[0].read_bytes()
    (folder / "from_the_web.jfif").write_bytes(jpeg_bytes)
    (folder / "old.JPE").write_bytes(jpeg_bytes)
    (folder / "scan.pgm").write_bytes(b"P5 24 24 255\n" + bytes(range(24)) * 24)
    (folder / "notes.txt").write_text("good boy")
    (folder / "phone.heic").write_bytes(b"\0\0\0\x18ftypheic")
    (folder / "poster.jpg").write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 24 24\n")
    splits = load(dog_images)
    names = {path.name for path, _ in splits.train.samples}
    assert {"from_the_web.jfif", "old.JPE", "scan.pgm"} <= names and "poster.jpg" not in names
    assert len(splits.train) == 12
    assert "ignored 2 file(s) in train split not named as images we read" in caplog.text
    assert "skipped 1 unreadable image(s) in train split" in caplog.text


def test_valid_split_missing_a_class_is_labelled_by_train_classes(dog_images, caplog):
    shutil.rmtree(dog_images / "valid" / "001.Affenpinscher")
    (dog_images / "test" / "002.Afghan_hound" / "empty").mkdir()
    for image in (dog_images / "test" / "002.Afghan_hound").glob("*.jpg"):
        image.unlink()  # an emptied folder is missing the class just the same
    splits = load(dog_images)
    assert splits.class_names == ["001.Affenpinscher", "002.Afghan_hound", "003.Airedale_terrier"]
    assert {path.parent.name: label for path, label in splits.valid.samples} == {
        "002.Afghan_hound": splits.class_names.index("002.Afghan_hound"),
        "003.Airedale_terrier": splits.class_names.index("003.Airedale_terrier"),
    }
    assert {path.parent.name: label for path, label in splits.test.samples} == {
        "001.Affenpinscher": 0,
        "003.Airedale_terrier": 2,
    }
    assert warnings(caplog) == [
        f"valid split at {dog_images / 'valid'} has no readable image of 1 of the 3 classes, so its metrics leave "
        "them out: 001.Affenpinscher",
        f"test split at {dog_images / 'test'} has no readable image of 1 of the 3 classes, so its metrics leave "
        "them out: 002.Afghan_hound",
    ]


def test_class_folder_that_train_lacks_is_named(dog_images):
    (dog_images / "valid" / "002.Afghan_hound").rename(dog_images / "valid" / "099.Other")
    with pytest.raises(UserError, match=r"1 class folder\(s\) in .*valid are not in the train split .*: 099\.Other;"):
        load(dog_images)


def test_subset_is_seeded_and_capped(dog_images):
    train = data.load_splits(data.find_splits({"training": dog_images})).train
    half = data.subset(train, fraction=0.5, limit=0, seed=1)
    assert len(half) == 4 and half.samples == data.subset(train, fraction=0.5, limit=0, seed=1).samples
    assert len(data.subset(train, fraction=1.0, limit=2, seed=1)) == 2


def test_subset_keeps_an_image_of_every_class_while_its_size_allows(dog_images):
    """Stratified: with 30 images of class 0 and 3 of the others, a random 3 would often miss a class."""
    source = next((dog_images / "train" / "001.Affenpinscher").glob("*.jpg"))
    for number in range(27):
        shutil.copy(source, source.with_name(f"copy{number}.jpg"))
    train = load(dog_images).train
    for seed in range(20):
        assert sorted(label for _, label in data.subset(train, fraction=1.0, limit=3, seed=seed).samples) == [0, 1, 2]
        assert len({label for _, label in data.subset(train, fraction=1.0, limit=2, seed=seed).samples}) == 2


def test_a_class_none_of_whose_training_images_decodes_is_named(dog_images):
    """A JPEG cut after its header passes the scan and fails when read: once every image was read (as the first
    epoch reads them), a class left with none that decoded fails the job; one that lost some images does not."""
    train = dog_images / "train"
    for path in [*sorted(train.glob("002.*/*.jpg")), sorted(train.glob("003.*/*.jpg"))[0]]:
        path.write_bytes(path.read_bytes()[:800])
    splits = load(dog_images)
    assert len(splits.train) == 9
    decoded = [sample for sample in splits.train if sample is not None]
    assert sorted(label for _, label in decoded) == [0, 0, 0, 2, 2]
    with pytest.raises(UserError, match=r"1 class\(es\) have no training image that decodes .*: 002\.Afghan_hound;"):
        data.check_decoded(splits.train, splits.class_names, splits.train.undecodable.int())
    data.check_decoded(splits.train, splits.class_names, torch.zeros(9, dtype=torch.int32))  # none read yet


def test_sixteen_bit_grayscale_trains_as_its_eight_bit_twin_and_float_images_are_skipped(tmp_path, caplog):
    """Training decodes like serving (presets.decode_rgb): no 16-bit image clipped to white, no range guessed."""
    import numpy as np
    from PIL import Image

    gray8 = np.random.default_rng(0).integers(0, 256, (20, 30), dtype=np.uint8)
    folder = tmp_path / "001.Affenpinscher"
    folder.mkdir()
    Image.fromarray(gray8).save(folder / "eight.png")
    Image.fromarray(gray8.astype(np.uint16) * 257).save(folder / "sixteen.png")
    Image.new("F", (20, 30)).save(folder / "float.tiff")
    samples = [(folder / name, 0) for name in ("eight.png", "sixteen.png", "float.tiff")]
    images = data.ImageList(samples)
    assert np.array_equal(np.asarray(images[0][0]), np.asarray(images[1][0]))
    assert images[2] is None
    assert "no defined brightness range" in caplog.text


def test_a_jpeg_of_too_many_scans_is_skipped_before_decoding(tmp_path, caplog):
    """Each scan is one more pass over the image, every epoch: the serving limit (MAX_JPEG_SCANS) holds here too."""
    from PIL import Image
    from serving_requests import encode, many_scans_jpeg

    from dogbreed.formats import MAX_JPEG_SCANS

    (tmp_path / "bomb.jpg").write_bytes(many_scans_jpeg(2000))
    (tmp_path / "photo.jpg").write_bytes(encode(Image.new("RGB", (64, 64), (1, 2, 3)), "JPEG", progressive=True))
    images = data.ImageList([(tmp_path / "bomb.jpg", 0), (tmp_path / "photo.jpg", 0)])
    assert images[0] is None
    assert f"the limit is {MAX_JPEG_SCANS}" in caplog.text
    assert images[1][0].size == (64, 64)


def test_a_file_too_costly_to_decode_is_skipped_before_pillow_reads_it(tmp_path):
    """A TIFF listing its strips 20 times over: serving refuses it (formats.check_structure), training skips it."""
    from serving_requests import raw_tiff

    from dogbreed.formats import CostlyFile

    path = tmp_path / "strips.tif"
    path.write_bytes(raw_tiff((64, 64), (64, 1), copies=20))
    assert data.image_problem(path) == data.COSTLY
    with pytest.raises(CostlyFile, match="listing 1280 strips"):
        data.decode_file(path)


def test_loader_processes_are_as_many_as_shared_memory_holds(tmp_path, caplog):
    """Each loader process keeps 2 batches in flight, counted twice: with room for 4 batches in all, 1 process."""
    free = shutil.disk_usage(tmp_path).free
    assert data.loader_processes(3, batch_bytes=free // 1000, processes=1, shared_memory=tmp_path) == 3
    assert data.loader_processes(3, batch_bytes=free // 5, processes=1, shared_memory=tmp_path) == 1
    assert "num_workers=3 would keep" in caplog.text and "--shm-size" in caplog.text
    assert data.loader_processes(3, batch_bytes=free // 5, processes=2, shared_memory=tmp_path) == 0
    assert data.loader_processes(2, batch_bytes=1, processes=1, shared_memory=tmp_path / "absent") == 2


def test_the_same_split_twice_in_one_channel_is_refused_naming_both(dog_images):
    """train/ beside Train/ (or valid/ beside validation/): one of them was dropped without a word."""
    shutil.copytree(dog_images / "train", dog_images / "Train")
    with pytest.raises(UserError, match=r"holds Train and train, the same split twice"):
        data.find_splits({"training": dog_images})
    shutil.rmtree(dog_images / "Train")
    shutil.copytree(dog_images / "valid", dog_images / "validation")
    with pytest.raises(UserError, match=r"holds valid and validation, the same split twice"):
        data.find_splits({"training": dog_images})


def test_class_folders_match_across_splits_whatever_their_unicode_form(dog_images):
    """train/ zipped on a Mac (names decomposed: NFD), valid/ made elsewhere (NFC): the same class."""
    nfd, nfc = "003.Cafe\u0301", "003.Caf\u00e9"
    (dog_images / "train" / "003.Airedale_terrier").rename(dog_images / "train" / nfd)
    for split in ("valid", "test"):
        (dog_images / split / "003.Airedale_terrier").rename(dog_images / split / nfc)
    splits = data.load_splits(data.find_splits({"training": dog_images}))
    assert splits.class_names[2] == nfd
    valid_labels = [label for _, label in splits.valid.samples]
    assert valid_labels.count(2) == len(list((dog_images / "valid" / nfc).iterdir())) > 0
    shutil.copytree(dog_images / "valid" / nfc, dog_images / "train" / nfc)  # both forms in train: one name, twice
    with pytest.raises(UserError, match="same name written in two Unicode forms"):
        data.load_splits(data.find_splits({"training": dog_images}))


def test_a_split_folder_differing_from_trains_only_in_case_is_named_with_trains(dog_images, caplog):
    (dog_images / "valid" / "002.Afghan_hound").rename(dog_images / "valid" / "002.afghan_hound")
    with pytest.raises(UserError, match=r"split .*: 002\.afghan_hound \(train has 002\.Afghan_hound\)"):
        data.load_splits(data.find_splits({"training": dog_images}))
    shutil.copytree(dog_images / "train" / "002.Afghan_hound", dog_images / "train" / "002.AFGHAN_HOUND")
    shutil.rmtree(dog_images / "valid" / "002.afghan_hound")
    data.load_splits(data.find_splits({"training": dog_images}))
    assert "differ only in case, so they are different classes: 002.AFGHAN_HOUND and 002.Afghan_hound" in caplog.text


@pytest.mark.parametrize(
    ("given", "named"),
    [(("train", "training"), "train and training"), (("train", "valid", "validation"), "valid and validation")],
)
def test_two_channels_for_one_split_are_refused_naming_both(dog_images, given, named):
    """train + valid + validation: validation was never read; train + training: training was ignored."""
    folders = {"train": dog_images / "train", "training": dog_images, "valid": dog_images / "valid"}
    channels = {name: folders.get(name, dog_images / "valid") for name in given}
    with pytest.raises(UserError, match=rf"channels {named} were both given, but only one of them would be read"):
        data.find_splits(channels)


def test_a_valid_or_test_channel_of_one_class_is_that_class_not_a_wrapper(dog_images, tmp_path):
    """valid/ or test/ may lack classes: one holding only 001.Affenpinscher/ (images in DCIM/ below it) was read
    from inside that folder. A lone folder that is no class of train's is still a wrapper looked through."""
    for split in ("valid", "test"):
        for extra in ("002.Afghan_hound", "003.Airedale_terrier"):
            shutil.rmtree(dog_images / split / extra)
    nest(dog_images / "test" / "001.Affenpinscher", "DCIM")
    wrapped = tmp_path / "wrapped"
    (wrapped / "upload").mkdir(parents=True)
    (dog_images / "test").rename(wrapped / "upload" / "test-images")
    channels = {"train": dog_images / "train", "valid": dog_images / "valid", "test": wrapped}
    paths = data.find_splits(channels)
    assert (paths.valid, paths.test) == (dog_images / "valid", wrapped / "upload" / "test-images")
    splits = data.load_splits(paths)
    assert {label for _, label in splits.valid.samples + splits.test.samples} == {0}
    assert (len(splits.valid), len(splits.test)) == (1, 1)


def test_a_class_folder_name_that_is_not_utf8_is_refused_escaped(dog_images):
    """Trained, it became the label '004.Caf\\udce9', which JSON encoders refuse: serving answered 500."""
    train = os.fsencode(dog_images / "train")
    shutil.copytree(dog_images / "train" / "001.Affenpinscher", os.fsdecode(train + b"/004.Caf\xe9"))
    with pytest.raises(UserError, match=r"not UTF-8 \(the bytes shown as \\x\.\.\): 004\.Caf\\xe9; the class names"):
        load(dog_images)


def test_an_image_name_that_is_not_utf8_is_held_out_by_its_bytes(dog_images):
    """Holding out hashed the name's UTF-8 encoding: a latin-1 byte raised UnicodeEncodeError (exit 2)."""
    folder = os.fsencode(dog_images / "train" / "001.Affenpinscher")
    next((dog_images / "train" / "001.Affenpinscher").glob("*.jpg")).rename(os.fsdecode(folder + b"/caf\xe9.jpg"))
    splits = data.load_splits(data.find_splits({"train": dog_images / "train"}))
    assert len(splits.train) + len(splits.valid) == 9


def test_folders_beside_the_splits_and_images_beside_the_class_folders_are_named_in_warnings(dog_images, caplog):
    for name in ("dev", "testing"):
        shutil.copytree(dog_images / "valid", dog_images / name)
    shutil.copy(next(dog_images.glob("train/001.*/*.jpg")), dog_images / "train" / "loose.jpg")
    load(dog_images)
    assert warnings(caplog) == [
        f"ignored folder(s) dev, testing in {dog_images} beside the split folders: only train/ valid/ validation/ "
        "val/ test/ are read as splits",
        f"ignored 1 image(s) directly in train split folder {dog_images / 'train'} (e.g. loose.jpg): only images in "
        "a class folder are read",
    ]


def test_an_archive_in_a_format_not_unpacked_is_named(tmp_path):
    (tmp_path / "training").mkdir()
    (tmp_path / "training" / "dogImages.7z").write_bytes(b"7z")
    (tmp_path / "training" / "dogImages.tar.gzip").write_bytes(b"gz")
    with pytest.raises(UserError, match=r"found dogImages\.7z, dogImages\.tar\.gzip: an archive format not unpacked"):
        data.load_splits(data.find_splits({"training": tmp_path / "training"}))


def test_a_class_subfolder_the_job_may_not_read_fails_naming_it(dog_images, monkeypatch):
    """os.walk skipped a folder it could not list: its images were dropped without a word."""
    denied = nest(dog_images / "train" / "001.Affenpinscher", "DCIM")[0].parent
    scandir = os.scandir

    def scandir_as_another_user(path):
        if str(path) == str(denied):
            raise PermissionError(13, "Permission denied", str(path))
        return scandir(path)

    monkeypatch.setattr(os, "scandir", scandir_as_another_user)
    with pytest.raises(UserError, match=rf"cannot read {denied}: permission denied \(EACCES\); make it readable"):
        load(dog_images)


def warnings(caplog) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.levelname == "WARNING"]
