"""Which panel of a script is which, across edits: stable panel ids without ids in the script.

The script is plain text that people write and diff, so its panels carry no ids. Instead the
project remembers every panel it has seen: an id, its prompt and its position in the script as
last seen, and the wordings its renders were made for (``project.json`` -> ``"panels"``). When the
script changes, its panels are matched against that record, in this order:

1. **Unchanged runs**: the longest runs of panels with the same prompts in the same order
   (``difflib``) keep their ids, so inserting or deleting panels elsewhere changes nothing for them.
2. **Moved panels**: a panel whose prompt is the same as that of a remembered panel not matched yet
   takes its id (reordering).
3. **Panels put back**: a prompt that is the same as that of a panel that left the script earlier
   (its last wording, or one its renders were made for) takes that panel's id back (delete a panel,
   undo the deletion, and its renders return).
4. **Edited panels**: between the same matched neighbours, a prompt similar enough (word or
   character similarity, ``difflib`` ratio, at least :data:`EDIT_SIMILARITY`) to a remembered
   panel is that panel with new wording. A panel with renders is compared with the wordings its
   renders were made for (see below), one without with its last wording. The most similar pairs
   match first. A remembered panel whose prompt is unknown (renders migrated from an old project
   that did not record it) matches by its place between the same neighbours.
5. Every other panel is new and gets a new id. Remembered panels left unmatched leave the script:
   the project keeps them (and their renders) for rule 3.

Why rule 4 compares a rendered panel with what was rendered, not with its last wording: the
script is saved as it is typed, so a prompt retyped key by key ("a quiet street at noon", "a quiet
street at noo", ... "a", "a r", ... "a red dragon over a castle") is a chain of one-key edits, each
similar to the one before. Compared with the last wording, the chain carried the panel, and its
street render, into a different scene. Compared with the rendered wording, a panel keeps its renders
only while its prompt stays similar to what they show, however the edit was saved (key by key or
at once): the outcome depends on the two wordings, not on the path between them. Here the street
panel leaves the script at "a quiet s" (kept with its render; rule 3 gives it back when "a quiet
st" or "a quiet street at noon" is typed again) and the dragon is a new, empty panel. A panel
without renders has nothing to show under the wrong scene, so it follows its wording key by key
(typing a prompt from empty makes one panel, not one per key). Renders that did not record their
prompt give no wording: such a panel follows its wording too. Any of the renders' wordings counts
(not only the selected one's): each is a wording the panel was rendered for. The last wording is
not required to be similar as well: a single save that undoes a long edit (a paste, an undo) back
towards what was rendered keeps the panel.

"The same prompt" ignores letter case and runs of spaces: the model's tokenizer ignores them too, so
such a render is still a render of the prompt. Whether a *render* was made for the current wording is
a separate, per-render question (:func:`same_prompt` of the render's recorded prompt and the panel's
prompt): a panel matched by rule 4 keeps its renders, shown as "script changed since render".

Pure Python; the project (``storymaker.services.storage``) stores the record and the renders.
"""

from __future__ import annotations

import difflib
import re
import secrets
from dataclasses import dataclass
from typing import Callable, Sequence

#: How similar (0..1, difflib ratio of words or of characters) an edited prompt must be to its old
#: wording to stay the same panel. 0.6 keeps "[Mara] stands on a cliff" -> "[Mara] stands on a
#: rocky cliff at dusk" (0.77) and a one-key edit of any prompt of three or more letters (the script
#: is saved as it is typed); "[Mara] stands on a rocky cliff at dusk" -> "[Mara] and [Theo] drink
#: tea beside the great lamp" (0.12) and "a cat" -> "a dog" (0.5) are new panels.
EDIT_SIMILARITY = 0.6

_TOKEN_RE = re.compile(r"\[[^\]]*\]|\w+")
_CHARS_FROM = 0.3  # word ratio from which the character ratio is computed too (see _Similar.to)


@dataclass(frozen=True)
class KnownPanel:
    """A panel the project has seen: ``position`` in the script as last seen (0-based), None once it
    left the script; ``prompt`` as last seen, None if unknown; ``rendered``: the wordings its renders
    were made for (empty: no renders, or none recorded its prompt)."""

    id: str
    prompt: str | None
    position: int | None = None
    rendered: tuple[str, ...] = ()

    def wordings(self) -> tuple[str, ...]:
        """What rule 4 compares a new prompt with: the rendered wordings, else the last one."""
        if self.rendered:
            return self.rendered
        return () if self.prompt is None else (self.prompt,)


@dataclass(frozen=True)
class Matching:
    """The result of :func:`match_panels`: ``ids`` (one per prompt, in script order) and ``panels``,
    the new record: the script's panels in order, then those that left it (most recent first)."""

    ids: tuple[str, ...]
    panels: tuple[KnownPanel, ...]


def normalize_prompt(prompt: str) -> str:
    """The key prompts are compared by: runs of spaces collapsed, case folded."""
    return " ".join(str(prompt).split()).casefold()


def same_prompt(a: str | None, b: str | None) -> bool:
    """Whether two prompts are the same for the model (False when either is unknown)."""
    return a is not None and b is not None and normalize_prompt(a) == normalize_prompt(b)


