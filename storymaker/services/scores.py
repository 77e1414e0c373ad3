"""Consistency scores of a rendered panel: does each character still look like its registration?

For one render and the panel's characters (the measures of the StoryMaker paper):

- **face similarity** per character: the render's faces are detected with the face analyser that
  registered the characters, matched to the characters (by the pose slots' left-to-right positions
  when the panel has a pose, else by the best total similarity: an optimal assignment, not a greedy
  pick), and scored as the cosine of the identity embeddings. A character without a matched face
  scores 0 and says so.
- **CLIP-I** per character: cosine of the projected CLIP image embeddings of the character's
  registered body crop and the render's region around that character (the whole image for a
  one-character panel).
- **CLIP-T**: cosine of the CLIP text embedding of the panel's prompt as the model saw it (``[Name]``
  replaced) and the render's image embedding, with the text tower of the same CLIP model.
- **off-model**: a character whose face similarity is below ``Settings.off_model_threshold``.

Every :class:`PanelScores` names the models that made it; scores made with stand-in or tiny models
say so (``stand_in``). The draft backend's sketches get no scores. Storage: a version's metadata
holds ``scores`` (``PanelScores.to_dict()``), in its JSON and its PNG text chunk.
"""

from __future__ import annotations

import itertools
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence, TypeVar

import numpy as np
from PIL import Image

from ..errors import CharacterError, PoseError, StoryMakerError

if TYPE_CHECKING:
    from ..config import Settings
    from ..perception.base import DetectedFace

logger = logging.getLogger(__name__)

SCORES_FORMAT = 1
#: At most this many detected faces (the largest) take part in matching.
MAX_FACES = 8
STAND_IN_NOTE = "made with stand-in models: the figures are meaningless"
_NOT_REAL = "not a real"  # every stand-in component's name says "(not a real ...)"
T = TypeVar("T")


# ----------------------------------------------------------------------------------------------
# Data


@dataclass(frozen=True)
class CharacterScore:
    """One character's scores in one render. ``region`` is the (x1, y1, x2, y2) pixel box taken as
    that character (its crop for CLIP-I and the character sheet)."""

    name: str
    face_similarity: float
    face_found: bool
    clip_i: float | None
    off_model: bool
    region: tuple[int, int, int, int]
    face_box: tuple[float, float, float, float] | None = None
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "face_similarity": round(float(self.face_similarity), 4),
            "face_found": self.face_found,
            "clip_i": None if self.clip_i is None else round(float(self.clip_i), 4),
            "off_model": self.off_model,
            "region": [int(v) for v in self.region],
            "face_box": None if self.face_box is None else [round(float(v), 1) for v in self.face_box],
            "note": self.note,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "CharacterScore":
        box = data.get("face_box")
        return cls(
            name=str(data["name"]),
            face_similarity=float(data.get("face_similarity", 0.0)),
            face_found=bool(data.get("face_found", False)),
            clip_i=None if data.get("clip_i") is None else float(data["clip_i"]),
            off_model=bool(data.get("off_model", False)),
            region=tuple(int(v) for v in data.get("region", (0, 0, 0, 0))),  # type: ignore[arg-type]
            face_box=None if box is None else tuple(float(v) for v in box),  # type: ignore[arg-type]
            note=str(data.get("note", "")),
        )


