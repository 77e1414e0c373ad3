"""What a character is on disk, apart from the registry that manages them: name and description
validation, folder ids, the ``character.json`` record and the ``*.safetensors`` embeddings files.

Plain data and file formats only: no model runs here (:mod:`storymaker.services.characters` is the
registry that analyses photos and keeps the conditioning cache).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import unicodedata
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

import numpy as np

from ..domain.character import Character, FaceInfo, Outfit
from ..errors import CharacterError
from ..perception.base import DetectedFace

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
RECORD_FILE = "character.json"
MAX_NAME_LENGTH = 40
MAX_DESCRIPTION_LENGTH = 200
# What an empty name's message suggests, by what is being named.
_NAME_EXAMPLES = {"character name": "Mia", "outfit name": "raincoat"}
# Characters with a meaning in the story script: [Name], Name: "line", outfit: Name=outfit, a, b
_SCRIPT_CHARS = '[]:=,"'


# --------------------------------------------------------------------------------------------
# Names

def validate_name(name: object, *, what: str = "character name") -> str:
    """The cleaned name, or :class:`CharacterError` saying what is wrong with it."""
    if not isinstance(name, str):
        raise CharacterError(f"The {what} must be text.")
    clean = unicodedata.normalize("NFC", name).strip()
    if not clean:
        example = _NAME_EXAMPLES.get(what)
        raise CharacterError(f"The {what} is empty: type a name" + (f" such as {example!r}." if example else "."))
    if any(unicodedata.category(ch).startswith("C") for ch in clean):
        raise CharacterError(f"The {what} {clean!r} contains control characters: use letters, digits and spaces.")
    if "/" in clean or "\\" in clean or ".." in clean:
        raise CharacterError(f"The {what} {clean!r} contains '/', '\\' or '..': use letters, digits and spaces.")
    bad = sorted({ch for ch in clean if ch in _SCRIPT_CHARS})
    if bad:
        raise CharacterError(
            f"The {what} {clean!r} contains {' '.join(bad)}, which the story script uses "
            "([Name], Name: \"line\", outfit: Name=outfit): leave them out."
        )
    if len(clean) > MAX_NAME_LENGTH:
        raise CharacterError(f"The {what} is {len(clean)} characters long: keep it to {MAX_NAME_LENGTH} or fewer.")
    return re.sub(r"\s+", " ", clean)


def validate_description(description: object) -> str:
    if description is None:
        return ""
    if not isinstance(description, str):
        raise CharacterError("The description must be text, e.g. 'a woman with red hair'.")
    clean = re.sub(r"\s+", " ", unicodedata.normalize("NFC", description)).strip()
    if any(unicodedata.category(ch).startswith("C") for ch in clean):
        raise CharacterError("The description contains control characters: write plain text.")
    if "[" in clean or "]" in clean:
        raise CharacterError("The description cannot contain '[' or ']' (the script's character brackets).")
    if len(clean) > MAX_DESCRIPTION_LENGTH:
        raise CharacterError(
            f"The description is {len(clean)} characters long: keep it short (at most "
            f"{MAX_DESCRIPTION_LENGTH}), e.g. 'a woman with red hair'."
        )
    return clean


def slugify(text: str, max_length: int = 24) -> str:
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii").lower()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text).strip("-")[:max_length].strip("-")
    return slug or "character"


def new_id(name: str, taken: Iterable[str] = ()) -> str:
    """A folder-safe id: slug of the name + a short random hash (names never become paths)."""
    taken = set(taken)
    while True:
        digest = hashlib.sha1(f"{name.casefold()}:{uuid.uuid4().hex}".encode("utf-8")).hexdigest()[:8]
        candidate = f"{slugify(name)}-{digest}"
        if candidate not in taken:
            return candidate


# --------------------------------------------------------------------------------------------
# The record and the embeddings files

def face_info(face: DetectedFace, faces_found: int) -> FaceInfo:
    return FaceInfo(
        bbox=tuple(float(v) for v in face.bbox),  # type: ignore[arg-type]
        kps=tuple((float(x), float(y)) for x, y in np.asarray(face.kps, dtype=np.float32).reshape(5, 2)),
        det_score=round(float(face.det_score), 4),
        gender=face.gender,
        age=face.age,
        faces_found=faces_found,
    )


def record_dict(character: Character) -> dict[str, Any]:
    face = character.face
    return {
        "format_version": FORMAT_VERSION,
        "id": character.id,
        "name": character.name,
        "description": character.description,
        "face": None if face is None else {
            "bbox": list(face.bbox),
            "kps": [list(p) for p in face.kps],
            "det_score": face.det_score,
            "gender": face.gender,
            "age": face.age,
            "faces_found": face.faces_found,
        },
        "outfits": [{"name": o.name, "image_file": o.image_file} for o in character.outfits],
        "files": {
            "photo": character.photo_file,
            "mask": character.mask_file,
            "body_crop": character.body_crop_file,
            "face_crop": character.face_crop_file,
            "embeddings": character.embeddings_file,
        },
        "face_model": character.face_model,
        "image_encoder": character.image_encoder,
        "created": character.created,
        "extra": character.extra,
    }


def record_json(character: Character) -> str:
    return json.dumps(record_dict(character), indent=2, ensure_ascii=False, sort_keys=True) + "\n"


def _safe_relative(value: str, default: str) -> str:
    """Stored file names must stay inside the character's folder."""
    text = str(value or default)
    parts = Path(text).parts
    if Path(text).is_absolute() or ".." in parts or not parts:
        raise ValueError(f"unsafe file name {text!r}")
    return text


