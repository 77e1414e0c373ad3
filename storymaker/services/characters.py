"""The character registry: register a character from one photo, once, and keep it on disk.

Flow: ``preview = registry.analyze(name, photo, description=..., mask=...)`` computes everything
(face, person mask, body crop on white, aligned face crop, embeddings) and writes nothing, so a UI
can show ``preview.face_overlay``, ``preview.mask``, ``preview.body_crop``, ``preview.face_crop``;
``registry.add(preview)`` then stores it atomically in ``<project>/characters/<id>/``::

    character.json            the record (name, description, face, models used, outfits)
    photo.png  mask.png       the photo as used (RGB, EXIF-rotated, maybe downscaled) and its mask
    body.png   face.png       the two 224x224 crops the image encoder saw
    preview.png               the photo with the detected faces outlined
    embeddings.safetensors    face_id (512,), clip_character (T, C), clip_face (T, C)
    outfits/<id>.png + .safetensors   named outfits (image and its CLIP features)

``registry.conditioning(name, outfit=None)`` returns the :class:`CharacterConditioning` from memory,
else from disk, and recomputes (from the stored photo and mask) only when the record was made by
another face model or image encoder than the configured ones. ``registry.stats`` counts the passes.

The file formats and name rules are :mod:`storymaker.services.character_records`; what the models
see in a photo (face, mask, crops, features) is :mod:`storymaker.services.character_analysis`; the
components (face analysis, segmentation, image encoder) come from the services container
(``Services.character_registry``), the one wiring for the app and the CLI.
"""

from __future__ import annotations

import difflib
import json
import logging
import re
import threading
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
from PIL import Image

from ..domain.character import Character, Outfit
from ..errors import CharacterError, ProjectError
from ..fsutil import atomic_directory, atomic_write_bytes, atomic_write_json, remove_directory
from ..images import ImageSource, image_to_png_bytes, load_image, load_mask
from ..perception.base import FaceAnalyzer, ImageEncoder, Segmenter
from ..perception.crops import outfit_crop
from .character_analysis import (  # noqa: F401 - MAX_PHOTO_SIDE, MIN_FACE_SIZE: importable from here too
    MAX_PHOTO_SIDE,
    MIN_FACE_SIZE,
    CharacterPreview,
    PhotoAnalyzer,
    RegistryStats,
    closest_face,
)
from .character_records import (
    RECORD_FILE,
    character_from_json,
    embeddings_bytes,
    face_info,
    new_id,
    outfit_embeddings_file,
    read_embeddings,
    record_dict,
    record_json,
    validate_description,
    validate_name,
)

if TYPE_CHECKING:
    import torch

    from ..models.conditioning import CharacterConditioning

log = logging.getLogger(__name__)

PREVIEW_FILE = "preview.png"
OUTFITS_DIR = "outfits"