@dataclass(frozen=True)
class PanelScores:
    """The scores of one render (one panel version)."""

    characters: tuple[CharacterScore, ...]
    clip_t: float | None
    threshold: float
    models: dict = field(default_factory=dict, compare=False)
    stand_in: bool = False
    faces_detected: int = 0
    scored_at: str = ""

    @property
    def min_face_similarity(self) -> float | None:
        """The lowest character's face similarity (None for a panel without characters)."""
        return min((c.face_similarity for c in self.characters), default=None)

    @property
    def off_model_names(self) -> list[str]:
        return [c.name for c in self.characters if c.off_model]

    @property
    def off_model(self) -> bool:
        return any(c.off_model for c in self.characters)

    def selection_key(self) -> tuple[float, float]:
        """Best of N: the highest lowest-character face similarity; CLIP-T breaks ties."""
        low = self.min_face_similarity
        return (0.0 if low is None else low, -1.0 if self.clip_t is None else self.clip_t)

    def badge(self) -> str:
        """A short line for a caption: ``face 0.71 · CLIP-T 0.31 · OFF-MODEL: Theo (stand-in)``."""
        parts = []
        if self.characters:
            parts.append(f"face {self.min_face_similarity:.2f}")
        if self.clip_t is not None:
            parts.append(f"CLIP-T {self.clip_t:.2f}")
        if self.off_model:
            parts.append("OFF-MODEL: " + ", ".join(self.off_model_names))
        text = " · ".join(parts) or "scored"
        return text + (" (stand-in models)" if self.stand_in else "")

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": SCORES_FORMAT,
            "characters": [c.to_dict() for c in self.characters],
            "clip_t": None if self.clip_t is None else round(float(self.clip_t), 4),
            "min_face_similarity": None if self.min_face_similarity is None else round(self.min_face_similarity, 4),
            "off_model": self.off_model,
            "threshold": self.threshold,
            "models": dict(self.models),
            "stand_in": self.stand_in,
            "note": STAND_IN_NOTE if self.stand_in else "",
            "faces_detected": self.faces_detected,
            "scored_at": self.scored_at,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "PanelScores":
        return cls(
            characters=tuple(CharacterScore.from_dict(c) for c in data.get("characters", [])),
            clip_t=None if data.get("clip_t") is None else float(data["clip_t"]),
            threshold=float(data.get("threshold", 0.0)),
            models=dict(data.get("models") or {}),
            stand_in=bool(data.get("stand_in", False)),
            faces_detected=int(data.get("faces_detected", 0)),
            scored_at=str(data.get("scored_at", "")),
        )


def scores_from_meta(meta: dict | None) -> PanelScores | None:
    """The scores stored in a version's metadata, or None (never scored, or unreadable)."""
    data = (meta or {}).get("scores")
    if not isinstance(data, dict):
        return None
    try:
        return PanelScores.from_dict(data)
    except (KeyError, TypeError, ValueError) as err:
        logger.warning("ignoring unreadable scores (%s)", err)
        return None


def pick_best(candidates: Sequence[tuple[T, PanelScores | None]]) -> T | None:
    """The item whose scores rank highest (:meth:`PanelScores.selection_key`); the earliest wins
    ties; items without scores rank last. None for an empty list."""
    best: T | None = None
    best_key: tuple[float, ...] | None = None
    for item, scores in candidates:
        key = (1.0, *scores.selection_key()) if scores is not None else (0.0, 0.0, 0.0)
        if best_key is None or key > best_key:
            best, best_key = item, key
    return best


# ----------------------------------------------------------------------------------------------
# Matching faces to characters


def cosine(a: Any, b: Any) -> float:
    x = np.asarray(a, dtype=np.float64).reshape(-1)
    y = np.asarray(b, dtype=np.float64).reshape(-1)
    denominator = float(np.linalg.norm(x) * np.linalg.norm(y))
    return float(x @ y / denominator) if denominator > 0 else 0.0


def _assign(gain: np.ndarray) -> list[int | None]:
    """Optimal assignment of columns (faces) to rows (slots), maximising the total gain over the
    largest possible number of pairs; ``result[slot]`` is a column or None. Exhaustive: there are
    at most 3 slots and :data:`MAX_FACES` faces (a few hundred candidates)."""
    slots, faces = gain.shape
    k = min(slots, faces)
    best: list[int | None] = [None] * slots
    best_total = -np.inf
    for rows in itertools.combinations(range(slots), k):
        for cols in itertools.permutations(range(faces), k):
            total = float(sum(gain[r, c] for r, c in zip(rows, cols)))
            if total > best_total + 1e-9:
                best_total = total
                best = [None] * slots
                for r, c in zip(rows, cols):
                    best[r] = c
    return best


def slot_positions(pose: Any, width: int, height: int) -> list[float]:
    """Each pose person's head x in panel pixels (the body's centre when the head is unknown)."""
    from ..domain.poses import fit_points, head_position

    xs = []
    points = fit_points(pose, width, height)
    for i in range(pose.num_people):
        head = head_position(pose, i, width, height)
        if head is None:
            present = [p for p in points[i] if p is not None]
            head = (float(np.mean([p[0] for p in present])), 0.0) if present else (width * (i + 0.5) / pose.num_people, 0.0)
        xs.append(float(head[0]))
    return xs