def character_from_json(data: dict[str, Any], folder_name: str) -> Character:
    version = int(data.get("format_version", 1))
    if version > FORMAT_VERSION:
        raise ValueError(f"format_version {version} is newer than this program understands ({FORMAT_VERSION}); update StoryMaker Studio")
    face_data = data.get("face")
    face = None
    if face_data:
        face = FaceInfo(
            bbox=tuple(float(v) for v in face_data["bbox"]),  # type: ignore[arg-type]
            kps=tuple((float(x), float(y)) for x, y in face_data["kps"]),
            det_score=float(face_data.get("det_score", 0.0)),
            gender=face_data.get("gender"),
            age=face_data.get("age"),
            faces_found=int(face_data.get("faces_found", 1)),
        )
    files = data.get("files", {})
    defaults = Character(id=folder_name, name=str(data["name"]))
    return Character(
        id=folder_name,  # the folder is the truth (a copied folder keeps working)
        name=str(data["name"]),
        description=str(data.get("description", "")),
        face=face,
        outfits=tuple(
            Outfit(str(o["name"]), _safe_relative(o["image_file"], "")) for o in data.get("outfits", [])
        ),
        photo_file=_safe_relative(files.get("photo"), defaults.photo_file),
        mask_file=_safe_relative(files.get("mask"), defaults.mask_file),
        body_crop_file=_safe_relative(files.get("body_crop"), defaults.body_crop_file),
        face_crop_file=_safe_relative(files.get("face_crop"), defaults.face_crop_file),
        embeddings_file=_safe_relative(files.get("embeddings"), defaults.embeddings_file),
        face_model=str(data.get("face_model", "")),
        image_encoder=str(data.get("image_encoder", "")),
        created=str(data.get("created", "")),
        extra=dict(data.get("extra") or {}),
    )


def outfit_embeddings_file(image_file: str) -> str:
    return str(Path(image_file).with_suffix(".safetensors"))


def embeddings_bytes(tensors: dict[str, "torch.Tensor"], *, face_model: str, image_encoder: str) -> bytes:
    from safetensors.torch import save

    clean = {k: v.detach().to("cpu").float().contiguous() for k, v in tensors.items()}
    return save(clean, metadata={"face_model": face_model, "image_encoder": image_encoder, "format_version": str(FORMAT_VERSION)})


def read_embeddings(path: Path, *, image_encoder: str | None = None) -> dict[str, "torch.Tensor"] | None:
    """Tensors of an embeddings file, or None if it is missing, unreadable or (when
    ``image_encoder`` is given) made by another encoder."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    try:
        data = path.read_bytes()
        if image_encoder is not None:
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as handle:
                if (handle.metadata() or {}).get("image_encoder") != image_encoder:
                    return None
        return load(data)
    except (OSError, SafetensorError, ValueError) as err:
        log.warning("Ignoring unreadable embeddings %s (%s); they will be recomputed", path, err)
        return None