def similarity(a: str, b: str) -> float:
    """How alike two prompts are (0..1): the larger of the word and the character difflib ratios."""
    return _Similar(a).to(b, 0.0)


class _Similar:
    """:func:`similarity` against one prompt, for many others: difflib caches the prompt's side,
    and its cheap upper bounds skip the full ratio when it cannot reach the cut-off."""

    def __init__(self, prompt: str):
        text = normalize_prompt(prompt)
        self.chars = difflib.SequenceMatcher(None, autojunk=False)
        self.chars.set_seq2(text)
        self.words = difflib.SequenceMatcher(None, autojunk=False)
        self.words.set_seq2(_TOKEN_RE.findall(text))

    def to(self, other: str, cutoff: float) -> float:
        """The similarity to ``other``, or 0.0 when it is certainly below ``cutoff`` or shares
        under a third of its words (then the slower character ratio is not worth computing; prompts
        of one or two words, where a half-typed word is most of the prompt, always get it)."""
        text = normalize_prompt(other)
        tokens = _TOKEN_RE.findall(text)
        self.words.set_seq1(tokens)
        best = self.words.ratio() if self.words.quick_ratio() >= min(cutoff, _CHARS_FROM) else 0.0
        short = min(len(tokens), len(self.words.b)) <= 2
        if best >= _CHARS_FROM or short:
            self.chars.set_seq1(text)
            bar = max(cutoff, best)
            if self.chars.real_quick_ratio() > bar and self.chars.quick_ratio() > bar:
                best = max(best, self.chars.ratio())
        return best if best >= cutoff else 0.0


def new_panel_id() -> str:
    """A fresh panel id: ``p-`` and 8 hex digits (never all digits, unlike old ``panels/NNN``)."""
    return f"p-{secrets.token_hex(4)}"


def match_panels(
    known: Sequence[KnownPanel],
    prompts: Sequence[str],
    new_id: Callable[[], str] = new_panel_id,
) -> Matching:
    """Give each of ``prompts`` (the script's panels, in order) the id of the remembered panel it
    is, by the rules of this module's docstring; unmatched prompts get ``new_id()``."""
    active = sorted((k for k in known if k.position is not None), key=lambda k: k.position)
    retired = [k for k in known if k.position is None]
    old_keys = [normalize_prompt(k.prompt) if k.prompt is not None else ("unknown", i)
                for i, k in enumerate(active)]
    new_keys = [normalize_prompt(p) for p in prompts]
    pairs: dict[int, KnownPanel] = {}  # new position -> remembered panel
    used: set[int] = set()  # indices into ``active``

    # 1. unchanged runs
    matcher = difflib.SequenceMatcher(None, old_keys, new_keys, autojunk=False)
    gaps = []
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            for k in range(i2 - i1):
                pairs[j1 + k] = active[i1 + k]
                used.add(i1 + k)
        else:
            gaps.append((range(i1, i2), range(j1, j2)))
    # 2. moved panels
    for j, key in enumerate(new_keys):
        if j in pairs:
            continue
        for i, old in enumerate(old_keys):
            if i not in used and old == key:
                pairs[j] = active[i]
                used.add(i)
                break
    # 3. panels put back (by their last wording or one they were rendered for)
    retired_keys = [{normalize_prompt(p) for p in (k.prompt, *k.rendered) if p is not None} for k in retired]
    returned: set[int] = set()
    for j, key in enumerate(new_keys):
        if j in pairs:
            continue
        for r, keys in enumerate(retired_keys):
            if r not in returned and key in keys:
                pairs[j] = retired[r]
                returned.add(r)
                break
    # 4. edited panels, between the same neighbours
    for old_range, new_range in gaps:
        candidates = []
        for i in old_range:
            if i in used or not active[i].wordings():
                continue
            similar = [_Similar(wording) for wording in active[i].wordings()]
            for j in new_range:
                if j not in pairs:
                    score = max(each.to(prompts[j], EDIT_SIMILARITY) for each in similar)
                    if score >= EDIT_SIMILARITY:
                        candidates.append((-score, abs((i - old_range.start) - (j - new_range.start)), i, j))
        for _, _, i, j in sorted(candidates):
            if i not in used and j not in pairs:
                pairs[j] = active[i]
                used.add(i)
        unknown = [i for i in old_range if i not in used and active[i].prompt is None]
        free = [j for j in new_range if j not in pairs]
        for i, j in zip(unknown, free):
            pairs[j] = active[i]
            used.add(i)
    # 5. new panels; the rest leave the script
    taken = {k.id for k in known}
    ids = []
    for j in range(len(prompts)):
        if j in pairs:
            ids.append(pairs[j].id)
            continue
        fresh = new_id()
        while fresh in taken:
            fresh = new_id()
        taken.add(fresh)
        ids.append(fresh)
    rendered = {k.id: k.rendered for k in known}
    now = tuple(KnownPanel(pid, str(prompt), j, rendered.get(pid, ()))
                for j, (pid, prompt) in enumerate(zip(ids, prompts)))
    left = [KnownPanel(k.id, k.prompt, None, k.rendered) for i, k in enumerate(active) if i not in used]
    earlier = [k for r, k in enumerate(retired) if r not in returned]
    return Matching(tuple(ids), now + tuple(left) + tuple(earlier))