class CharacterRegistry:
    """Characters of one project, stored in ``root`` (``<project>/characters``).

    The components are used lazily (their ``name`` is read without loading anything): listing,
    renaming and deleting never load a model, and a character already encoded with the configured
    models is read back from disk without any pass.
    """

    def __init__(
        self,
        root: str | Path,
        *,
        face_analyzer: FaceAnalyzer | Callable[[], FaceAnalyzer],
        segmenter: Segmenter | Callable[[], Segmenter] | None,
        image_encoder: ImageEncoder | Callable[[], ImageEncoder],
    ):
        """``root``: the characters folder. Each component is the object itself or a zero-argument
        factory called on first use (listing, renaming and deleting call none of them)."""
        self.root = Path(root)
        self.stats = RegistryStats()
        self.analysis = PhotoAnalyzer(
            face_analyzer=face_analyzer, segmenter=segmenter, image_encoder=image_encoder, stats=self.stats
        )
        self._lock = threading.RLock()
        self._cache: dict[tuple[str, str, str, str], Any] = {}

    @property
    def face_analyzer(self) -> FaceAnalyzer:
        return self.analysis.face_analyzer

    @property
    def segmenter(self) -> Segmenter | None:
        return self.analysis.segmenter

    @property
    def image_encoder(self) -> ImageEncoder:
        return self.analysis.image_encoder

    # ---- reading ---------------------------------------------------------------------------
    def list(self) -> list[Character]:
        """All characters, sorted by name (records that cannot be read are skipped with a warning)."""
        out = []
        if self.root.is_dir():
            for folder in sorted(self.root.iterdir()):
                if folder.name.startswith(".") or not (folder / RECORD_FILE).is_file():
                    continue
                try:
                    out.append(self._read_record(folder))
                except ProjectError as err:
                    log.warning("%s", err)
        out.sort(key=lambda c: (c.name.casefold(), c.id))
        return out

    def names(self) -> list[str]:
        return [c.name for c in self.list()]

    def find(self, name_or_id: str) -> Character | None:
        """The character called ``name_or_id`` (case and surrounding spaces ignored) or with that id."""
        key = str(name_or_id).strip().casefold()
        key = re.sub(r"\s+", " ", key)
        characters = self.list()
        for character in characters:
            if character.name.casefold() == key:
                return character
        for character in characters:
            if character.id == str(name_or_id).strip():
                return character
        return None

    def get(self, name_or_id: str) -> Character:
        """Like :meth:`find` but an unknown name raises :class:`CharacterError` (with a suggestion)."""
        character = self.find(name_or_id)
        if character is None:
            names = self.names()
            close = difflib.get_close_matches(str(name_or_id), names, n=1, cutoff=0.6)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            known = f" Registered: {', '.join(names)}." if names else " No characters are registered yet."
            raise CharacterError(f"There is no character called {str(name_or_id)!r}.{hint}{known}")
        return character

    def folder(self, name_or_id: str) -> Path:
        return self.root / self.get(name_or_id).id

    def image(self, name_or_id: str, which: str) -> Image.Image:
        """A stored image: "photo", "mask", "body", "face" or "preview"."""
        character = self.get(name_or_id)
        files = {
            "photo": character.photo_file,
            "mask": character.mask_file,
            "body": character.body_crop_file,
            "face": character.face_crop_file,
            "preview": PREVIEW_FILE,
        }
        if which not in files:
            raise CharacterError(f"Unknown image {which!r}: use one of {', '.join(files)}.")
        path = self.root / character.id / files[which]
        with Image.open(path) as image:
            image.load()
            return image.copy()

    # ---- registering -----------------------------------------------------------------------
    def analyze(
        self,
        name: str,
        photo: ImageSource,
        *,
        description: str = "",
        mask: ImageSource | None = None,
    ) -> CharacterPreview:
        """Understand a photo: face, mask, crops and embeddings. Writes nothing.

        ``name`` may be "" here (check the photo first, name it in ``add(preview, name=...)``).
        """
        clean_name = ""
        if name is not None and str(name).strip():
            clean_name = validate_name(name)
            self._check_free(clean_name)
        return self.analysis.analyze(photo, name=clean_name, description=validate_description(description), mask=mask)

    def preview(
        self, photo: ImageSource, *, mask: ImageSource | None = None, name: str = "", description: str = ""
    ) -> CharacterPreview:
        """``analyze`` with the photo first and the name optional (for a UI's "check the photo")."""
        return self.analyze(name, photo, description=description, mask=mask)

    def add(
        self,
        preview: CharacterPreview | str,
        photo: ImageSource | None = None,
        *,
        name: str | None = None,
        description: str | None = None,
        mask: ImageSource | None = None,
    ) -> Character:
        """Store a character atomically (all of it or nothing) and return its record.

        ``add(preview)`` stores an analysed preview (``name=`` / ``description=`` override its
        own); ``add(name, photo, description=..., mask=...)`` analyses and stores in one call.
        """
        if not isinstance(preview, CharacterPreview):
            if photo is None:
                raise CharacterError("add(name, photo): the photo is missing.")
            return self.add(self.analyze(preview, photo, description=description or "", mask=mask))
        if name is not None or description is not None:
            preview = replace(
                preview,
                name=preview.name if name is None else name,
                description=preview.description if description is None else validate_description(description),
            )
        with self._lock:
            name = validate_name(preview.name)
            self._check_free(name)
            character_id = new_id(name, taken=self._ids())
            character = Character(
                id=character_id,
                name=name,
                description=preview.description,
                face=preview.face,
                face_model=preview.face_model,
                image_encoder=preview.image_encoder,
                created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                extra={
                    "mask_source": preview.mask_source,
                    "photo_size": list(preview.photo.size),
                    "original_size": list(preview.original_size),
                },
            )
            target = self.root / character_id
            try:
                with atomic_directory(target) as tmp:
                    (tmp / character.photo_file).write_bytes(image_to_png_bytes(preview.photo))
                    (tmp / character.mask_file).write_bytes(image_to_png_bytes(preview.mask))
                    (tmp / character.body_crop_file).write_bytes(image_to_png_bytes(preview.body_crop))
                    (tmp / character.face_crop_file).write_bytes(image_to_png_bytes(preview.face_crop))
                    (tmp / PREVIEW_FILE).write_bytes(image_to_png_bytes(preview.face_overlay))
                    (tmp / character.embeddings_file).write_bytes(
                        embeddings_bytes(
                            {"face_id": preview.face_id, "clip_character": preview.clip_character, "clip_face": preview.clip_face},
                            face_model=preview.face_model,
                            image_encoder=preview.image_encoder,
                        )
                    )
                    (tmp / RECORD_FILE).write_text(record_json(character), encoding="utf-8")
            except OSError as err:
                raise ProjectError(f"Could not save character {name!r} in {self.root} ({err}): check the folder is writable.") from None
            from ..models.conditioning import CharacterConditioning

            self._cache[self._key(character)] = CharacterConditioning(
                preview.face_id, preview.clip_character, preview.clip_face
            )
            log.info("Registered character %r as %s", name, character_id)
            return character

    def register(
        self, name: str, photo: ImageSource, *, description: str = "", mask: ImageSource | None = None
    ) -> Character:
        """``add(analyze(...))`` in one call."""
        return self.add(name, photo, description=description, mask=mask)

    # ---- editing ---------------------------------------------------------------------------
    def rename(self, name_or_id: str, new_name: str) -> Character:
        with self._lock:
            character = self.get(name_or_id)
            clean = validate_name(new_name)
            self._check_free(clean, ignore_id=character.id)
            return self._write_record(replace(character, name=clean))

    def redescribe(self, name_or_id: str, description: str) -> Character:
        with self._lock:
            character = self.get(name_or_id)
            return self._write_record(replace(character, description=validate_description(description)))

    def remove(self, name_or_id: str) -> Character:
        """Delete a character and its files; returns the removed record."""
        with self._lock:
            character = self.get(name_or_id)
            try:
                remove_directory(self.root / character.id)  # atomic: the character disappears at once
            except OSError as err:
                raise ProjectError(f"Could not delete {character.name!r} ({err}): check the folder is writable.") from None
            for key in [k for k in self._cache if k[0] == character.id]:
                del self._cache[key]
            return character

    delete = remove

    @property
    def encoder_passes(self) -> int:
        """Face analyses + segmentations + images encoded by CLIP, since this registry was made."""
        return self.stats.face_passes + self.stats.segment_passes + self.stats.clip_passes

    def add_outfit(self, name_or_id: str, outfit_name: str, image: ImageSource) -> Character:
        """A named outfit: the image (resized to 224x224 like a body crop) whose CLIP features
        replace the body crop's when a panel asks for it."""
        with self._lock:
            character = self.get(name_or_id)
            clean = validate_name(outfit_name, what="outfit name")
            if character.outfit(clean) is not None:
                raise CharacterError(f"{character.name} already has an outfit called {clean!r}: pick another name or remove it first.")
            picture = load_image(image, what="outfit image", max_side=1024)
            crop = outfit_crop(picture)
            (clip_outfit,) = self.analysis.encode([crop])
            outfit_id = new_id(clean, taken=[o.image_file for o in character.outfits])
            image_file = f"{OUTFITS_DIR}/{outfit_id}.png"
            folder = self.root / character.id
            written: list[Path] = []
            try:
                written.append(atomic_write_bytes(folder / image_file, image_to_png_bytes(picture)))
                written.append(
                    atomic_write_bytes(
                        folder / outfit_embeddings_file(image_file),
                        embeddings_bytes({"clip_character": clip_outfit}, face_model="", image_encoder=self.image_encoder.name),
                    )
                )
                updated = self._write_record(replace(character, outfits=character.outfits + (Outfit(clean, image_file),)))
            except BaseException:
                for path in written:
                    path.unlink(missing_ok=True)
                raise
            self._cache[(character.id, self.image_encoder.name, "", "outfit:" + image_file)] = clip_outfit
            return updated

    def remove_outfit(self, name_or_id: str, outfit_name: str) -> Character:
        with self._lock:
            character = self.get(name_or_id)
            outfit = self._outfit(character, outfit_name)
            updated = self._write_record(replace(character, outfits=tuple(o for o in character.outfits if o is not outfit)))
            folder = self.root / character.id
            (folder / outfit.image_file).unlink(missing_ok=True)
            (folder / outfit_embeddings_file(outfit.image_file)).unlink(missing_ok=True)
            return updated

    # ---- conditioning ----------------------------------------------------------------------
    def conditioning(self, name_or_id: str, outfit: str | None = None) -> "CharacterConditioning":
        """The character's conditioning (wearing ``outfit`` if given): memory, else disk, else
        recomputed from the stored photo when the stored embeddings come from other models."""
        with self._lock:
            character = self.get(name_or_id)
            base = self._base_conditioning(character)
            if outfit is None or not str(outfit).strip():
                return base
            item = self._outfit(character, outfit)
            return base.with_outfit(self._outfit_features(character, item))

    def _key(self, character: Character) -> tuple[str, str, str, str]:
        return (character.id, self.image_encoder.name, self.face_analyzer.name, "base")

    def _base_conditioning(self, character: Character):
        from ..models.conditioning import CharacterConditioning

        key = self._key(character)
        cached = self._cache.get(key)
        if cached is not None:
            self.stats.memory_hits += 1
            return cached
        folder = self.root / character.id
        same_models = (
            character.image_encoder == self.image_encoder.name and character.face_model == self.face_analyzer.name
        )
        tensors = read_embeddings(folder / character.embeddings_file) if same_models else None
        if tensors is not None and {"face_id", "clip_character", "clip_face"} <= tensors.keys():
            self.stats.disk_loads += 1
            result = CharacterConditioning(tensors["face_id"], tensors["clip_character"], tensors["clip_face"])
        else:
            result = self._recompute(character)
        self._cache[key] = result
        return result

    def _recompute(self, character: Character):
        """Re-encode a stored character with the configured models (face and/or image encoder)."""
        import torch

        from ..models.conditioning import CharacterConditioning

        log.info(
            "Recomputing %r: stored with face model %r / encoder %r, configured %r / %r",
            character.name, character.face_model, character.image_encoder, self.face_analyzer.name, self.image_encoder.name,
        )
        folder = self.root / character.id
        photo = load_image(folder / character.photo_file, what="stored photo", max_side=None)
        person_mask = load_mask(folder / character.mask_file, what="stored mask", size=photo.size)
        stored = read_embeddings(folder / character.embeddings_file) or {}
        face = character.face
        if character.face_model == self.face_analyzer.name and face is not None and "face_id" in stored:
            face_id = stored["face_id"]
            kps = np.asarray(face.kps, dtype=np.float32)
        else:
            faces = self.analysis.detect(photo)
            chosen = closest_face(faces, face.bbox if face is not None else None)
            face_id = torch.from_numpy(np.asarray(chosen.embedding, dtype=np.float32).reshape(-1).copy())
            kps = chosen.kps
            face = replace(face_info(chosen, len(faces)))
        body, face_image = self.analysis.crops(photo, person_mask, kps)
        clip_character, clip_face = self.analysis.encode([body, face_image])
        self.stats.recomputed += 1
        atomic_write_bytes(folder / character.body_crop_file, image_to_png_bytes(body))
        atomic_write_bytes(folder / character.face_crop_file, image_to_png_bytes(face_image))
        atomic_write_bytes(
            folder / character.embeddings_file,
            embeddings_bytes(
                {"face_id": face_id, "clip_character": clip_character, "clip_face": clip_face},
                face_model=self.face_analyzer.name,
                image_encoder=self.image_encoder.name,
            ),
        )
        self._write_record(replace(character, face=face, face_model=self.face_analyzer.name, image_encoder=self.image_encoder.name))
        return CharacterConditioning(face_id, clip_character, clip_face)

    def _outfit_features(self, character: Character, outfit: Outfit) -> "torch.Tensor":
        key = (character.id, self.image_encoder.name, "", "outfit:" + outfit.image_file)
        cached = self._cache.get(key)
        if cached is not None:
            self.stats.memory_hits += 1
            return cached
        folder = self.root / character.id
        path = folder / outfit_embeddings_file(outfit.image_file)
        tensors = read_embeddings(path, image_encoder=self.image_encoder.name)
        if tensors is not None and "clip_character" in tensors:
            self.stats.disk_loads += 1
            features = tensors["clip_character"]
        else:
            picture = load_image(folder / outfit.image_file, what="stored outfit image", max_side=None)
            (features,) = self.analysis.encode([outfit_crop(picture)])
            self.stats.recomputed += 1
            atomic_write_bytes(path, embeddings_bytes({"clip_character": features}, face_model="", image_encoder=self.image_encoder.name))
        self._cache[key] = features
        return features

    # ---- internals -------------------------------------------------------------------------
    def _ids(self) -> list[str]:
        return [p.name for p in self.root.iterdir()] if self.root.is_dir() else []

    def _check_free(self, name: str, ignore_id: str | None = None) -> None:
        key = name.casefold()
        for character in self.list():
            if character.name.casefold() == key and character.id != ignore_id:
                raise CharacterError(
                    f"A character called {character.name!r} already exists (names ignore case): "
                    "pick another name, or remove or rename the existing one."
                )

    def _outfit(self, character: Character, outfit_name: str) -> Outfit:
        item = character.outfit(str(outfit_name))
        if item is None:
            names = ", ".join(o.name for o in character.outfits) or "none yet"
            raise CharacterError(f"{character.name} has no outfit called {str(outfit_name)!r} (outfits: {names}).")
        return item

    def _read_record(self, folder: Path) -> Character:
        path = folder / RECORD_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return character_from_json(data, folder.name)
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise ProjectError(f"The character record {path} cannot be read ({err}); remove that folder or restore it.") from None

    def _write_record(self, character: Character) -> Character:
        try:
            atomic_write_json(self.root / character.id / RECORD_FILE, record_dict(character))
        except OSError as err:
            raise ProjectError(f"Could not save {character.name!r} ({err}): check the folder is writable.") from None
        return character

