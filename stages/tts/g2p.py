"""Text to Kokoro phonemes, and sentences to caption words, for each language Kokoro speaks.

Responsible for: the phonemiser each language's table entry names
(ipc/languages.py): espeak-ng through espeakng-loader for the languages
written with spaces, misaki (Kokoro's own G2P) for Japanese (cutlet over
fugashi + unidic-lite) and Mandarin (jieba + pypinyin); and cutting a
sentence into the words its captions show and its word times are given to:
on spaces, or for Chinese with jieba and for Japanese with fugashi, each
particle, auxiliary and punctuation mark kept with the word before it.

Why not espeak-ng for all: asked for `ja` it reads every kanji as
"(en)tʃˈaɪniːz lˈe̞tə" ("Chinese letter"), and for `cmn` it writes tones as
digits (pˈei2 tɕˈi5ŋ) where Kokoro was trained on misaki's tone arrows
(pei↓ʨi→ŋ) and drops the punctuation that makes Kokoro pause.

Japanese and Mandarin can be phonemised in a child process (`prepare_in_child`,
`python -m aishorts.stages.tts.g2p`): their dictionaries then never sit beside Kokoro.

Not responsible for synthesis or timing (stages/tts/stage.py, stages/tts/kokoro_timing.py).
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from typing import Protocol

import msgspec

from aishorts.ipc.languages import LANGUAGES, Language
from aishorts.stages.common.context import StageError

_PUNCTUATION = re.compile(r"^[\W_]+$")
_JA_ATTACHED = ("助詞", "助動詞", "補助記号", "接尾辞")
"""unidic parts of speech spoken and shown with the word before them (particles, auxiliaries, marks, suffixes)."""


class Phonemiser(Protocol):
    def phonemes(self, texts: list[str]) -> list[str]:
        """Each text in Kokoro's phoneme alphabet (what the model was trained on)."""

    def words(self, sentence: str) -> list[str]:
        """The sentence cut into caption words, in order, nothing dropped but spaces."""


def phonemiser(code: str) -> Phonemiser:
    """The phonemiser for a language in Kokoro's spelling (see ipc.languages.LANGUAGES)."""
    lang = LANGUAGES[code]
    if lang.phonemiser.startswith("espeak:"):
        return EspeakPhonemiser(lang)
    if lang.phonemiser == "misaki-ja":
        return JapanesePhonemiser()
    if lang.phonemiser == "misaki-zh":
        return MandarinPhonemiser()
    raise StageError(f"no phonemiser {lang.phonemiser!r} for {code}")


class EspeakPhonemiser:
    """espeak-ng (the library espeakng-loader ships), the way kokoro-onnx sets it up."""

    def __init__(self, lang: Language) -> None:
        # kokoro-onnx's tokenizer points phonemizer at espeakng-loader's library and data
        from kokoro_onnx.tokenizer import Tokenizer
        from phonemizer.backend import EspeakBackend

        Tokenizer()
        self.espeak = EspeakBackend(lang.phonemiser.removeprefix("espeak:"), preserve_punctuation=True,
                                    with_stress=True)

    def phonemes(self, texts: list[str]) -> list[str]:
        # a line break inside a text would make espeak answer with more items than it was given
        return self.espeak.phonemize([" ".join(text.split()) for text in texts])

    def words(self, sentence: str) -> list[str]:
        return sentence.split()


class _MisakiPhonemiser:
    """misaki's G2P answers (phonemes, tokens) for a text; a blank text has no phonemes."""

    g2p: Callable[[str], tuple]

    def phonemes(self, texts: list[str]) -> list[str]:
        return [self.g2p(text)[0] if text.strip() else "" for text in texts]


def _missing(language: str, packages: str, exc: ImportError) -> StageError:
    """What to tell a user whose install lacks a language's G2P packages."""
    return StageError(f"{language} narration needs {packages} ({exc});"
                      " pip install -e . (they are among its dependencies)")


class MandarinPhonemiser(_MisakiPhonemiser):
    """misaki's ZHG2P as Kokoro v1.0 uses it (jieba words, pypinyin tones as arrows); words from jieba."""

    def __init__(self) -> None:
        try:
            import jieba
            from misaki.zh import ZHG2P
        except ImportError as exc:
            raise _missing("Mandarin", "misaki, jieba, pypinyin and cn2an", exc) from None
        jieba.setLogLevel(60)  # its "Building prefix dict" chatter is no news to the user
        self.jieba, self.g2p = jieba, ZHG2P()

    def words(self, sentence: str) -> list[str]:
        return attach_marks([token for token in self.jieba.lcut(sentence) if token.strip()], lambda _: False)


