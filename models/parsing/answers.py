"""Reading a task's answer text against its vocabulary: phase, triplets, CVS criteria, action.

Each reader takes the answer text and returns the normalized value and warnings; none raises. Lookup tables
are built once per vocabulary (vocabularies are cached by ``load``) and kept here by identity.
"""

from __future__ import annotations

import re
from functools import cache

from models.vocabularies import Vocabulary, load

_SHOW = 80  # characters of an answer quoted in a warning


def quote(text: str) -> str:
    text = " ".join(text.split())
    return repr(text if len(text) <= _SHOW else text[:_SHOW - 3] + "...")


def squash(text: str) -> str:
    """Lower case letters and digits only; "Calot's" reads as "calots" (as the vocabularies squash)."""
    return _NOT_ALNUM.sub("", text.lower().replace("'s", "s"))


_NOT_ALNUM = re.compile(r"[^a-z0-9]+")
_WORD = re.compile(r"[a-z0-9_]+")


def _clean(text: str) -> str:
    text = text.strip().strip("*_`\"' \t\n").strip()
    return text[:-1].rstrip() if text.endswith(".") else text


# --- phase ----------------------------------------------------------------------------------------

# "Phase B", "option (C)", "the answer is B", "(B)": an upper-case letter after a cue word or in brackets.
_LETTER_CUE = re.compile(r"(?:(?i:\b(?:phase|option|choice|answer)(?:[ \t]{1,3}is)?)"
                         r"[ \t]{0,3}[:\-]?[ \t]{0,3}\(?|\()([A-Z])(?:\)|(?![\w']))")


@cache
def _phase_keys(vocab: Vocabulary) -> tuple[tuple[str, str], ...]:
    """(squashed name, phase id) for every id, name and alias of at least 4 characters, longest first."""
    keys = {}
    for phase in vocab.phases:
        for name in (phase.id, phase.name, *phase.aliases):
            key = squash(name)
            if len(key) >= 4:
                keys.setdefault(key, phase.id)
    return tuple(sorted(keys.items(), key=lambda item: -len(item[0])))


def read_phase(answer: str, vocab: Vocabulary) -> tuple[str | None, list[str]]:
    """The phase id an answer names: an id, name or alias ("B", "(B) Dissection of Calot's Triangle",
    "Phase B", "the phase is Calot triangle dissection.")."""
    if not vocab.phases:  # Vocabulary.normalize_phase indexes phases[0]
        return None, [f"vocabulary {vocab.name} has no phases"]
    text = _clean(answer)
    if len(text.split()) <= 8:
        found = vocab.normalize_phase(text)
        if found:
            return found, []
    ids = {phase.id for phase in vocab.phases}
    letters = [m.group(1) for m in _LETTER_CUE.finditer(text) if m.group(1) in ids]
    if letters:
        return letters[-1], []
    squashed = squash(text)
    last_seen: dict[str, int] = {}
    for key, phase_id in _phase_keys(vocab):
        at = squashed.rfind(key)
        if at >= 0:
            last_seen[phase_id] = max(at, last_seen.get(phase_id, -1))
            squashed = squashed.replace(key, "#" * len(key))  # a longer name hides the shorter ones inside it
    if not last_seen:
        return None, [f"no phase recognized in answer {quote(answer)}"]
    chosen = max(last_seen, key=last_seen.get)
    if len(last_seen) > 1:
        named = ", ".join(sorted(last_seen))
        return chosen, [f"answer names several phases ({named}); took the last named, {chosen}"]
    return chosen, []


_PHASE_STATED = re.compile(r"\bphase[ \t]{1,3}(?:is|=|:)[ \t]{0,3}(?P<value>[^.\n;]{1,80})", re.IGNORECASE)


def stated_phase(text: str | None, vocab: Vocabulary) -> tuple[str | None, str | None]:
    """(phase id, words) of the last "the phase is X" in reasoning whose X names a phase of ``vocab``."""
    for match in reversed(list(_PHASE_STATED.finditer(text or ""))[-20:]):
        found, _ = read_phase(match.group("value"), vocab)
        if found:
            return found, match.group("value").strip()
    return None, None