def match_faces(
    faces: Sequence["DetectedFace"],
    references: Sequence[Any],
    *,
    slot_x: Sequence[float] | None = None,
    width: int = 1,
) -> list[int | None]:
    """For each character slot, the index in ``faces`` of its face, or None.

    With ``slot_x`` (the pose slots' head positions, from :func:`slot_positions`) faces go to the
    nearest slots in left-to-right order (an assignment minimising the total horizontal distance),
    whatever they look like; otherwise to the characters they resemble most (an assignment
    maximising the total cosine similarity to ``references``, the registered identity embeddings).
    """
    if not faces or not references:
        return [None] * len(references)
    gain = np.zeros((len(references), len(faces)))
    for i, reference in enumerate(references):
        for j, face in enumerate(faces):
            if slot_x is not None:
                center = (face.bbox[0] + face.bbox[2]) / 2.0
                gain[i, j] = -abs(center - slot_x[i]) / max(1, width)
            else:
                gain[i, j] = cosine(reference, face.embedding)
    return _assign(gain)


def character_regions(
    width: int,
    height: int,
    count: int,
    *,
    pose: Any = None,
    faces: Sequence["DetectedFace | None"] = (),
) -> list[tuple[int, int, int, int]]:
    """The pixel box taken as each character: the whole image for one character; else the pose
    person's skeleton box (with a margin), else a body-sized box under the matched face, else the
    slot's vertical strip."""
    whole = (0, 0, width, height)
    if count <= 1:
        return [whole] * count
    points = None
    if pose is not None and pose.num_people == count:
        from ..domain.poses import fit_points

        points = fit_points(pose, width, height)
    boxes = []
    for i in range(count):
        box = None
        present = [p for p in points[i] if p is not None] if points is not None else []
        if len(present) >= 2:
            xs, ys = [p[0] for p in present], [p[1] for p in present]
            pad = 0.15 * max(max(xs) - min(xs), max(ys) - min(ys), 0.1 * min(width, height))
            box = (min(xs) - pad, min(ys) - 1.5 * pad, max(xs) + pad, max(ys) + pad)
        elif i < len(faces) and faces[i] is not None:
            x1, y1, x2, y2 = faces[i].bbox  # type: ignore[union-attr]
            w, h = x2 - x1, y2 - y1
            box = (x1 - 1.5 * w, y1 - 0.5 * h, x2 + 1.5 * w, float(height))
        if box is None:
            box = (width * i / count, 0.0, width * (i + 1) / count, float(height))
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        x1, y1 = max(0, min(x1, width - 8)), max(0, min(y1, height - 8))
        boxes.append((x1, y1, max(x1 + 8, min(x2, width)), max(y1 + 8, min(y2, height))))
    return boxes


# ----------------------------------------------------------------------------------------------
# The scorer


class RegistryReferences:
    """What a character looks like, from the project's :class:`CharacterRegistry`: its registered
    identity embedding and its body crop (both computed at registration, read from disk)."""

    def __init__(self, registry: Any):
        self.registry = registry

    def face_id(self, name: str) -> np.ndarray:
        conditioning = self.registry.conditioning(name)
        return np.asarray(conditioning.face_id.detach().cpu().float().numpy()).reshape(-1)

    def body(self, name: str, outfit: str | None = None) -> Image.Image:
        """The registered body crop, or the outfit's image prepared the same way when the panel
        dresses the character in a named outfit (what the model was asked to show)."""
        if outfit:
            from ..perception.crops import outfit_crop

            character = self.registry.get(name)
            item = character.outfit(outfit)
            if item is not None:
                with Image.open(self.registry.folder(name) / item.image_file) as picture:
                    return outfit_crop(picture)
        return self.registry.image(name, "body").convert("RGB")