class JapanesePhonemiser(_MisakiPhonemiser):
    """misaki's cutlet G2P, as Kokoro v1.0's Japanese pipeline (fugashi + unidic-lite); words from fugashi."""

    def __init__(self) -> None:
        try:
            from fugashi import Tagger
            from misaki.cutlet import Cutlet
        except ImportError as exc:
            raise _missing("Japanese", "misaki, fugashi, unidic-lite, jaconv and mojimoji", exc) from None
        try:
            self.g2p, self.tagger = Cutlet(), Tagger()
        except RuntimeError as exc:  # fugashi without a dictionary
            raise StageError(f"Japanese narration needs a MeCab dictionary: pip install unidic-lite ({exc})") from None

    def words(self, sentence: str) -> list[str]:
        tokens, attached = [], set()
        for node in self.tagger(sentence):
            if node.surface.strip():
                if node.feature.pos1 in _JA_ATTACHED:
                    attached.add(len(tokens))
                tokens.append(node.surface)
        return attach_marks(tokens, lambda index: index in attached)


def attach_marks(tokens: list[str], attached: Callable[[int], bool]) -> list[str]:
    """Tokens joined into caption words: punctuation, and the tokens `attached(index)` names, join the one before."""
    words: list[str] = []
    for index, token in enumerate(tokens):
        if words and (_PUNCTUATION.match(token) or attached(index)):
            words[-1] += token
        else:
            words.append(token)
    return words


# --- dictionaries kept out of the narrating process ------------------------------------------

IN_CHILD = ("misaki-zh", "misaki-ja")
"""Phonemisers whose dictionaries stay resident once loaded (Mandarin: jieba 70 MiB, pypinyin 58 MiB, measured):
run in a child process of the tts stage before Kokoro loads, so the two never add up (zh's stage peak was 418 MiB,
past the 412M tts ceiling of `--max-ram 512M`)."""
CHILD_TIMEOUT_S = 600.0


class G2pRequest(msgspec.Struct, forbid_unknown_fields=True):
    language: str
    sentences: list[str]


class G2pAnswer(msgspec.Struct, forbid_unknown_fields=True):
    words: list[list[str]]
    """Each sentence's caption words."""
    phonemes: list[list[str]]
    """Each sentence's phonemes, then each of its words' alone: what the narrator asks for when it speaks it."""


class Prepared:
    """Words and phonemes worked out beforehand for known sentences, answered from a table."""

    def __init__(self, sentences: list[str], answer: G2pAnswer) -> None:
        self._words = dict(zip(sentences, answer.words))
        self._phonemes: dict[str, str] = {}
        for sentence, words, phonemes in zip(sentences, answer.words, answer.phonemes):
            self._phonemes.update(zip([sentence, *words], phonemes))

    def phonemes(self, texts: list[str]) -> list[str]:
        missing = [text for text in texts if text not in self._phonemes]
        if missing:
            raise StageError(f"no phonemes were prepared for {missing[0]!r}")
        return [self._phonemes[text] for text in texts]

    def words(self, sentence: str) -> list[str]:
        if sentence not in self._words:
            raise StageError(f"no words were prepared for {sentence!r}")
        return self._words[sentence]


def answer(request: G2pRequest) -> G2pAnswer:
    g2p = phonemiser(request.language)
    words = [g2p.words(sentence) for sentence in request.sentences]
    return G2pAnswer(words, [g2p.phonemes([sentence, *own]) for sentence, own in zip(request.sentences, words)])


def prepare_in_child(code: str, sentences: list[str]) -> Prepared:
    """The words and phonemes of `sentences`, worked out by `python -m aishorts.stages.tts.g2p` in a child process that exits
    before the caller loads its model (its memory is the OS's again; the stage's watchdog counts it meanwhile)."""
    request = msgspec.json.encode(G2pRequest(code, sentences))
    try:
        done = subprocess.run([sys.executable, "-m", "aishorts.stages.tts.g2p"], input=request, capture_output=True,
                              timeout=CHILD_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise StageError(f"phonemising {len(sentences)} sentences took over {CHILD_TIMEOUT_S:g} s") from None
    if done.returncode != 0:
        said = done.stderr.decode(errors="replace").strip().splitlines()
        raise StageError(f"phonemising failed: {said[-1] if said else f'exit {done.returncode}'}")
    try:
        return Prepared(sentences, msgspec.json.decode(done.stdout, type=G2pAnswer))
    except msgspec.ValidationError as exc:
        raise StageError(f"phonemising answered something unreadable ({exc})") from None


def main() -> int:
    try:
        result = answer(msgspec.json.decode(sys.stdin.buffer.read(), type=G2pRequest))
    except StageError as exc:
        print(exc, file=sys.stderr)
        return 1
    sys.stdout.buffer.write(msgspec.json.encode(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