# --- triplets -------------------------------------------------------------------------------------

_TRIPLET_SPLIT = re.compile(r";|\n|\][ \t]{0,4},[ \t]{0,4}\[|\)[ \t]{0,4},[ \t]{0,4}\("
                            r"|>[ \t]{0,4},[ \t]{0,4}<")
_ITEM_PREFIX = re.compile(r"^[ \t]{0,8}(?:[-*•]|\d{1,3}[.)])[ \t]{0,4}")
_TRIPLET_NOISE = re.compile(r"[^a-z0-9_,]+")
_STOPWORDS = frozenset({"the", "a", "an", "of", "on", "with", "is", "are", "to", "and", "its", "at", "into",
                        "from"})
_NONE_ANSWERS = frozenset({"none", "null", "no triplet", "no triplets", "nothing", "n/a"})
_MAX_TRIPLETS = 100


@cache
def _triplet_table(instruments: tuple[str, ...], verbs: tuple[str, ...],
                   targets: tuple[str, ...]) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    inst = {}
    for name in instruments:
        inst.update({name: name, name + "s": name, name.rstrip("s"): name})
    synonyms = {"clip_applier": "clipper", "clip_applicator": "clipper", "suction": "irrigator",
                "hook_electrode": "hook", "scissor": "scissors"}
    inst.update({k: v for k, v in synonyms.items() if v in instruments})
    verb = {}
    for name in verbs:
        if name.startswith("null"):
            verb.update({name: name, "null": name, "none": name, "no_action": name, "idle": name})
            continue
        stem = name.removesuffix("e")
        double = name + name[-1] if re.fullmatch(r".*[^aeiou][aeiou][^aeiouwy]", name) else name
        for form in (name, name + "s", stem + "ed", stem + "ing", double + "ing", double + "ed", name + "es"):
            verb.setdefault(form, name)
    target = {}
    for name in targets:
        target[name] = name
        if name.startswith("null"):
            target.update({"null": name, "none": name, "no_target": name})
    synonyms = {"abdominal_wall": "abdominal_wall_cavity", "specimen": "specimen_bag", "bag": "specimen_bag",
                "vessel": "blood_vessel"}
    target.update({k: v for k, v in synonyms.items() if v in targets})
    return inst, verb, target


def read_triplets(answer: str, vocab: Vocabulary | None) -> tuple[list[tuple[str, str, str]], list[str]]:
    """Triplets "instrument verb target" separated by ";" (or lines), each also as "a, b, c" or "(a, b, c)",
    normalized against the instrument, verb and target lists of ``vocab`` (CholecT50 when it has none)."""
    if _clean(answer).lower() in _NONE_ANSWERS:
        return [], []
    lists = vocab.lists if vocab is not None and "instruments" in vocab.lists else load("cholect50").lists
    tables = _triplet_table(lists["instruments"], lists["verbs"], lists["targets"])
    triplets: list[tuple[str, str, str]] = []
    warnings: list[str] = []
    read = 0
    for part in _TRIPLET_SPLIT.split(answer):
        part = _ITEM_PREFIX.sub("", part)
        if not part.strip(" \t[](){}<>.,\"'`*"):
            continue
        if read >= _MAX_TRIPLETS:
            warnings.append(f"more than {_MAX_TRIPLETS} triplets; read the first {_MAX_TRIPLETS}")
            break
        read += 1
        triplet, problem = _read_triplet(part, tables)
        if problem:
            warnings.append(problem)
        if triplet:
            triplets.append(triplet)
    if not triplets and not warnings:
        warnings.append(f"no triplet recognized in answer {quote(answer)}")
    return triplets, warnings


