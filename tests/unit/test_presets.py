"""presets: the eval and train transforms, decode_rgb's handling of every pixel mode, decode_pixels' JPEG path,
and the saved config."""

import base64
import io
import json

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps
from torchvision.transforms import v2 as T

from dogbreed.data import decode_file
from dogbreed.presets import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ClassificationPresetEval,
    ClassificationPresetTrain,
    PreprocessConfig,
    decode_footprint,
    decode_pixels,
    decode_rgb,
    decoded_size,
)
from local_test.make_sample_data import make_image

CONFIG = PreprocessConfig(image_size=32)


def photo(size: tuple[int, int] = (120, 90)) -> Image.Image:
    return make_image(1, np.random.default_rng(0), size)


@pytest.mark.parametrize("size", [(120, 90), (90, 120), (20, 20)])
def test_eval_transform_gives_a_normalised_float_square(size):
    out = ClassificationPresetEval(config=CONFIG)(photo(size))
    assert out.shape == (3, 32, 32) and out.dtype == torch.float32
    torch.testing.assert_close(out, ClassificationPresetEval(config=CONFIG)(photo(size)))  # deterministic


@pytest.mark.parametrize("size", [(120, 90), (90, 120), (37, 37), (20, 20)])
def test_eval_transform_computes_torchvisions_resize_crop_scale_normalise(size):
    """The hand-written transform (direct calls, one normalising pass) against torchvision's own composition."""
    reference = T.Compose(
        [T.PILToTensor(), T.Resize(CONFIG.resize_size, antialias=True), T.CenterCrop(CONFIG.image_size),
         T.ToDtype(torch.float32, scale=True), T.Normalize(CONFIG.mean, CONFIG.std)]
    )  # fmt: skip
    image = photo(size)
    out = ClassificationPresetEval(config=CONFIG)
    torch.testing.assert_close(out(image), reference(image), atol=1e-5, rtol=0)
    pixels = torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)
    torch.testing.assert_close(out(pixels), reference(image), atol=1e-5, rtol=0)  # uint8 pixels, as served
    torch.testing.assert_close(out(pixels.contiguous()), reference(image), atol=1e-5, rtol=0)  # any memory layout


def test_eval_transform_scales_to_unit_range_then_normalises_per_channel():
    rgb = (200, 100, 30)
    out = ClassificationPresetEval(config=CONFIG)(Image.new("RGB", (64, 48), rgb))
    expected = [(value / 255 - mean) / std for value, mean, std in zip(rgb, IMAGENET_MEAN, IMAGENET_STD, strict=True)]
    torch.testing.assert_close(out, torch.tensor(expected).view(3, 1, 1).expand(3, 32, 32), atol=1e-5, rtol=0)


def test_eval_transform_centre_crops_the_resized_short_side():
    # A 2:1 image, blue in the middle half and red at both ends: after resizing the short side to 37 (32 * 256 / 224)
    # the 74-pixel-wide image keeps only its middle 32 columns, all blue.
    pixels = np.zeros((50, 100, 3), np.uint8)
    pixels[:, :, 0] = 255
    pixels[:, 25:75] = (0, 0, 255)
    out = ClassificationPresetEval(config=CONFIG)(Image.fromarray(pixels))
    blue = ClassificationPresetEval(config=CONFIG)(Image.new("RGB", (100, 50), (0, 0, 255)))
    torch.testing.assert_close(out, blue, atol=1e-5, rtol=0)


def test_train_transform_is_random_but_always_the_same_shape():
    torch.manual_seed(0)
    augment = ClassificationPresetTrain(config=CONFIG, augment=True)
    outs = [augment(photo(size)) for size in [(120, 90), (90, 120), (40, 40), (20, 20)]]
    assert all(out.shape == (3, 32, 32) and out.dtype == torch.float32 for out in outs)
    image = photo()
    first, *others = (augment(image) for _ in range(3))
    assert any(not torch.equal(first, other) for other in others)  # the same photo, a new crop and flip


def test_train_transform_without_augmentation_is_the_eval_transform():
    image = photo()
    plain = ClassificationPresetTrain(config=CONFIG, augment=False)(image)
    torch.testing.assert_close(plain, ClassificationPresetEval(config=CONFIG)(image), atol=0, rtol=0)


def test_decode_rgb_drops_alpha_and_expands_palette_and_gray():
    rgba = Image.new("RGBA", (4, 3), (10, 20, 30, 0))
    palette = Image.new("P", (4, 3), 1)
    palette.putpalette([0, 0, 0, 200, 0, 50])  # index 1 is (200, 0, 50)
    gray = Image.new("L", (4, 3), 77)
    for image, expected in ((rgba, (10, 20, 30)), (palette, (200, 0, 50)), (gray, (77, 77, 77))):
        decoded = decode_rgb(image)
        assert decoded.mode == "RGB" and decoded.size == (4, 3)
        assert decoded.getpixel((3, 2)) == expected


