"""One way to read an image (``pe_dense.data.images.read_rgb``), the frameworks' way, for every tool: a phone-style
JPEG with an EXIF orientation tag, grayscale, RGBA and palette PNGs read as OpenCV (mmcv's LoadImageFromFile) and
Detectron2's read_image read them; a 16-bit grayscale PNG, which they read differently, refused with a clear
error."""
import cv2
import numpy as np
import pytest
from PIL import Image

from pe_dense.data.images import load_image, oriented_size, read_rgb
from pe_dense.errors import PEDenseError


def phone_jpeg(path, orientation=6):
    """Stored 320 wide x 200 high, a red band on the stored left; tag 6: shown rotated 90 degrees clockwise, the
    band on top, 200 wide x 320 high."""
    a = np.full((200, 320, 3), 200, np.uint8)
    a[:, :60] = (230, 20, 20)
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(a).save(path, quality=95, exif=exif)
    return str(path)


def test_exif_orientation_is_applied_as_the_frameworks_apply_it(tmp_path):
    path = phone_jpeg(tmp_path / "phone.jpg")
    img = read_rgb(path)
    assert img.shape == (320, 200, 3) and oriented_size(path) == (320, 200)
    assert img[:50, 100, 0] .min() > 180 and img[:50, 100, 1].max() < 80  # the band is on top
    assert np.array_equal(img, cv2.cvtColor(cv2.imread(path), cv2.COLOR_BGR2RGB))  # mmcv's reader: OpenCV
    assert np.asarray(load_image(path)).shape == (320, 200, 3)
    d2 = pytest.importorskip("detectron2.data.detection_utils")
    ref = d2.read_image(path, format="RGB")  # Detectron2's (PIL, EXIF applied); another JPEG decoder
    assert ref.shape == img.shape and np.abs(ref.astype(int) - img).max() <= 3


def test_features_of_a_tagged_photo_have_the_oriented_size(tmp_path):
    from safetensors import safe_open

    from pe_dense.cli import main as cli

    path = phone_jpeg(tmp_path / "phone.jpg")
    cli(["features", path, "--save", str(tmp_path / "f"), "--size", "native", "--device", "cpu"])
    with safe_open(str(tmp_path / "f" / "phone.safetensors"), "pt") as f:
        meta = f.metadata()
        shape = tuple(f.get_tensor(f.keys().__iter__().__next__()).shape)
    assert meta["input_size"] == "320x200" and shape[-2:] == (20, 13), (meta, shape)  # 320 high: 20 rows of 16 px


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "LA"])
def test_grayscale_alpha_and_palette_read_as_opencv_and_detectron2(tmp_path, mode):
    rng = np.random.default_rng(0)
    rgba = rng.integers(0, 256, (24, 32, 4), dtype=np.uint8)
    img = Image.fromarray(rgba, "RGBA")
    img = img.convert(mode) if mode != "P" else img.convert("RGB").quantize(16)
    path = str(tmp_path / f"{mode}.png")
    img.save(path)
    got = read_rgb(path)
    assert got.shape == (24, 32, 3) and got.dtype == np.uint8
    assert np.array_equal(got, cv2.cvtColor(cv2.imread(path, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB))
    d2 = pytest.importorskip("detectron2.data.detection_utils")
    assert np.array_equal(got, d2.read_image(path, format="RGB"))  # alpha dropped, not blended, in both


def test_sixteen_bit_images_read_as_both_frameworks_or_refused(tmp_path):
    """16-bit RGB: both frameworks keep the high byte (read so); 16-bit grayscale: PIL (Detectron2) clips at 255,
    OpenCV (mmcv) divides by 256: refused, naming why."""
    path = str(tmp_path / "deep.png")
    cv2.imwrite(path, (np.arange(24 * 32 * 3, dtype=np.uint16).reshape(24, 32, 3) * 40))
    got = read_rgb(path)
    assert np.array_equal(got, cv2.cvtColor(cv2.imread(path, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB))
    d2 = pytest.importorskip("detectron2.data.detection_utils")
    assert np.array_equal(got, d2.read_image(path, format="RGB"))
    gray16 = str(tmp_path / "gray16.png")
    cv2.imwrite(gray16, np.full((8, 8), 4000, np.uint16))
    with pytest.raises(PEDenseError, match=r"I;16 image \(more than 8 bits per channel\).*convert it to 8-bit"):
        load_image(gray16)
    with pytest.raises(FileNotFoundError, match="Image not found"):
        read_rgb(str(tmp_path / "none.png"))
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(PEDenseError, match="cannot read this image"):
        read_rgb(str(tmp_path / "text.png"))
