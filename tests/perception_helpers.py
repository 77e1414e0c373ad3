"""Test helpers for the characters area: tiny ONNX models that the REAL insightface FaceAnalysis and
rembg code load, fake perception components, and photo variants made from the example photo.

The ONNX models are built with the ``onnx`` helper API. Their outputs are meaningless but shaped
like the real ones, so insightface routes them by their shapes (NOTES-packages.md):
- ``det_tiny.onnx``: SCRFD-like detector, static 128x128 input, 9 outputs (3 strides x scores,
  boxes, keypoints). A face is "detected" on each 32x32 input cell whose mean colour is bright;
  its box is 96x96 input pixels, centred on the cell.
- ``w_tiny.onnx``: ArcFace-like recognizer, 112x112 -> (1, 512), a fixed random projection.
- ``genderage_tiny.onnx``: 96x96 -> (1, 3): always gender 0 ("woman"), age 30.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
PHOTO = ROOT / "examples" / "photos" / "astronaut.png"
OPSET = 13

# ArcFace template as fractions of a face box (for keypoints placed inside a box).
KPS_TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float32,
) / 112.0


def _save(model, path: Path) -> Path:
    import onnx

    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def _model(graph):
    from onnx import helper

    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="storymaker-tests")
    model.ir_version = 8
    return model


def build_tiny_scrfd(path: Path, size: int = 128) -> Path:
    """SCRFD-like detector with 9 outputs (strides 8/16/32, 2 anchors, keypoints)."""
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits, outputs = [], [], []
    score_names, box_names, kps_names = [], [], []
    box = np.array([1.0, 1.0, 2.0, 2.0], dtype=np.float32)  # l, t, r, b in stride units: 3 strides wide
    kps = (-1.0 + 3.0 * KPS_TEMPLATE).reshape(-1)  # 5 (x, y) offsets from the anchor, stride units
    for stride in (8, 16, 32):
        cells = (size // stride) ** 2 * 2
        pooled = f"pool{stride}"
        nodes.append(helper.make_node("AveragePool", ["input.1"], [pooled], name=f"avgpool_{stride}",
                                      kernel_shape=[stride, stride], strides=[stride, stride]))
        bright = stride == 32
        heads = {
            "score": (np.full((2, 3, 1, 1), 4.0 if bright else 0.0, np.float32),
                      np.full((2,), -6.0 if bright else -10.0, np.float32), 1, True),
            "bbox": (np.zeros((8, 3, 1, 1), np.float32), np.tile(box, 2), 4, False),
            "kps": (np.zeros((20, 3, 1, 1), np.float32), np.tile(kps, 2).astype(np.float32), 10, False),
        }
        for head, (weight, bias, width, sigmoid) in heads.items():
            wname, bname = f"{head}{stride}_w", f"{head}{stride}_b"
            inits += [numpy_helper.from_array(weight, wname), numpy_helper.from_array(bias, bname)]
            conv = f"{head}{stride}_conv"
            nodes.append(helper.make_node("Conv", [pooled, wname, bname], [conv], name=f"conv_{head}{stride}"))
            last = conv
            if sigmoid:
                nodes.append(helper.make_node("Sigmoid", [conv], [f"{head}{stride}_sig"], name=f"sigmoid_{stride}"))
                last = f"{head}{stride}_sig"
            nodes.append(helper.make_node("Transpose", [last], [f"{head}{stride}_t"], name=f"tr_{head}{stride}", perm=[0, 2, 3, 1]))
            shape_name = f"{head}{stride}_shape"
            inits.append(numpy_helper.from_array(np.array([-1, width], np.int64), shape_name))
            out = f"{head}_{stride}"
            nodes.append(helper.make_node("Reshape", [f"{head}{stride}_t", shape_name], [out], name=f"reshape_{head}{stride}"))
            {"score": score_names, "bbox": box_names, "kps": kps_names}[head].append(
                helper.make_tensor_value_info(out, TensorProto.FLOAT, [cells, width])
            )
    outputs = score_names + box_names + kps_names
    graph = helper.make_graph(
        nodes, "tiny_scrfd",
        [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, size, size])],
        outputs, inits,
    )
    return _save(_model(graph), path)


def build_tiny_arcface(path: Path, seed: int = 0) -> Path:
    """ArcFace-like recognizer: 112x112 -> (1, 512) (pool, flatten, fixed random projection)."""
    from onnx import TensorProto, helper, numpy_helper

    weight = np.random.default_rng(seed).standard_normal((3 * 7 * 7, 512)).astype(np.float32)
    nodes = [
        helper.make_node("AveragePool", ["data"], ["pooled"], name="pool0", kernel_shape=[16, 16], strides=[16, 16]),
        helper.make_node("Flatten", ["pooled"], ["flat"], name="flatten0"),
        helper.make_node("MatMul", ["flat", "fc_w"], ["fc1"], name="fc0"),
    ]
    graph = helper.make_graph(
        nodes, "tiny_arcface",
        [helper.make_tensor_value_info("data", TensorProto.FLOAT, [1, 3, 112, 112])],
        [helper.make_tensor_value_info("fc1", TensorProto.FLOAT, [1, 512])],
        [numpy_helper.from_array(weight, "fc_w")],
    )
    return _save(_model(graph), path)


def build_tiny_genderage(path: Path) -> Path:
    """Gender/age head: 96x96 -> (1, 3) = [1, 0, 0.3]: gender 0 ("woman"), age 30."""
    from onnx import TensorProto, helper, numpy_helper

    nodes = [
        helper.make_node("GlobalAveragePool", ["data"], ["pooled"], name="gap0"),
        helper.make_node("Flatten", ["pooled"], ["flat"], name="flatten0"),
        helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["fc1"], name="fc0"),
    ]
    graph = helper.make_graph(
        nodes, "tiny_genderage",
        [helper.make_tensor_value_info("data", TensorProto.FLOAT, [1, 3, 96, 96])],
        [helper.make_tensor_value_info("fc1", TensorProto.FLOAT, [1, 3])],
        [numpy_helper.from_array(np.zeros((3, 3), np.float32), "fc_w"),
         numpy_helper.from_array(np.array([1.0, 0.0, 0.3], np.float32), "fc_b")],
    )
    return _save(_model(graph), path)


def build_tiny_face_pack(folder: Path, *, genderage: bool = True) -> Path:
    """A folder insightface's FaceAnalysis loads as a model pack (detector + recognizer [+ gender/age])."""
    build_tiny_scrfd(folder / "det_tiny.onnx")
    build_tiny_arcface(folder / "w_tiny.onnx")
    if genderage:
        build_tiny_genderage(folder / "genderage_tiny.onnx")
    return folder


