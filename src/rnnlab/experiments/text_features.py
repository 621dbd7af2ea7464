"""Simple features of a text, step by step, and the hidden units that track them.

After Karpathy, Johnson & Fei-Fei (2015), "Visualizing and Understanding Recurrent Networks":
some units of a character model count the position in the line or switch on inside quotes.
`features` gives each token of a text the value of a few such features after it is read;
`track` ranks a layer's units by the correlation (Pearson's r) of their activations with each
feature over the same tokens. The language model's explain page lists the best of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

OPEN, CLOSE = "([", ")]"
QUOTES = {'"': None, "“": True, "”": False}  # None: a straight quote toggles


@dataclass(frozen=True)
class Feature:
    name: str
    description: str  # what its value is, for the page


FEATURES = (
    Feature("inside quotes", "1 between an opening and a closing double quote, else 0"),
    Feature("inside brackets", "1 inside ( ) or [ ], else 0"),
    Feature("position in the line", "the characters read since the last line break"),
    Feature("position in the word", "the letters read since the last character that is not one"),
    Feature(
        "start of a speech",
        "1 on the line that names the speaker (a line ending in ':' after a blank line), else 0",
    ),
    Feature("lines into the speech", "the lines read since the speaker's name (0 before any)"),
)


def features(pieces: Sequence[str]) -> Tensor:
    """(T, F) the value of each of FEATURES after each of the T pieces of text is read."""
    lines = "".join(pieces).split("\n")
    speaker = [
        line.rstrip().endswith(":")
        and len(line.strip()) > 1
        and (i == 0 or not lines[i - 1].strip())
        for i, line in enumerate(lines)
    ]
    into: list[int] = []  # lines since the last speaker's name
    seen = False
    for named in speaker:
        seen = seen or named
        into.append(into[-1] + 1 if seen and not named else 0)
    quoted = depth = column = letters = line = 0
    values = []
    for piece in pieces:
        for c in piece:
            if c in QUOTES:
                quoted = (not quoted) if QUOTES[c] is None else QUOTES[c]
            elif c in OPEN:
                depth += 1
            elif c in CLOSE:
                depth = max(0, depth - 1)
            letters = letters + 1 if c.isalpha() else 0
            if c == "\n":
                line, column = line + 1, 0
            else:
                column += 1
        row = [quoted, depth > 0, column, letters, speaker[line], into[line]]
        values.append([float(v) for v in row])
    return torch.tensor(values, dtype=torch.float64).reshape(len(pieces), len(FEATURES))


def correlations(h: Tensor, f: Tensor) -> Tensor:
    """(H,) Pearson's r between each unit's activations h (T, H) and a feature f (T,); 0 for a
    unit that never moves. All zeros when f itself never moves."""
    h = h.double() - h.double().mean(dim=0)  # (T, H)
    f = f.double() - f.double().mean()  # (T,)
    scale = h.norm(dim=0) * f.norm()  # (H,)
    r = (h * f[:, None]).sum(dim=0) / scale.clamp_min(1e-300)  # (H,)
    return torch.where(scale > 0, r, torch.zeros_like(r))


def track(h: Tensor, pieces: Sequence[str], top: int = 5) -> list[dict]:
    """For each of FEATURES over the text `pieces` (T,), the `top` units of h (T, H) whose
    activations correlate with it most (by |r|, ties to the lower unit), as
    {"name", "description", "units": [[unit, r], ...], "missing": why there are none}."""
    values = features(pieces)  # (T, F)
    result = []
    for k, feature in enumerate(FEATURES):
        column = values[:, k]  # (T,)
        moves = bool((column != column[0]).any())
        r = correlations(h, column)  # (H,)
        order = sorted(range(len(r)), key=lambda u: (-abs(float(r[u])), u))[:top]
        result.append(
            {
                "name": feature.name,
                "description": feature.description,
                "units": [[u, float(r[u])] for u in order] if moves else [],
                "missing": "" if moves else f"never changes in these {len(pieces):,} tokens",
            }
        )
    return result
