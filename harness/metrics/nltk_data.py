"""NLTK data without the NLTK downloader (no network here): WordNet 3.0 from Debian's
`wordnet-base` + `wordnet-sense-index` packages, and an untrained Punkt model for `word_tokenize`.

`harness setup nltk` builds the folder once; metrics then find it through `nltk.data.path`.
"""
from __future__ import annotations

import gzip
import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .. import paths
from ..errors import HarnessError

DEBIAN_WORDNET = Path("/usr/share/wordnet")  # where Debian's wordnet-base installs the database
DEBIAN_LEXNAMES_MAN = Path("/usr/share/man/man5/lexnames.5WN.gz")
_PUNKT_FILES = ("collocations.tab", "sent_starters.txt", "abbrev_types.txt", "ortho_context.tab")
_SYNTACTIC_CATEGORY = {"noun": 1, "verb": 2, "adj": 3, "adv": 4}
# The 45 lexicographer files of WordNet 3.0 in file-number order (lexnames(5WN)); used only when the
# manual page was not installed (slim images drop /usr/share/man).
_LEXNAMES_FALLBACK = (
    "adj.all adj.pert adv.all noun.Tops noun.act noun.animal noun.artifact noun.attribute noun.body "
    "noun.cognition noun.communication noun.event noun.feeling noun.food noun.group noun.location "
    "noun.motive noun.object noun.person noun.phenomenon noun.plant noun.possession noun.process "
    "noun.quantity noun.relation noun.shape noun.state noun.substance noun.time verb.body verb.change "
    "verb.cognition verb.communication verb.competition verb.consumption verb.contact verb.creation "
    "verb.emotion verb.motion verb.perception verb.possession verb.social verb.stative verb.weather adj.ppl"
).split()
MARKER = "esc-harness-source.json"


def lexnames_from_man(man_page: Path) -> list[str]:
    """Lexicographer file names in number order, read from the table of the lexnames(5WN) page."""
    rows, in_table = [], False
    for line in gzip.open(man_page, "rt", encoding="utf-8", errors="replace"):
        line = line.rstrip("\n")
        if line == "_":
            in_table = True
        elif line.startswith(".TE"):
            in_table = False
        elif in_table and "\t" in line:
            number, name = line.split("\t")[:2]
            rows.append((int(number), name.strip()))
    return [name for _, name in sorted(rows)]


def lexnames_text(names: list[str]) -> str:
    return "".join(f"{i:02d}\t{name}\t{_SYNTACTIC_CATEGORY[name.split('.')[0]]}\n" for i, name in enumerate(names))


def install(wordnet_src: Path = DEBIAN_WORDNET, man_page: Path = DEBIAN_LEXNAMES_MAN, target: Path | None = None) -> Path:
    target = target or paths.nltk_data_dir()
    if not (wordnet_src / "data.noun").is_file():
        raise HarnessError(
            f"{wordnet_src}: no WordNet database; install Debian's packages first "
            "(`apt-get install wordnet-base wordnet-sense-index`) or pass --wordnet-dir."
        )
    wordnet = target / "corpora" / "wordnet"
    if wordnet.exists():
        shutil.rmtree(wordnet)
    wordnet.mkdir(parents=True)
    for f in sorted(wordnet_src.iterdir()):
        if f.is_file():
            shutil.copyfile(f, wordnet / f.name)  # copies: NLTK's reader does not follow every link layout
    names = lexnames_from_man(man_page) if man_page.is_file() else list(_LEXNAMES_FALLBACK)
    if len(names) != 45:
        raise HarnessError(f"{man_page}: expected 45 lexicographer files, read {len(names)}.")
    (wordnet / "lexnames").write_text(lexnames_text(names), encoding="utf-8")
    punkt = target / "tokenizers" / "punkt_tab" / "english"
    punkt.mkdir(parents=True, exist_ok=True)
    for name in _PUNKT_FILES:
        (punkt / name).write_text("", encoding="utf-8")  # untrained Punkt: no abbreviation list
    (target / MARKER).write_text(
        json.dumps({"wordnet": f"WordNet 3.0 from {wordnet_src} (Debian wordnet-base)", "lexnames": "manual page" if man_page.is_file() else "built-in table", "punkt": "untrained punkt_tab/english"}),
        encoding="utf-8",
    )
    return target