def build_tiny_u2net(path: Path) -> Path:
    """U2Net-shaped segmenter: (1, 3, 320, 320) -> (1, 1, 320, 320) = sigmoid(sum of channels)."""
    from onnx import TensorProto, helper, numpy_helper

    nodes = [
        helper.make_node("Conv", ["input.1", "w", "b"], ["logits"], name="conv0"),
        helper.make_node("Sigmoid", ["logits"], ["d0"], name="sigmoid0"),
    ]
    graph = helper.make_graph(
        nodes, "tiny_u2net",
        [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, 320, 320])],
        [helper.make_tensor_value_info("d0", TensorProto.FLOAT, [1, 1, 320, 320])],
        [numpy_helper.from_array(np.ones((1, 3, 1, 1), np.float32), "w"),
         numpy_helper.from_array(np.zeros((1,), np.float32), "b")],
    )
    return _save(_model(graph), path)


def bright_square_photo(size: int = 256, cells: tuple[tuple[int, int], ...] = ((1, 1),)) -> Image.Image:
    """A dark photo with bright 32x32-input-cell squares (what the tiny detector calls faces),
    for a photo of ``size`` scaled to the detector's 128x128 input."""
    scale = size // 4
    array = np.full((size, size, 3), 20, np.uint8)
    for row, col in cells:
        array[row * scale:(row + 1) * scale, col * scale:(col + 1) * scale] = 235
    return Image.fromarray(array, "RGB")


# ---------------------------------------------------------------------------------------------
# Fakes with the perception Protocols (deterministic, controllable)


@dataclass
class FakeFace:
    """A FaceAnalyzer returning fixed boxes (largest first); records each call."""

    boxes: tuple[tuple[float, float, float, float], ...] = ((180.0, 60.0, 280.0, 170.0),)
    gender: str | None = None
    name: str = "fake-face"
    calls: int = 0

    def analyze(self, rgb: np.ndarray):
        from storymaker.perception.base import DetectedFace

        assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3
        self.calls += 1
        faces = []
        for i, (x1, y1, x2, y2) in enumerate(self.boxes):
            kps = KPS_TEMPLATE * np.array([x2 - x1, y2 - y1], np.float32) + np.array([x1, y1], np.float32)
            emb = np.zeros(512, np.float32)
            emb[i] = 1.0
            faces.append(DetectedFace(bbox=(x1, y1, x2, y2), kps=kps, embedding=emb, det_score=0.9, gender=self.gender))
        return faces


@dataclass
class FakeSegmenter:
    """A Segmenter returning a white rectangle (relative box) on black; records each call."""

    box: tuple[float, float, float, float] = (0.25, 0.1, 0.75, 0.9)
    name: str = "fake-seg"
    calls: int = 0

    def segment(self, image: Image.Image) -> Image.Image:
        self.calls += 1
        w, h = image.size
        mask = Image.new("L", image.size, 0)
        x1, y1, x2, y2 = self.box
        mask.paste(255, (round(x1 * w), round(y1 * h), round(x2 * w), round(y2 * h)))
        return mask


def tree_snapshot(folder: Path) -> list[str]:
    """Every path under ``folder`` (relative), to assert that nothing was written."""
    if not folder.exists():
        return []
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))