def _read_triplet(part: str, tables) -> tuple[tuple[str, str, str] | None, str | None]:
    inst_table, verb_table, target_table = tables
    text = _TRIPLET_NOISE.sub(" ", part.lower().replace("-", "_")).strip()
    if text.count(",") == 2:
        fields = ["_".join(w for w in f.split() if w not in _STOPWORDS) for f in text.split(",")]
        words = None
    else:
        words = [w for w in _WORD.findall(text) if w not in _STOPWORDS]
        fields = None
    if fields is None:
        fields = _split_words(words, inst_table, verb_table)
    if fields is None or not all(fields):
        return None, f"could not read triplet {quote(part)}"
    instrument, verb, target = fields
    read = (inst_table.get(instrument), verb_table.get(verb), target_table.get(target))
    kinds = ("instrument", "verb", "target")
    unknown = [f"{kind} {value!r}" for kind, value, known in zip(kinds, fields, read, strict=True)
               if known is None]
    triplet = tuple(known or value for value, known in zip(fields, read, strict=True))
    problem = f"unknown {', '.join(unknown)} in triplet {quote(part)}" if unknown else None
    return triplet, problem


def _split_words(words: list[str], inst_table, verb_table) -> list[str] | None:
    """Words -> [instrument, verb, target]: the longest known instrument (up to two words), then the
    longest known verb, then the rest as the target."""
    if len(words) < 3:
        return None
    inst_len = 2 if "_".join(words[:2]) in inst_table else 1
    verb_len = 2 if "_".join(words[inst_len:inst_len + 2]) in verb_table else 1
    if len(words) < inst_len + verb_len + 1:
        return None
    return ["_".join(words[:inst_len]), "_".join(words[inst_len:inst_len + verb_len]),
            "_".join(words[inst_len + verb_len:])]


# --- critical view of safety ----------------------------------------------------------------------

_YES = r"yes|true|achieved|met|present|satisfied|1"
_NO = r"no|false|not[ \t]{1,3}(?:achieved|met|present|satisfied)|absent|0"
_CVS_CRITERION = re.compile(
    r"(?P<key>\bC[ \t]{0,2}[123]\b|\bcriterion[ \t]{0,2}[123]\b|two[ \t]{1,3}structures"
    r"|hepatocystic[ \t]{1,3}triangle|calot'?s[ \t]{1,3}triangle|cystic[ \t]{1,3}plate|lower[ \t]{1,3}third)"
    rf"[^\n;:=]{{0,80}}?[:=\-][ \t]{{0,4}}[*_\"']{{0,2}}[ \t]{{0,2}}(?P<value>{_NO}|{_YES})\b", re.IGNORECASE)
_CVS_OVERALL = re.compile(
    r"(?:\boverall(?:[ \t]{1,3}cvs)?|\bcvs|critical[ \t]{1,3}view[ \t]{1,3}of[ \t]{1,3}safety)"
    rf"[^\n;:=.]{{0,30}}?(?:[:=\-]|\bis\b|\bwas\b)[ \t]{{0,4}}[*_\"']{{0,2}}[ \t]{{0,2}}"
    rf"(?P<value>{_NO}|{_YES})\b",
    re.IGNORECASE)
_YES_NO = re.compile(r"\b(yes|no)\b", re.IGNORECASE)
_CRITERION_IDS = {"twostructures": "C1", "hepatocystictriangle": "C2", "calotstriangle": "C2",
                  "calottriangle": "C2", "cysticplate": "C3", "lowerthird": "C3"}


def _truth(value: str) -> bool:
    return re.fullmatch(_YES, value.strip().lower()) is not None