def activate() -> None:
    """Make the harness's NLTK folder visible to NLTK (after any folder the user configured)."""
    import nltk

    folder = str(paths.nltk_data_dir())
    if folder not in nltk.data.path:
        nltk.data.path.append(folder)


def search_path() -> list[str]:
    """nltk.data.path as NLTK has it after `activate()`, without importing NLTK where it is not imported yet
    (the import costs ~2 s of scipy.stats, sklearn and the rest, which a run whose values are all in the score
    cache never needs): NLTK's own start-up list (nltk/data.py: $NLTK_DATA, ~/nltk_data, the prefix's and the
    system's folders), then the harness's folder. Once NLTK is imported, its list as it is (a user may change it)."""
    import os
    import sys

    if "nltk" in sys.modules or os.name == "nt":  # (Windows: NLTK adds registry-dependent folders)
        import nltk

        activate()
        return list(nltk.data.path)
    found = [os.path.expanduser(d) for d in os.environ.get("NLTK_DATA", "").split(os.pathsep) if d]
    if "APPENGINE_RUNTIME" not in os.environ and os.path.expanduser("~/") != "~/":
        found.append(os.path.expanduser("~/nltk_data"))
    found += [os.path.join(sys.prefix, "nltk_data"), os.path.join(sys.prefix, "share", "nltk_data"),
              os.path.join(sys.prefix, "lib", "nltk_data"), "/usr/share/nltk_data", "/usr/local/share/nltk_data",
              "/usr/lib/nltk_data", "/usr/local/lib/nltk_data"]
    folder = str(paths.nltk_data_dir())
    return found if folder in found else found + [folder]


def find(resource: str) -> Path:
    """The folder of `resource` (e.g. "corpora/wordnet") as `nltk.data.find` gives it: the first folder of the
    search path holding it (NLTK looks into zip files only where no folder has it). Where a zip file stands in
    the path, or nothing is found, NLTK's own find answers (LookupError: not found)."""
    for folder in search_path():
        if folder.endswith(".zip") and Path(folder).is_file():
            break  # a zip file as a search folder: NLTK's rules for reading into it
        candidate = Path(folder) / resource.strip("/")
        if candidate.exists():
            return candidate
    import nltk

    activate()
    return Path(str(nltk.data.find(resource)))


def nltk_version() -> str:
    from importlib.metadata import version

    return version("nltk")


def describe() -> dict[str, str]:
    """What NLTK data is in use: recorded with METEOR and token-based metrics."""
    info = {"nltk": nltk_version()}
    for resource in ("corpora/wordnet", "tokenizers/punkt_tab/english"):
        try:
            location = find(resource)
        except LookupError:
            info[resource] = "missing"
            continue
        marker = location.parents[1] / MARKER if resource.startswith("corpora") else location.parents[2] / MARKER
        origin = json.loads(marker.read_text()) if marker.is_file() else {}
        info[resource] = origin.get("wordnet" if resource.startswith("corpora") else "punkt", "user-provided NLTK data")
    return info