class Scorer:
    """Scores renders. Components: ``face_analyzer`` (``analyze(rgb) -> [DetectedFace]``; the one
    that registered the characters), ``image_encoder`` (a ClipImageEncoder, or anything with
    ``image_embeddings(images)``), ``text_encoder`` (``embed(texts)``; the same CLIP model's text
    tower), ``references`` (``face_id(name)``, ``body(name)``). Each may be a zero-argument factory
    (nothing loads until the first score)."""

    def __init__(self, *, face_analyzer: Any, image_encoder: Any, text_encoder: Any, references: Any,
                 threshold: float = 0.28, stand_in: bool | None = None):
        self._parts = {"face": face_analyzer, "image": image_encoder, "text": text_encoder}
        self.references = references
        self.threshold = float(threshold)
        self._stand_in = stand_in
        self.calls = 0  # renders scored by this scorer

    def _part(self, key: str) -> Any:
        """The component, made now if it was given as a factory (components have a ``name``)."""
        value = self._parts[key]
        if not hasattr(value, "name") and callable(value):
            value = self._parts[key] = value()
        return value

    @property
    def face_analyzer(self) -> Any:
        return self._part("face")

    @property
    def image_encoder(self) -> Any:
        return self._part("image")

    @property
    def text_encoder(self) -> Any:
        return self._part("text")

    @property
    def models(self) -> dict[str, str]:
        return {
            "face": str(getattr(self.face_analyzer, "name", "?")),
            "image_encoder": str(getattr(self.image_encoder, "name", "?")),
            "text_encoder": str(getattr(self.text_encoder, "name", "?")),
        }

    @property
    def stand_in(self) -> bool:
        if self._stand_in is not None:
            return self._stand_in
        return any(_NOT_REAL in name for name in self.models.values())

    def score(self, image: Image.Image, *, prompt: str, characters: Sequence[str], pose: Any = None,
              outfits: dict[str, str] | None = None) -> PanelScores:
        """Scores of ``image`` for a panel with ``characters`` (slot order), ``prompt`` (as sent to
        the model), ``pose`` (a Pose with one person per character, or None) and ``outfits``
        (character name -> outfit name: CLIP-I then compares with the outfit image). The faces the
        render backend analysed for lettering (``perception.heads``) are reused when ``image``
        carries them; otherwise the face analyser runs here."""
        from ..perception.clip import image_embeddings
        from ..perception.heads import analysed_faces

        rgb = image.convert("RGB")
        width, height = rgb.size
        names = list(characters)
        if pose is not None and pose.num_people != len(names):
            pose = None
        faces = analysed_faces(image)
        if faces is None:
            faces = list(self.face_analyzer.analyze(np.asarray(rgb, dtype=np.uint8)))
        faces = sorted(faces, key=lambda f: f.area, reverse=True)[:MAX_FACES]
        references = [self.references.face_id(name) for name in names]
        slot_x = slot_positions(pose, width, height) if pose is not None and len(names) > 1 else None
        matched = match_faces(faces, references, slot_x=slot_x, width=width)
        slot_faces = [None if j is None else faces[j] for j in matched]
        regions = character_regions(width, height, len(names), pose=pose, faces=slot_faces)

        crops = [rgb.crop(box) for box in regions]
        outfits = outfits or {}
        bodies = [self.references.body(name, outfits[name]) if outfits.get(name) else self.references.body(name)
                  for name in names]
        embeds = image_embeddings(self.image_encoder, [rgb, *crops, *bodies]).numpy()
        whole, crop_embeds, body_embeds = embeds[0], embeds[1 : 1 + len(names)], embeds[1 + len(names) :]
        clip_t = round(cosine(self.text_encoder.embed([prompt]).numpy()[0], whole), 4) if prompt.strip() else None

        results = []
        for i, name in enumerate(names):
            face = slot_faces[i]
            # Rounded as stored: the scores in memory equal the scores read back.
            similarity = round(cosine(references[i], face.embedding), 4) if face is not None else 0.0
            off = similarity < self.threshold
            note = f"no face found for {name} in this render" if face is None else (
                f"face similarity {similarity:.2f} is below {self.threshold:.2f}" if off else "")
            results.append(CharacterScore(
                name=name, face_similarity=similarity, face_found=face is not None,
                clip_i=round(cosine(crop_embeds[i], body_embeds[i]), 4), off_model=off, region=regions[i],
                face_box=None if face is None else tuple(round(float(v), 1) for v in face.bbox), note=note,
            ))
        self.calls += 1
        return PanelScores(
            characters=tuple(results), clip_t=clip_t, threshold=self.threshold, models=self.models,
            stand_in=self.stand_in, faces_detected=len(faces),
            scored_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        )

    def score_job(self, job: Any, image: Image.Image) -> PanelScores:
        """Scores of a fresh render of ``job`` (a :class:`~storymaker.services.jobs.PanelJob`)."""
        return self.score(image, prompt=job.prompt, characters=[c.name for c in job.characters], pose=job.pose,
                          outfits={c.name: c.outfit for c in job.characters if c.outfit})

    def score_version(self, version: Any, poses: Any = None) -> PanelScores:
        """Scores of a stored version, from its image and the settings recorded with it."""
        meta = version.meta or {}
        pose = None
        if meta.get("pose") and poses is not None:
            try:
                pose = poses.get(meta["pose"])
            except PoseError as err:
                logger.warning("pose %r of panel %d is gone (%s): scoring without it", meta["pose"],
                               version.panel_index + 1, err)
        slots = [c for c in meta.get("characters") or [] if isinstance(c, dict)]
        return self.score(version.load_image(), prompt=str(meta.get("prompt", "")),
                          characters=[str(c.get("name")) for c in slots], pose=pose,
                          outfits={str(c.get("name")): str(c["outfit"]) for c in slots if c.get("outfit")})