def read_cvs(answer: str) -> tuple[dict[str, bool], list[str]]:
    """C1-C3 from "C1: yes; C2: no; ..." (or criterion names, or three bare yes/no in order), a single bare
    yes/no as ``answer``, and ``overall``: stated, or true only when all three criteria hold."""
    cvs: dict[str, bool] = {}
    warnings: list[str] = []
    for match in _CVS_CRITERION.finditer(answer):
        key = squash(match.group("key"))
        criterion = "C" + key[-1] if key[-1] in "123" else _CRITERION_IDS[key]
        cvs.setdefault(criterion, _truth(match.group("value")))
    stated = _CVS_OVERALL.search(answer)
    if not cvs:
        bare = _YES_NO.findall(answer[:2000])
        if len(bare) == 3 and len(answer) < 60:
            cvs.update({f"C{i}": word.lower() == "yes" for i, word in enumerate(bare, start=1)})
        elif bare and stated is None and _YES_NO.match(_clean(answer)):
            cvs["answer"] = bare[0].lower() == "yes"
    if all(f"C{i}" in cvs for i in (1, 2, 3)):
        cvs["overall"] = all(cvs[f"C{i}"] for i in (1, 2, 3))
        if stated is not None and _truth(stated.group("value")) != cvs["overall"]:
            warnings.append(f"stated overall CVS {stated.group('value')!r} disagrees with the criteria")
    elif stated is not None:
        cvs["overall"] = _truth(stated.group("value"))
    if not cvs:
        warnings.append(f"no CVS criterion recognized in answer {quote(answer)}")
    return cvs, warnings


# --- action ---------------------------------------------------------------------------------------

_ACTION_INDEX = re.compile(r"^(?:action|class|label)?[ \t]{0,3}[#:]?[ \t]{0,3}(\d{1,2})\b", re.IGNORECASE)


@cache
def _action_table(actions: tuple[str, ...]) -> tuple[dict[str, str], list[tuple[str, frozenset[str]]], dict]:
    """Exact keys (names and "/" alternatives, squashed without stop words), each action's words, and
    how many actions share each word."""
    exact: dict[str, str] = {}
    words: list[tuple[str, frozenset[str]]] = []
    frequency: dict[str, int] = {}
    for name in actions:
        content = [w for w in _WORD.findall(name.lower().replace("-", " ")) if w not in _STOPWORDS]
        exact[squash(" ".join(content))] = name
        if "/" in name:
            head, _, tail = name.partition("/")
            rest = tail.split(" ", 1)[1] if " " in tail else ""
            for alternative in (f"{head} {rest}", tail):
                words_of = [w for w in _WORD.findall(alternative.lower()) if w not in _STOPWORDS]
                exact[squash(" ".join(words_of))] = name
        unique = frozenset(w for w in content if w and w not in _STOPWORDS)
        words.append((name, unique))
        for word in unique:
            frequency[word] = frequency.get(word, 0) + 1
    return exact, words, frequency


def _same_word(a: str, b: str) -> bool:
    n = min(4, len(a), len(b))
    return n >= 3 and a[:n] == b[:n]


def read_action(answer: str, vocab: Vocabulary | None) -> tuple[str | None, list[str]]:
    """The action an answer names: its index, its name (any case, with or without articles), or - for a
    short answer - the action whose distinctive words it uses ("tying the knot")."""
    actions = vocab.lists["actions"] if vocab is not None and "actions" in vocab.lists else \
        load("sar_rarp50").lists["actions"]
    text = _clean(answer)
    exact, words, frequency = _action_table(actions)
    index = _ACTION_INDEX.match(text)
    if index and (text == index.group(0) or len(text.split()) <= 3) and int(index.group(1)) < len(actions):
        return actions[int(index.group(1))], []
    content = [w for w in _WORD.findall(text.lower().replace("-", " ")) if w not in _STOPWORDS]
    key = squash(" ".join(content))
    if key in exact:
        return exact[key], []
    for name_key in sorted(exact, key=len, reverse=True):
        if len(name_key) >= 6 and name_key in key:
            return exact[name_key], []
    if 0 < len(content) <= 12:
        scores = {name: sum(1 / frequency[w] for w in name_words if any(_same_word(w, c) for c in content))
                  for name, name_words in words}
        best = max(scores.values())
        winners = [name for name, score in scores.items() if score == best]
        if best >= 1 and len(winners) == 1:
            return winners[0], []
    return None, [f"no action recognized in answer {quote(answer)}"]
