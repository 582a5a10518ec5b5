"""Final-answer extraction and comparison for math word problems (GSM8K style and MATH style).

Two conventions are supported:

- **GSM8K**: the answer follows ``#### `` (``#### 1,234`` -> ``"1234"``). The strict extractor
  takes the first ``####`` answer and returns ``None`` when there is none; the flexible one takes
  the last number anywhere in the text. Answers compare as exact decimals, so ``"12.0"`` equals
  ``12``.
- **MATH**: the answer is the content of the *last* ``\\boxed{...}`` (braces matched, nesting
  allowed). Both sides are normalised (:func:`normalize_math`) and compared as strings, and, when
  both are plain numbers or integer fractions, as exact rationals (``\\frac{1}{2}`` equals ``0.5``).

:func:`is_correct` returns ``None`` for a completion with no extractable answer, so that callers
can count unparseable completions separately from wrong ones.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from fractions import Fraction

# GSM8K's own answer marker; the character class also admits "." and "," so "1,234.5" matches.
_GSM8K_ANSWER = re.compile(r"#### (\-?[0-9\.\,]+)")
# Any number: an optional sign, digits with optional thousands commas and decimals, or ".5".
_NUMBER = re.compile(r"-?(?:\d[\d,]*(?:\.\d+)?|\.\d+)")
_BOXED = re.compile(r"\\(?:boxed|fbox)")


# --------------------------------------------------------------------------------------------
# GSM8K
# --------------------------------------------------------------------------------------------
def _clean_number(s: str) -> str:
    """Drop thousands commas, a dollar sign and a sentence-final period: ``"$1,200."`` -> ``"1200"``."""
    return s.replace(",", "").replace("$", "").strip().rstrip(".")


def extract_gsm8k(text: str, flexible: bool = False) -> str | None:
    """The final answer of a GSM8K-style solution, as a string without commas.

    Strict (default): the first ``#### N`` answer (``None`` when there is none, or when ``N`` is
    only punctuation). Flexible: the last number anywhere in ``text`` (``None`` when there is no
    number); use it for models that state the answer without the marker.
    """
    if flexible:
        numbers = _NUMBER.findall(text)
        return _clean_number(numbers[-1]) if numbers else None
    match = _GSM8K_ANSWER.search(text)
    if match is None:
        return None
    answer = _clean_number(match.group(1))
    return answer or None


def _as_decimal(s: str | int | float) -> Decimal | None:
    try:
        return Decimal(_clean_number(str(s)))
    except InvalidOperation:
        return None


# --------------------------------------------------------------------------------------------
# MATH
# --------------------------------------------------------------------------------------------
def _braced(text: str, start: int) -> str | None:
    """The content of the brace group opening at ``text[start] == "{"`` (nesting allowed)."""
    depth = 0
    for i in range(start, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[start + 1 : i]
    return None  # unbalanced: the completion was cut off inside the box


def extract_boxed(text: str) -> str | None:
    """The content of the last ``\\boxed{...}`` (or ``\\fbox{...}``) in ``text``.

    Braces are matched, so ``\\boxed{\\frac{1}{2}}`` gives ``\\frac{1}{2}``. The brace-less form
    ``\\boxed 5`` gives ``"5"``. Returns ``None`` when there is no box or its braces never close.
    """
    for match in reversed(list(_BOXED.finditer(text))):
        rest = match.end()
        if rest < len(text) and text[rest] == "{":
            content = _braced(text, rest)
        elif rest < len(text) and text[rest] == " ":
            content = text[rest:].split(maxsplit=1)[0].rstrip("$") if text[rest:].strip() else None
        else:
            continue  # e.g. "\boxedsomething": not a box
        if content is not None:
            return content
    return None


# Unit words that MATH answers sometimes carry ("10 \text{ inches}", "5 cm^2"). Single letters
# such as "m" are only removed inside \text{}, where they cannot be a variable.
_UNIT_WORDS = (
    "units?|cm|mm|km|meters?|metres?|centimeters?|kilometers?|inch(?:es)?|in|feet|foot|ft|"
    "yards?|miles?|degrees?|dollars?|cents?|seconds?|minutes?|hours?|days?|weeks?|months?|"
    "years?|mph|sq|square\\s*(?:units|feet|inches|meters|cm)|cubic\\s*(?:units|feet|inches|meters|cm)"
)
_TEXT_WRAPPER = re.compile(r"\\(?:text|textbf|mbox|mathrm)\{([^{}]*)\}")
_TEXT_UNIT = re.compile(
    rf"\\(?:text|mbox|mathrm)\{{\s*(?:{_UNIT_WORDS}|m|s|g|kg|l)\s*\}}(?:\^\{{?[23]\}}?)?"
)
_TRAILING_UNIT = re.compile(rf"(?<=[\d}}])\s*(?:{_UNIT_WORDS})(?:\^\{{?[23]\}}?)?\s*$")
_FRAC_SHORT = re.compile(r"\\frac\s*(\{[^{}]*\}|[^{\s\\])\s*(\{[^{}]*\}|[^{\s\\])")
_SQRT_SHORT = re.compile(r"\\sqrt\s*([^{\s\\\[])")
_DECIMAL = re.compile(r"(?<![\d.])\d+\.\d+(?![\d.])")


def _brace(arg: str) -> str:
    return arg if arg.startswith("{") else "{" + arg + "}"


def _strip_decimal_zeros(match: re.Match[str]) -> str:
    return match.group(0).rstrip("0").rstrip(".")


def normalize_math(s: str) -> str:
    """A canonical string for a MATH answer, so that equivalent spellings compare equal.

    Removes ``\\left``/``\\right``, thin spaces (``\\!``, ``\\,``, ``\\;``), degrees
    (``^\\circ``), dollar signs (``\\$``, ``$``), percent signs, unit words (``\\text{ cm}``,
    ``10 inches``), a short variable on the left of ``=`` (``x = 5`` -> ``5``), all whitespace and a
    trailing period; rewrites ``\\dfrac``/``\\tfrac`` as ``\\frac``, ``\\frac12`` as
    ``\\frac{1}{2}``, ``\\sqrt2`` as ``\\sqrt{2}``, an integer ``a/b`` as ``\\frac{a}{b}``, ``.5`` as
    ``0.5`` and ``5.0``/``2.50`` as ``5``/``2.5``.
    """
    s = s.strip().replace("\n", "")
    for thin in ("\\!", "\\,", "\\;", "\\:", "~"):
        s = s.replace(thin, "")
    s = re.sub(r"\\[dt]frac", r"\\frac", s)
    s = re.sub(r"\\(?:left|right)(?![a-zA-Z])", "", s)
    s = re.sub(r"\^\s*\{\s*\\circ\s*\}|\^\s*\\circ|\\circ|°", "", s)
    s = s.replace("\\$", "").replace("$", "").replace("\\%", "").replace("%", "")
    s = _TEXT_WRAPPER.sub(r"\1", _TEXT_UNIT.sub("", s))
    s = _TRAILING_UNIT.sub("", s)
    s = s.strip().rstrip(".").strip()
    # "x = 5" and "k=3": the answer is the right-hand side (longer left sides are equations).
    if s.count("=") == 1:
        left, right = s.split("=")
        if len(left.strip()) <= 2:
            s = right
    s = _FRAC_SHORT.sub(lambda m: "\\frac" + _brace(m.group(1)) + _brace(m.group(2)), s)
    s = _SQRT_SHORT.sub(lambda m: "\\sqrt{" + m.group(1) + "}", s)
    s = re.sub(r"\s+", "", s).rstrip(".")
    s = re.sub(r"^(-?)(\d+)/(\d+)$", r"\1\\frac{\2}{\3}", s)
    s = re.sub(r"(^|[^\w}])\.(\d)", r"\g<1>0.\2", s)
    return _DECIMAL.sub(_strip_decimal_zeros, s)


_FRACTION_FORM = re.compile(r"^(-?)\\frac\{(-?\d+)\}\{(-?\d+)\}$")
_PLAIN_NUMBER = re.compile(r"^-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?$")


def _as_fraction(normalized: str) -> Fraction | None:
    """An exact value for a normalised plain number or integer fraction, else ``None``."""
    if _PLAIN_NUMBER.match(normalized):
        return Fraction(normalized.replace(",", ""))
    match = _FRACTION_FORM.match(normalized)
    if match and int(match.group(3)) != 0:
        value = Fraction(int(match.group(2)), int(match.group(3)))
        return -value if match.group(1) else value
    return None


def math_equal(prediction: str, reference: str) -> bool:
    """Whether two MATH answers agree after :func:`normalize_math` (or as exact rationals)."""
    a, b = normalize_math(prediction), normalize_math(reference)
    if a == b:
        return True
    fa, fb = _as_fraction(a), _as_fraction(b)
    return fa is not None and fa == fb


# --------------------------------------------------------------------------------------------
# Grading
# --------------------------------------------------------------------------------------------
STYLES = ("gsm8k", "math")


def extract_answer(completion: str, style: str = "gsm8k", flexible: bool = False) -> str | None:
    """The final answer of ``completion`` in ``style`` (``None``: it holds none).

    ``gsm8k``: :func:`extract_gsm8k` (``flexible``: the last number), kept only when it reads as
    a number; ``math``: :func:`extract_boxed`."""
    if style == "gsm8k":
        predicted = extract_gsm8k(completion, flexible=flexible)
        return predicted if predicted is not None and _as_decimal(predicted) is not None else None
    if style == "math":
        return extract_boxed(completion)
    raise ValueError(f"style must be one of {STYLES}, got {style!r}")


def reference_answer(answer: str | int | float, style: str = "gsm8k") -> str:
    """The answer a reference grades against: a number (``18``), a bare answer string, or a full
    reference solution (``"... #### 18"``, ``"... \\boxed{18}"``) from which it is extracted the
    way completions' answers are. Raises ``ValueError`` when the reference cannot grade (GSM8K:
    not a number; MATH: an unbalanced ``\\boxed{}``)."""
    if style == "gsm8k":
        reference = answer
        if isinstance(answer, str) and "####" in answer:
            reference = extract_gsm8k(answer) or answer
        if _as_decimal(reference) is None:
            raise ValueError(f"reference answer {answer!r} is not a number (style='gsm8k')")
        return _clean_number(str(reference))
    if style == "math":
        reference = str(answer)
        if _BOXED.search(reference):
            boxed = extract_boxed(reference)
            if boxed is None:
                raise ValueError(f"reference answer {answer!r} has an unbalanced \\boxed{{}}")
            reference = boxed
        return reference
    raise ValueError(f"style must be one of {STYLES}, got {style!r}")


def answers_match(predicted: str, reference: str, style: str = "gsm8k") -> bool:
    """Whether an extracted answer equals a reference answer (:func:`reference_answer`): GSM8K
    as exact decimals, MATH by :func:`math_equal`."""
    if style == "gsm8k":
        return _as_decimal(predicted) == _as_decimal(reference)
    if style == "math":
        return math_equal(predicted, reference)
    raise ValueError(f"style must be one of {STYLES}, got {style!r}")


def is_correct(
    completion: str, answer: str | int | float, style: str = "gsm8k", flexible: bool = False
) -> bool | None:
    """Grade one completion against its reference answer.

    Args:
        completion: the model's text.
        answer: the reference, as a number (``18``), a bare answer string (``"18"``,
            ``"\\frac{1}{2}"``) or a full reference solution (``"... #### 18"``, ``"... \\boxed{18}"``),
            from which the answer is extracted the same way (:func:`reference_answer`).
        style: ``"gsm8k"`` (``#### N``, numeric comparison) or ``"math"`` (last ``\\boxed{}``,
            normalised comparison).
        flexible: GSM8K only: take the completion's last number instead of its ``####`` answer.

    Returns:
        ``True``/``False``, or ``None`` when the completion holds no answer in that style
        (callers count those as unparseable, and as wrong in accuracy).
    """
    predicted = extract_answer(completion, style, flexible)
    if predicted is None:
        return None
    return answers_match(predicted, reference_answer(answer, style), style)


__all__ = [
    "STYLES",
    "answers_match",
    "extract_answer",
    "extract_boxed",
    "extract_gsm8k",
    "is_correct",
    "math_equal",
    "normalize_math",
    "reference_answer",
]
