"""Whether the short's sources can support a proposed topic: the theme stage's check before it settles on one.

Responsible for telling, for a topic the model proposed for a category,
whether the texts the script would be written from support it: the user's
`--source`s when given (a ZIM archive searched for the topic), else the
wiki's articles for it. A topic is supported when one passage holds most of
its content words and every number it states (stages/grounding/checks.py's test for
a sentence). Also the topic the user's own sources are about (the title of the
source whose passages fit the category best), for when no proposal was
supported. Not responsible for proposing topics (stages/theme/stage.py) nor for
reading sources (stages/grounding/sources.py, stages/grounding/wiki.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from aishorts.stages.common.context import StageError
from aishorts.stages.grounding.checks import source_numbers, support
from aishorts.stages.grounding.passages import bm25_scores, split_passages
from aishorts.stages.grounding.sources import Source, SourceProblem, read_source
from aishorts.stages.grounding.wiki import api_url, lookup


@dataclass(frozen=True)
class Verdict:
    supported: bool | None
    """None: nothing to check against (the wiki did not answer): any topic will do, asking again is no use."""
    why: str


@dataclass
class TopicSupport:
    sources: list[str]
    wiki_url: str
    language: str
    _read: dict[str, list[Source]] = field(default_factory=dict)

    @property
    def active(self) -> bool:
        """Whether there is anything to check a topic against."""
        return bool(self.sources) or api_url(self.wiki_url, self.language) is not None

    @property
    def where(self) -> str:
        return "your sources" if self.sources else "the wiki"

    def check(self, topic: str) -> Verdict:
        if self.sources:
            texts = self._user_texts(topic)
        else:
            found = lookup(topic, self.wiki_url, self.language)
            if not found.answered:
                return Verdict(None, found.why)
            texts = found.sources
        passages = split_passages([s.text for s in texts])
        if not passages:
            return Verdict(False, f"{self.where} have nothing on it")
        verdict = support(topic, passages, source_numbers([p.text for p in passages]))
        title = texts[passages[verdict.passage].source].title
        said = f'{verdict.share:.0%} of its words in one passage of "{title}"'
        if verdict.missing_numbers:
            said += f"; {', '.join(verdict.missing_numbers)} not in it"
        return Verdict(verdict.supported, said)

    def source_topic(self, category: str) -> str | None:
        """The title of the user's source whose passages fit `category` best; None without user sources."""
        if not self.sources:
            return None
        texts = self._user_texts(category)
        passages = split_passages([s.text for s in texts])
        if not passages:
            return None
        scores = bm25_scores(category, passages)
        best = max(range(len(passages)), key=lambda i: scores[i])  # the first passage when none mentions it
        return texts[passages[best].source].title.strip() or None

    def _user_texts(self, topic: str) -> list[Source]:
        """The user's sources for `topic`: files and pages read once, ZIM archives searched for each topic."""
        texts: list[Source] = []
        for ref in self.sources:
            if Path(ref).suffix.lower() == ".zim" and not ref.startswith(("http://", "https://")):
                if not Path(ref).is_file():
                    raise StageError(f"source {ref}: no such file")
                try:
                    texts.extend(read_source(ref, topic))
                except SourceProblem:
                    continue  # the archive has no article for this topic: it supports another one, perhaps
                continue
            if ref not in self._read:
                try:
                    self._read[ref] = read_source(ref, topic)
                except SourceProblem as exc:
                    raise StageError(str(exc)) from None
            texts.extend(self._read[ref])
        return texts
