"""Language codes -> FLORES-200 codes, for text towers that read a language token (NLLB-CLIP).

NLLB-CLIP models were trained on captions prefixed with the FLORES-200 code of their language
(``zho_Hans``, ``eng_Latn``…); a query must carry the same prefix. Users give short codes (``zh``,
``pt-BR``); :func:`flores_code` maps them, :func:`default_language` reads the locale. Standard library only.
"""

from __future__ import annotations

import locale
import os
import warnings

from glimpse.errors import UserInputError

#: BCP-47-like language codes (as the locale or ``--lang`` gives them) -> FLORES-200 codes.
FLORES200: dict[str, str] = {
    "af": "afr_Latn", "ar": "arb_Arab", "az": "azj_Latn", "be": "bel_Cyrl", "bg": "bul_Cyrl", "ca": "cat_Latn",
    "cs": "ces_Latn", "da": "dan_Latn", "de": "deu_Latn", "el": "ell_Grek", "en": "eng_Latn", "es": "spa_Latn",
    "et": "est_Latn", "fa": "pes_Arab", "fi": "fin_Latn", "fr": "fra_Latn", "he": "heb_Hebr", "hi": "hin_Deva",
    "hr": "hrv_Latn", "hu": "hun_Latn", "hy": "hye_Armn", "id": "ind_Latn", "it": "ita_Latn", "ja": "jpn_Jpan",
    "kmr": "kmr_Latn", "ko": "kor_Hang", "lb": "ltz_Latn", "lt": "lit_Latn", "lv": "lav_Latn", "mk": "mkd_Cyrl",
    "mn": "khk_Cyrl", "mr": "mar_Deva", "ms": "zsm_Latn", "nb": "nob_Latn", "nb-no": "nob_Latn", "nn": "nno_Latn",
    "nl": "nld_Latn", "pl": "pol_Latn", "pt": "por_Latn", "pt-br": "por_Latn", "ro": "ron_Latn", "ru": "rus_Cyrl",
    "sk": "slk_Latn", "sl": "slv_Latn", "sr": "srp_Cyrl", "sr-cyrl": "srp_Cyrl", "sv": "swe_Latn", "ta": "tam_Taml",
    "te": "tel_Telu", "th": "tha_Thai", "tr": "tur_Latn", "uk": "ukr_Cyrl", "ur": "urd_Arab", "vi": "vie_Latn",
    "zh": "zho_Hans", "zh-cn": "zho_Hans", "zh-hans": "zho_Hans", "zh-sg": "zho_Hans", "zh-tw": "zho_Hant",
    "zh-hant": "zho_Hant", "zh-hk": "zho_Hant",
}
DEFAULT_LANGUAGE = "en"


def _normalise(code: str) -> str:
    return code.strip().replace("_", "-").lower()


def check_language(code: str) -> str:
    """``code`` normalised (``zh_CN`` -> ``zh-cn``) when glimpse knows it; ``UserInputError`` listing the codes."""
    norm = _normalise(code)
    if norm in FLORES200 or norm.split("-")[0] in FLORES200:
        return norm
    raise UserInputError(f"unknown language {code!r}; accepted codes: {', '.join(sorted(FLORES200))}")


def flores_code(code: str) -> str:
    """The FLORES-200 code of language ``code`` (``zh`` -> ``zho_Hans``; a region falls back to its language)."""
    norm = check_language(code)
    return FLORES200.get(norm) or FLORES200[norm.split("-")[0]]


def default_language() -> str:
    """The language of the locale (``$LC_ALL``/``$LC_MESSAGES``/``$LANG``), or English with a warning."""
    candidates = [os.environ.get(name, "") for name in ("LC_ALL", "LC_MESSAGES", "LANG")]
    candidates.append(locale.getlocale()[0] or "")
    for value in candidates:
        value = value.split(".")[0].split("@")[0]
        if value and value not in ("C", "POSIX"):
            try:
                return check_language(value)
            except UserInputError:
                break
    warnings.warn("no known language in the locale; the query is read as English (give --lang to choose)",
                  UserWarning, stacklevel=2)
    return DEFAULT_LANGUAGE