def wordnet_version() -> str:
    """WordNet's version as NLTK's reader gives it (`wordnet.get_version()`: the header of data.adj, same pattern),
    read without loading the database (seconds): a run whose METEOR values are all cached never loads it."""
    import re

    data_adj = find("corpora/wordnet") / "data.adj"
    if data_adj.is_file():  # (a zipped corpus: asked of the reader below)
        with open(data_adj, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                match = re.search(r"Word[nN]et (\d+\+?|\d+\.\d+) Copyright", line)
                if match is not None:
                    return match.group(1)
    activate()
    from nltk.corpus import wordnet

    return wordnet.get_version()


def require(resource: str) -> None:
    try:
        find(resource)
    except LookupError:
        raise HarnessError(
            f"NLTK resource '{resource}' not found; run `harness setup nltk` (needs Debian's wordnet-base and "
            "wordnet-sense-index) or set NLTK_DATA to a folder that has it."
        ) from None


def lazy_wordnet() -> Any:
    """NLTK's WordNet reader as METEOR uses it (`synsets(word)`: the same synsets in the same order), without
    its start-up: NLTK parses all 147k index entries, scans data.adj for satellites and maps WordNet 3.0 onto
    itself for the multilingual data (two reads of index.sense), ~4 s, for the few hundred words a run looks up.
    Here each index entry is parsed when a word first needs it, with NLTK's own parsing rules, and the satellite
    offsets of an adjective are read from data.adj at those offsets; everything else is NLTK's code."""
    import warnings

    import nltk
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    activate()

    class LazyWordNet(WordNetCorpusReader):
        def _scan_satellites(self) -> None:
            self.satellite_offsets = _SatelliteOffsets(self)

        def _load_lemma_pos_offset_map(self) -> None:
            self._lemma_pos_offset_map = _LazyLemmaIndex(self)

        def map_wn(self, version: str = "wordnet") -> None:
            return None  # the WordNet 3.0 mapping serves only the multilingual (OMW) look-ups

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "multilingual functions are not available": METEOR needs none
        return LazyWordNet(nltk.data.find("corpora/wordnet"), None)


class _SatelliteOffsets:
    """`offset in satellites` as NLTK's full scan of data.adj answers it: the synset at that offset has type 's'."""

    def __init__(self, reader: Any) -> None:
        self._reader = reader
        self._known: dict[int, bool] = {}

    def __contains__(self, offset: int) -> bool:
        if offset not in self._known:
            data = self._reader._data_file("a")
            data.seek(offset)
            line = data.readline()
            data.seek(0)
            fields = line.strip().split()
            self._known[offset] = (not line.startswith(" ") and len(fields) >= 3 and fields[0] == f"{offset:08d}" and fields[2] == "s")
        return self._known[offset]


class _LazyLemmaIndex(Mapping):
    """lemma -> pos -> synset offsets (NLTK's `_lemma_pos_offset_map`), each lemma's lines parsed on first use."""

    def __init__(self, reader: Any) -> None:
        self._reader = reader
        self._lines: dict[str, list[str]] = {}
        for suffix in reader._FILEMAP.values():
            with reader.open(f"index.{suffix}") as fp:
                text = fp.read()  # at once: NLTK's stream reader is slow line by line
            for line in text.splitlines():
                if not line.startswith(" "):
                    self._lines.setdefault(line.split(" ", 1)[0], []).append(line)
        self._parsed: dict[str, dict[str, list[int]]] = {}

    def __contains__(self, lemma: object) -> bool:
        return lemma in self._lines

    def __getitem__(self, lemma: str) -> dict[str, list[int]]:
        if lemma not in self._parsed:
            self._parsed[lemma] = _parse_entries(self._reader, self._lines.get(lemma, []))
        return self._parsed[lemma]

    def __iter__(self):
        return iter(self._lines)

    def __len__(self) -> int:
        return len(self._lines)


def _parse_entries(reader: Any, lines: list[str]) -> dict[str, list[int]]:
    """A lemma's index lines as NLTK's `_load_lemma_pos_offset_map` reads them: pos -> synset offsets, and for
    an adjective also its satellites (pos 's', index.adj's order kept, possibly empty)."""
    entries: dict[str, list[int]] = {}
    for line in lines:
        fields = line.split()
        pos, n_synsets = fields[1], int(fields[2])
        n_pointers = int(fields[3])
        offsets = [int(f) for f in fields[4 + n_pointers + 2 : 4 + n_pointers + 2 + n_synsets]]
        entries[pos] = offsets
        if pos == "a":
            entries["s"] = [o for o in offsets if o in reader.satellite_offsets]
    return entries
