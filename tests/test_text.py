import pytest
import tensorflow as tf

from components import text


def _tokens(title: str, description: str = "") -> list[str]:
    return [t.decode() for t in text.tokenize(tf.constant([title]), tf.constant([description]))[0].numpy()]


@pytest.mark.parametrize("raw, expected", [
    ("Randolph Guaranteed  #36;1.88M in Mets Deal", "Randolph Guaranteed $1.88M in Mets Deal"),
    ("Tri-Nations &lt;b&gt;...&lt;/b&gt;", "Tri-Nations ..."),
    ("approach as  quot;nuts, quot; adding", "approach as \"nuts,\" adding"),
    ("Kerry#39;s plan", "Kerry's plan"),
    ("line one\\nline two", "line one line two"),
    ("AT&amp;T &#151; results", "AT&T results"),
    ("  spaced \t out  ", "spaced out"),
    ("", ""),
])
def test_normalize_undoes_crawl_residue(raw, expected):
    assert text.normalize(tf.constant(raw)).numpy().decode() == expected


def test_standardize_lowercases_and_strips_punctuation_like_keras():
    assert text.standardize(tf.constant("U.S. Stocks, Bonds & Oil: UP!")).numpy().decode() == "us stocks bonds  oil up"
    assert text.standardize(tf.constant("ÉCOLE Ünïcode")).numpy().decode() == "école ünïcode"


def test_tokenize_joins_title_and_description():
    assert _tokens("Mets Deal (AP)", "AP - Willie Randolph #36;1,875,000") == [
        "mets", "deal", "ap", "ap", "willie", "randolph", "1875000"]
    assert _tokens("&lt;b&gt;Hello&lt;/b&gt;", "") == ["hello"]


def test_empty_and_punctuation_only_text_has_no_tokens():
    assert _tokens("", "") == []
    assert _tokens("...", " -- ") == []