def is_scorable(meta: dict | None) -> bool:
    """Whether a version can have scores: draft sketches cannot."""
    return (meta or {}).get("backend") != "draft"


def make_scorer(backend_name: str, settings: "Settings", registry: Any) -> Scorer | None:
    """The scorer for renders of ``backend_name`` over ``registry`` (None for the draft backend,
    without a registry, or when ``settings.score_renders`` is off). Nothing loads here.

    ``tiny``: the registry's stand-ins and tiny CLIP, and the tiny random text tower (labelled).
    Otherwise the registry's face analyser and CLIP image encoder, and the text tower of
    ``settings.image_encoder``."""
    if backend_name == "draft" or registry is None or not settings.score_renders:
        return None
    # Checked on the type: the registry's components are properties that would be built now.
    if not all(hasattr(type(registry), attr) for attr in ("face_analyzer", "image_encoder", "conditioning", "image")):
        return None
    from ..perception.clip import shared_text_encoder

    tiny = backend_name == "tiny"
    return Scorer(
        face_analyzer=lambda: registry.face_analyzer,
        image_encoder=lambda: registry.image_encoder,
        text_encoder=lambda: shared_text_encoder(settings, tiny=tiny),
        references=RegistryReferences(registry),
        threshold=settings.off_model_threshold,
        stand_in=True if tiny else None,
    )


# ----------------------------------------------------------------------------------------------
# Scoring a project's versions


@dataclass(frozen=True)
class ScoredPanel:
    """A panel's selected version and its scores (``fresh``: computed by this call)."""

    index: int
    version: Any
    scores: PanelScores | None
    fresh: bool = False
    reason: str = ""  # why there are no scores


def score_selected(project: Any, scorer: Scorer | None, *, poses: Any = None, rescore: bool = False,
                   indices: Iterable[int] | None = None,
                   on_panel: Callable[[int], None] | None = None) -> list[ScoredPanel]:
    """Score every panel's selected version that has no scores yet (all with ``rescore``), store
    the scores in the version (JSON and PNG), and return every selected version with its scores.
    The selection is never changed. ``scorer`` None: only the stored scores are read."""
    out = []
    for index in (project.panel_indices() if indices is None else indices):
        version = project.selected(index)
        if version is None:
            continue
        stored = scores_from_meta(version.meta)
        if not is_scorable(version.meta):
            out.append(ScoredPanel(index, version, None, reason="draft sketch: drafts have no scores"))
            continue
        if stored is not None and not rescore:
            out.append(ScoredPanel(index, version, stored))
            continue
        if scorer is None:
            out.append(ScoredPanel(index, version, stored, reason="" if stored else "not scored yet"))
            continue
        if on_panel is not None:
            on_panel(index)
        try:
            scores = scorer.score_version(version, poses)
        except CharacterError as err:  # a character removed since the render: the others go on
            out.append(ScoredPanel(index, version, stored, reason=str(err)))
            continue
        version = project.update_version_meta(version.panel_id or index, version.id, {"scores": scores.to_dict()})
        out.append(ScoredPanel(index, version, scores, fresh=True))
    return out


def score_render_safely(scorer: Scorer | None, job: Any, image: Image.Image) -> dict | None:
    """``scorer.score_job(...).to_dict()``, or None when there is no scorer or scoring failed (a
    render is never lost to its scores: the failure is logged and the version kept unscored)."""
    if scorer is None:
        return None
    try:
        return scorer.score_job(job, image).to_dict()
    except StoryMakerError as err:
        logger.warning("panel %d kept without scores: %s", job.index + 1, err)
    except Exception:  # noqa: BLE001 - a scoring bug must not lose the render
        logger.exception("panel %d kept without scores: scoring failed unexpectedly", job.index + 1)
    return None
