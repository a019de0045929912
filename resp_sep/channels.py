"""Channel roles: which channel is the ECG, the PPG, the nasal flow, the thoracic or abdominal effort.

Labels are compared after :func:`normalise_label` (lower case, letters and digits only), first
against an alias table of the conventions of MESA, SHHS, PhysioNet and common free-text labels,
then against keyword patterns. Each alias has a rank; when several channels fit a role the best
rank wins and the others are reported as alternatives (``RoleChoice.alternatives``); a tie at the
best rank is flagged ``ambiguous`` so the CLI can say so. Users override with ``ecg=LABEL``, or
with an alias list ``ecg=ECG1|EKG|ECG`` (the first label present in a recording wins: cohorts
name one channel differently across sites and years).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from resp_sep.errors import InputError

ROLES = ("ecg", "ppg", "nasal", "thor", "abdo")
#: roles that carry a respiration reference
REFERENCE_ROLES = ("nasal", "thor", "abdo")

# Exact aliases (normalised) -> rank; a lower rank is preferred when several channels fit a role.
_ALIASES: dict[str, dict[str, int]] = {
    "ecg": {
        # lead II and its spellings first: best R waves, the usual monitoring lead
        "ii": 0, "mlii": 0, "ecgii": 0, "ecg2": 2, "ecgleadii": 0, "leadii": 0, "ecgl2": 1,
        "ecg": 1, "ekg": 1, "ecg1": 2, "ekg1": 2, "ekg2": 2, "ecgi": 3, "i": 3, "iii": 3,
        "ecgiii": 3, "ecg3": 3, "avr": 5, "avl": 5, "avf": 5, "mcl1": 4, "mcl": 4,
        "v": 4, "v1": 4, "v2": 4, "v3": 4, "v4": 4, "v5": 4, "v6": 4, "ecgv": 4, "ecgl": 2,
        "ecgr": 2, "ecgla": 2, "ecgra": 2, "ecgll": 2, "ecg12": 1, "ecg11": 2, "ecgleadi": 3,
    },
    "ppg": {
        "pleth": 0, "ppg": 0, "plethysmogram": 0, "photoplethysmogram": 0, "spo2pleth": 1,
        "plethwave": 0, "pulseox": 2, "oxipleth": 1, "pulsewave": 2, "pulsepleth": 1,
    },
    "nasal": {
        # nasal pressure (cannula) first, then airflow and thermistors
        "nasalpressure": 0, "naspres": 0, "nasalp": 0, "pres": 0, "pressure": 2, "cannula": 0,
        "cannulaflow": 0, "xflow": 0, "pflow": 0, "ptaf": 0, "nasalflow": 0, "respn": 1,
        "flow": 1, "airflow": 1, "newair": 1, "newairflow": 1, "flowpatient": 1, "nasal": 1,
        "oronasal": 2, "oronasalflow": 2, "nasaloral": 2, "oralnasal": 2, "nasaltherm": 2,
        "nasaltemp": 2, "thermistor": 2, "therm": 2, "oronasaltherm": 2, "auxac": 3, "aux": 4,
    },
    "thor": {
        "thor": 0, "thorax": 0, "thoracic": 0, "thorres": 0, "thoraxres": 0, "chest": 0,
        "thoraxip": 0, "thoracicip": 0, "thorip": 0, "respbeltthorax": 0, "respthorax": 0,
        "ripthorax": 0, "ripthor": 0, "thoraxbelt": 0, "chestbelt": 0, "effortthorax": 0,
        "effortthor": 0, "efforttho": 0, "tho": 1, "effortthoracic": 0, "effortchest": 0, "thoraxeffort": 0, "chesteffort": 0,
        "respc": 1, "resp": 1, "respiration": 2, "impedance": 2, "respimp": 1, "respimpedance": 1,
        "ip": 2, "thoraciceffort": 0, "thorrip": 0, "thoraxrip": 0,
        # a single respiration belt (research ECG + belt sets): usually thoracic
        "respirationbelt": 2, "respbelt": 2, "belt": 3, "breathingbelt": 2, "respeffort": 2,
        "respiratoryeffort": 2, "rip": 2,
    },
    "abdo": {
        "abdo": 0, "abdomen": 0, "abdominal": 0, "abd": 0, "abdores": 0, "abdomenres": 0,
        "respa": 1, "respbeltabdomen": 0, "respabdomen": 0, "ripabdomen": 0, "ripabdo": 0,
        "ripabd": 0, "abdomenbelt": 0, "effortabdomen": 0, "effortabd": 0, "effortab": 0, "effortabdo": 0,
        "abdomeneffort": 0, "abdominaleffort": 0, "abdorip": 0, "abdomenrip": 0,
    },
}

# Keyword patterns for free-text labels (searched in the normalised label), rank 6+.
_PATTERNS: list[tuple[str, re.Pattern, int]] = [
    ("ecg", re.compile(r"ecg|ekg|electrocardio"), 6),
    ("ppg", re.compile(r"pleth|ppg"), 6),
    ("thor", re.compile(r"thor|chest|rib"), 6),
    ("abdo", re.compile(r"abd"), 6),
    ("nasal", re.compile(r"nasal|nose|cannula|airflow|therm|oronasal|flow"), 7),
]

# Labels that contain a keyword but are not the signal: lead-off flags, derived rates, saturation.
_EXCLUDE = re.compile(r"off$|status|rate$|^hr|^dhr|spo2$|sao2|^pulse$|snore|sum$|position|pos$|temp(?!erat)")


def normalise_label(label: str) -> str:
    """Lower-case a label and keep only letters and digits (``'Resp Belt-Thorax'`` -> ``'respbeltthorax'``)."""
    return re.sub(r"[^a-z0-9]", "", str(label).lower())


def role_of(label: str) -> tuple[str, int] | None:
    """Role and rank of one label, or None when it carries no known role.

    Parameters
    ----------
    label : str
        A channel label as stored in a file.

    Returns
    -------
    (role, rank) or None
        ``rank`` orders candidates: 0 is a canonical name, 6+ a keyword match in free text.
    """
    key = normalise_label(label)
    if not key:
        return None
    for role in ROLES:
        if key in _ALIASES[role]:
            return role, _ALIASES[role][key]
    if _EXCLUDE.search(key):
        return None
    for role, pat, rank in _PATTERNS:
        if pat.search(key):
            # "flow" alone would catch e.g. "Flow limitation"; ranks keep real channels ahead
            return role, rank
    return None


@dataclass
class RoleChoice:
    """The channel chosen for one role, and why.

    Attributes
    ----------
    role : str
    label : str
        The chosen channel label.
    source : str
        ``"alias"``, ``"pattern"`` or ``"user"`` (``--channel`` override).
    alternatives : list of str
        Other channels that also fit the role (not chosen).
    ambiguous : bool
        True when another channel fitted equally well (same rank): the choice was by file order.
    """

    role: str
    label: str
    source: str
    alternatives: list[str] = field(default_factory=list)
    ambiguous: bool = False

    @property
    def note(self) -> str:
        """A short human note about ambiguity (empty when there is none)."""
        if not self.alternatives:
            return ""
        kind = "ambiguous, took the first of" if self.ambiguous else "preferred over"
        return f"{kind} {', '.join(self.alternatives)} (override with --channel {self.role}=LABEL)"


#: separates the labels of an alias list in ``--channel ROLE=A|B|C``
ALIAS_SEP = "|"


def parse_overrides(items: list[str] | None) -> dict[str, str]:
    """Parse ``["ecg=EKG", "thor=Chest belt"]`` into ``{"ecg": "EKG", "thor": "Chest belt"}``.

    A value may be an alias list, ``"ecg=ECG1|EKG|ECG"``: the first of these labels that a
    recording has is used (:func:`detect_roles`). A role given twice (``-c ecg=ECG1 -c ecg=EKG``)
    adds to its list, in order.

    Raises
    ------
    InputError
        On a malformed item, an empty label in a list or an unknown role (exit 2).
    """
    out: dict[str, str] = {}
    for item in items or []:
        role, sep, label = str(item).partition("=")
        role = role.strip().lower()
        if not sep or not label.strip():
            raise InputError(f"--channel expects ROLE=LABEL, got '{item}'", exit_code=2)
        if role not in ROLES:
            raise InputError(f"--channel: unknown role '{role}' (roles: {', '.join(ROLES)})", exit_code=2)
        names = [n.strip() for n in label.split(ALIAS_SEP)]
        if not all(names):
            raise InputError(f"--channel {item}: empty label in the list (use ROLE=A|B|C)", exit_code=2)
        out[role] = ALIAS_SEP.join([*out[role].split(ALIAS_SEP), *names] if role in out else names)
    return out


def _find_label(want: str, labels: list[str], norm: dict[str, str]) -> str | None:
    """The label of ``labels`` that ``want`` names: exact first, then case/punctuation-insensitive.

    ``want`` may be an alias list ``A|B|C``: the first alias present wins (a label that contains
    the separator itself is matched whole first).
    """
    for name in [want, *want.split(ALIAS_SEP)] if ALIAS_SEP in want else [want]:
        name = name.strip()
        label = name if name in labels else norm.get(normalise_label(name))
        if label is not None:
            return label
    return None


def detect_roles(labels: list[str], overrides: dict[str, str] | None = None,
                 path: str | None = None) -> dict[str, RoleChoice]:
    """Assign roles to channels from their labels.

    Parameters
    ----------
    labels : list of str
        Channel labels in file order.
    overrides : dict, optional
        ``{role: label}`` forced by the user; the label must exist (compared normalised). A label
        ``"A|B|C"`` is an alias list: the first one present is used, and one must be.
    path : str, optional
        The recording the labels come from, named in the error message.

    Returns
    -------
    dict of str to RoleChoice
        Only roles that were found. A channel serves at most one role.

    Raises
    ------
    InputError
        When an override names a channel that is not in the file.
    """
    overrides = overrides or {}
    norm = {normalise_label(lab): lab for lab in labels}
    result: dict[str, RoleChoice] = {}
    used: set[str] = set()
    for role, want in overrides.items():
        label = _find_label(str(want), labels, norm)
        if label is None:
            what = "none of these channels" if ALIAS_SEP in str(want) else "no such channel"
            raise InputError(
                f"--channel {role}={want}: {what} (channels: {', '.join(labels) or 'none'})",
                path,
            )
        result[role] = RoleChoice(role, label, "user")
        used.add(label)
    candidates: dict[str, list[tuple[int, int, str]]] = {r: [] for r in ROLES}
    for pos, lab in enumerate(labels):
        if lab in used:
            continue
        hit = role_of(lab)
        if hit is not None:
            candidates[hit[0]].append((hit[1], pos, lab))
    for role in ROLES:
        if role in result or not candidates[role]:
            continue
        ranked = sorted(candidates[role])
        best_rank, _, best = ranked[0]
        others = [lab for _, _, lab in ranked[1:]]
        tie = any(rank == best_rank for rank, _, _ in ranked[1:])
        result[role] = RoleChoice(role, best, "alias" if best_rank < 6 else "pattern", others, tie)
    return result