def test_decode_rgb_scales_sixteen_bit_gray_to_eight_bits():
    levels = np.array([[0, 257, 25700, 65535]], dtype=np.uint16)
    image = Image.fromarray(levels)
    assert image.mode == "I;16"
    decoded = np.asarray(decode_rgb(image))
    assert decoded.dtype == np.uint8 and decoded.shape == (1, 4, 3)
    assert decoded[0, :, 0].tolist() == [0, 1, 100, 255]
    assert (decoded == decoded[:, :, :1]).all()  # gray stays gray


@pytest.mark.parametrize("maxval", [65535, 1023])
def test_decode_rgb_scales_a_sixteen_bit_pgm_by_its_maxval(maxval):
    """Pillow reads a PGM of more than 8 bits as mode I (as 32-bit TIFFs, which are refused), rescaled to 0..65535."""
    levels = np.array([[0, maxval // 2, maxval]], dtype=">u2")
    image = Image.open(io.BytesIO(b"P5 3 1 %d\n" % maxval + levels.tobytes()))
    assert image.mode == "I"
    assert np.asarray(decode_rgb(image))[0, :, 0].tolist() == [0, 127, 255]


@pytest.mark.parametrize(("mode", "kind"), [("I", "32-bit integer"), ("F", "floating-point")])
def test_decode_rgb_refuses_pixels_without_a_brightness_range(mode, kind):
    with pytest.raises(ValueError, match=f"{kind} pixels \\(mode {mode}\\)"):
        decode_rgb(Image.new(mode, (4, 3), 1000))


def test_a_signed_sixteen_bit_tiff_is_refused_as_what_it_is():
    """Pillow reads signed 16-bit grayscale as mode I, as it does 32-bit integers: the message names the file's."""
    buffer = io.BytesIO()
    Image.new("I;16", (4, 3)).save(buffer, "TIFF", tiffinfo={339: 2})  # SampleFormat 2: signed
    image = Image.open(buffer)
    assert image.mode == "I"
    with pytest.raises(ValueError, match=r"^signed 16-bit integer pixels \(mode I\) have no defined brightness range"):
        decode_rgb(image)


def test_preprocess_config_derives_the_resize_and_round_trips_through_json():
    assert PreprocessConfig().resize_size == 256
    assert CONFIG.resize_size == 37  # round(32 * 256 / 224)
    custom = PreprocessConfig(image_size=64, resize_size=80, mean=[0.5, 0.5, 0.5], std=(1, 1, 1))
    for config in (PreprocessConfig(), CONFIG, custom):
        saved = json.loads(json.dumps(config.to_dict()))
        assert PreprocessConfig.from_dict(saved) == config
    assert custom.mean == (0.5, 0.5, 0.5) and custom.std == (1.0, 1.0, 1.0)
    assert PreprocessConfig.from_dict({"image_size": 64, "unknown": 1}) == PreprocessConfig(image_size=64)


def jpeg_file(image: Image.Image, **options) -> tuple[Image.Image, bytes]:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", **options)
    return Image.open(io.BytesIO(buffer.getvalue())), buffer.getvalue()


@pytest.mark.parametrize(
    ("mode", "options"),
    [("RGB", {"quality": 90}), ("RGB", {"quality": 75, "subsampling": 0}), ("RGB", {"progressive": True}),
     ("L", {"quality": 85}), ("CMYK", {"quality": 90})],
)  # fmt: skip
def test_decode_pixels_gives_pillows_jpeg_pixels_bit_for_bit(mode, options):
    """Serving decodes JPEGs with torchvision and training with Pillow: the pixels must be the same."""
    image, data = jpeg_file(photo((200, 150)).convert(mode), **options)
    pixels = decode_pixels(image, data, config=PreprocessConfig())
    expected = torch.from_numpy(np.asarray(decode_rgb(Image.open(io.BytesIO(data)))).copy()).permute(2, 0, 1)
    assert pixels.dtype == torch.uint8 and torch.equal(pixels, expected)


def test_decode_pixels_drafts_a_large_jpeg_as_pillow_does():
    image, data = jpeg_file(photo((1200, 900)))
    pixels = decode_pixels(image, data, config=PreprocessConfig())
    assert tuple(pixels.shape) == (3, 450, 600)  # libjpeg's 1/2 scale: the short side still covers 256
    assert tuple(decode_pixels(Image.open(io.BytesIO(data)), data).shape) == (3, 900, 1200)  # no config: full size


def test_decode_pixels_refuses_a_truncated_jpeg_with_pillows_error():
    _, data = jpeg_file(photo((200, 150)))
    cut = data[: len(data) // 2]
    with pytest.raises(OSError, match="truncated"):
        decode_pixels(Image.open(io.BytesIO(cut)), cut, config=PreprocessConfig())


@pytest.mark.parametrize("size", [(4000, 3000), (3000, 4000), (1200, 900), (1100, 530), (600, 450), (2050, 513)])
def test_decoded_size_is_the_size_decode_pixels_decodes_at(size):
    """The serving decode budget counts decoded_size's pixels: it must be the decode's real size, drafted or not."""
    image, data = jpeg_file(Image.new("RGB", size, (90, 120, 30)))
    expected = decoded_size(image, data, config=PreprocessConfig())
    pixels = decode_pixels(image, data, config=PreprocessConfig())
    assert (pixels.shape[2], pixels.shape[1]) == expected
    assert decoded_size(Image.open(io.BytesIO(data)), data) == size  # no config: no draft


def jpeg2000(size: tuple[int, int], **options) -> tuple[Image.Image, bytes]:
    buffer = io.BytesIO()
    Image.new("RGB", size, (90, 120, 30)).save(buffer, "JPEG2000", **options)
    return Image.open(io.BytesIO(buffer.getvalue())), buffer.getvalue()


@pytest.mark.parametrize(
    ("size", "options", "decoded"),
    [
        ((512, 384), {}, (128, 96)),  # 384 // 64 = 6: two halvings, of the 5 levels openjpeg writes by default
        ((501, 377), {}, (251, 189)),  # 501 / 4 rounds otherwise in Pillow and openjpeg: halved once
        ((512, 384), {"num_resolutions": 2}, (256, 192)),  # one level: halved once
        ((512, 384), {"num_resolutions": 1}, (512, 384)),  # none: decoded whole
        ((100, 75), {}, (100, 75)),  # already small
    ],
)
def test_a_jpeg2000_is_decoded_at_the_resolution_its_resize_needs(size, options, decoded):
    """JPEG 2000's analogue of JPEG's draft mode (Pillow's reduce): halved while the short side covers the resize,
    as far as its resolution levels go; decoded_size, which the decode budget counts, is the decode's real size."""
    config = PreprocessConfig(image_size=56)  # resize_size 64
    image, data = jpeg2000(size, **options)
    assert decoded_size(image, data, config=config) == decoded
    pixels = decode_pixels(image, data, config=config)
    assert (pixels.shape[2], pixels.shape[1]) == decoded
    assert decoded_size(*jpeg2000(size, **options), config=None) == size  # training: no config, no reduction


def test_a_jpeg_of_several_scans_counts_its_full_size_twice_in_the_decode_budget():
    """libjpeg buffers a progressive JPEG's coefficients for the whole image (2 bytes per sample) even when drafting to
    an eighth: the budget counted the drafted 500 x 375, and 16 such 40 MP requests at once took 4.5 GB."""
    image, data = jpeg_file(photo((4000, 3000)), quality=80)
    assert decode_footprint(image, data, config=PreprocessConfig()) == 500 * 375  # baseline, one scan: drafted
    image, data = jpeg_file(photo((4000, 3000)), quality=80, progressive=True)
    assert decode_footprint(image, data, config=PreprocessConfig()) == 2 * 4000 * 3000


# A 240 x 180 gradient, arithmetic-coded: `cjpeg -arithmetic -quality 50` (libjpeg-turbo-progs) of a PPM with
# pixel (x, y) = (x, y, (x + y) // 2). Pillow cannot write arithmetic coding.
ARITHMETIC_JPEG = base64.b64decode(
    "/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDABALDA4MChAODQ4SERATGCgaGBYWGDEjJR0oOjM9PDkzODdASFxOQERXRTc4UG1RV19i"
    "Z2hnPk1xeXBkeFxlZ2P/2wBDARESEhgVGC8aGi9jQjhCY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2Nj"
    "Y2NjY2NjY2P/yQARCAC0APADASIAAhEBAxEB/8wACgAQEAUBEBEF/9oADAMBAAIRAxEAPwD/AJGUeJ/RwI62jZJiVqK37QFgsBHA"
    "IIH2K10t7XqL4rG4zZEiHYB4YToa7NJ3tocNMF6V2xlPwRlLVvBF5NnoB9wsZNz4r/7jo6q/y7VJxXfRNBsSF/Vru2dhv53eZwX/"
    "AAkjMW5qBUtp8cnUUnSpQZKti1kPEa26R1IrEt8zitfcpcyA1RsIWsHRbRKNTHFrC5FqwBrfD/kxsbTG6geFnJLjcaiVyqVdkola"
    "ZHnH5UXFFBxnjJ5Uqlisb2DOQd4iuNboSgaeFtlGrjlTqQStYF2saFqJF+cG819RBPrZt3yE/wDGdLs/GGr7gBpoMcH/APLb5SKu"
    "WzNbEsTIzWeXoSsxq19r7ZVwX2Vf+mg2XMnMhEjKLS1j5cTTe4/IVtJQtSd+mGuv+rb/AB2m/NIoAIa3WAhMYmp9cjoG2t8xHher"
    "68KREADIQAdyyvXscP3IiYkuqFrRNdxSTGDj+cOJfhTtkaIwlK5NgrK+xxRiEXB3hMFR/wA4gWZKelaD/PDGZj5Dw9uYxTcwq5te"
    "AmWgYIRxamtYgmOUtSMFKkdgNar+aUISLUttOYPoUQH0RXJkjKF8PEaMfPrKdXNLXa8j49AXSwieSecq29sLgtAULwzoqMs7hvGF"
    "QxFArnfqTk/r8K37B2sZYYh/XNhhRzENBTRxstmFejCCsqWdUX7+4BCz0SBttsdkQpzh8sGGGxCI24d5Q0fCOISH8dXNlSHAEvVh"
    "Ctr0YV8+oQyI3nj9/iZ1DrNJsCFKTEIQRclYy4B1mT//AP8A9oL7oUYE8sj9KxRycUVVv/y9T93m39My+GNQvaFQHsWRZQ7JURBg"
    "ERMkSQ8D+5KqFzdSc59v/n9UZYbWs0IWaWD/2Q=="
)


def test_an_arithmetic_coded_jpeg_is_decoded_by_torchvision_drafted_or_not():
    """Pillow feeds libjpeg-turbo a file in pieces, and its arithmetic decoding cannot resume after one: a valid
    arithmetic-coded photo over ~64 KB failed "broken data stream" whenever it was drafted. torchvision decodes from
    the whole file: it decodes such a JPEG whole, drafted or not, and the decode budget counts it whole."""
    image = Image.open(io.BytesIO(ARITHMETIC_JPEG))
    pixels = decode_pixels(image, ARITHMETIC_JPEG, config=CONFIG)  # CONFIG's resize would draft a Huffman JPEG
    y, x = np.mgrid[0:180, 0:240]
    source = torch.from_numpy(np.stack([x, y, (x + y) // 2]).astype(np.float32))
    assert tuple(pixels.shape) == (3, 180, 240) and (pixels.float() - source).abs().mean() < 4
    assert decode_footprint(image, ARITHMETIC_JPEG, config=CONFIG) == 240 * 180


# A 80 x 60 CMYK gradient (Adobe marker), arithmetic-coded: `jpegtran -arithmetic` of one Pillow wrote.
ARITHMETIC_CMYK_JPEG = base64.b64decode(
    "/9j/7gAOQWRvYmUAZAAAAAAA/9sAQwAQCwwODAoQDg0OEhEQExgoGhgWFhgxIyUdKDozPTw5Mzg3QEhcTkBEV0U3OFBtUVdfYmdo"
    "Zz5NcXlwZHhcZWdj/8kAFAgAPABQBEMRAE0RAFkRAEsRAP/MAAYAEBAF/9oADgRDAE0AWQBLAAA/AP8Amqoc53B/B/wQ4YMRL/nx"
    "gFuNs/wACmKi3ZkD27hX0eZjJoch4d8wJh6M+s4z9wrwJlFy1bJc7ziPioXCAqrJVZYRJj6RMCUbM6j/AOPZwbdvETbuHUu2nltc"
    "6tBte2wAn4fUy1/cURHSe6GpsKrO6pHOriGbPgFIYrcm7I2pkiwL+OggFFriqhOIZj9HEYE/RxGBP4hT6eM6zf8AvXYuGFqLMZnR"
    "4ymhVHrZoXL/ADmhdAXhoXSEEaF0wNmhdN45oXUvSZvJUXSixPO5OhUkY12fDyrXZ8SRldnw3aLs+G7Rdnw3aLs+G7Rdnw3aLs/O"
    "C/bTOK8cjAe/r0kCVWzMu2q2Zl21WzMu2q2Zl21WzMu2q2Zl21WzMu2q2Z3YL68NfIEzdW7iZtACzx35pWp+px3lg6ViuWDpoO5Y"
    "OoEXlg6ke+WDqfW7Ckqb5Oc/opjJRhT+rbtUl+y17tuVbPoxqBGJTNIdDbqQZqbAU0E1AgQ/NTTCcDbMZn0JuSK/MI4HhezPM6ho"
    "FvfVwy3xEbi0I0gR9wljkQ/YsSPR7XhzEVTg65TI7vm7Z+CXjO66vXEVMmbjYODvOwTPouks/9k="
)


def over_64_kb(jpeg: bytes) -> bytes:
    """The JPEG with a comment segment in front of its scan, so that the scan's data straddles byte 65536, where
    Pillow hands libjpeg its second piece of the file."""
    pad = 65536 - jpeg.index(b"\xff\xda") - 100
    return jpeg[:2] + b"\xff\xfe" + (pad + 2).to_bytes(2, "big") + bytes(pad) + jpeg[2:]


@pytest.mark.parametrize("small", [ARITHMETIC_JPEG, ARITHMETIC_CMYK_JPEG], ids=["RGB", "CMYK"])
def test_an_arithmetic_coded_jpeg_over_64_kb_is_decoded_in_training_and_serving(small, tmp_path):
    """Pillow decodes the small file (one piece) but not the same picture over 64 KB ("broken data stream")."""
    large = over_64_kb(small)
    with pytest.raises(OSError, match="broken data stream"):
        Image.open(io.BytesIO(large)).load()
    expected = torch.from_numpy(np.asarray(decode_rgb(Image.open(io.BytesIO(small)))).copy()).permute(2, 0, 1)
    served = decode_pixels(Image.open(io.BytesIO(large)), large, config=CONFIG)
    (tmp_path / "photo.jpg").write_bytes(large)
    trained = torch.from_numpy(np.asarray(decode_file(tmp_path / "photo.jpg")).copy()).permute(2, 0, 1)
    assert torch.equal(served, expected) and torch.equal(trained, expected)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_alike_by_both_decoders(orientation):
    """A phone photo stored sideways (EXIF Orientation) is upright in training and serving, as viewers show it."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    image, data = jpeg_file(photo((200, 150)), quality=90, exif=exif.tobytes())
    served = decode_pixels(image, data, config=PreprocessConfig())
    trained = torch.from_numpy(np.asarray(decode_rgb(Image.open(io.BytesIO(data)))).copy()).permute(2, 0, 1)
    upright = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))))
    assert torch.equal(served, trained) and torch.equal(trained, torch.from_numpy(upright.copy()).permute(2, 0, 1))
    assert tuple(served.shape[1:]) == ((200, 150) if orientation >= 5 else (150, 200))  # 5-8 turn it portrait


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize(("fmt", "options"), [("PNG", {}), ("TIFF", {}), ("WEBP", {"lossless": True})])
def test_exif_orientation_is_applied_once_in_every_lossless_format(fmt, options, orientation):
    """Upright exactly once, whoever applies the tag: Pillow's TIFF loader turns the pixels itself (and drops the
    tag), PNG's and WebP's leave it to us. The reference: ImageOps.exif_transpose of the same pixels as PNG."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    stored = photo((200, 150))
    files = {}
    for kind, kind_options in (("PNG", {}), (fmt, options)):
        buffer = io.BytesIO()
        stored.save(buffer, kind, exif=exif.tobytes(), **kind_options)
        files[kind] = buffer.getvalue()
    upright = ImageOps.exif_transpose(Image.open(io.BytesIO(files["PNG"])))
    decoded = decode_rgb(Image.open(io.BytesIO(files[fmt])))
    assert decoded.size == ((150, 200) if orientation >= 5 else (200, 150))  # 5-8 turn it portrait
    assert np.array_equal(np.asarray(decoded), np.asarray(upright.convert("RGB")))


def test_a_cameras_mpo_is_drafted_and_decoded_like_a_jpeg():
    """MPO (a JPEG with more pictures appended, as cameras write): its first picture, drafted like any JPEG."""
    buffer = io.BytesIO()
    photo((1200, 900)).save(buffer, "MPO", save_all=True, append_images=[photo((1200, 900)).rotate(90)])
    data = buffer.getvalue()
    image = Image.open(io.BytesIO(data))
    assert image.format == "MPO"
    assert decoded_size(image, data, config=PreprocessConfig()) == (600, 450)
    assert tuple(decode_pixels(image, data, config=PreprocessConfig()).shape) == (3, 450, 600)
    full = decode_pixels(Image.open(io.BytesIO(data)), data)
    first = torch.from_numpy(np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).copy()).permute(2, 0, 1)
    assert torch.equal(full, first)
