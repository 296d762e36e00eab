import pytest
import tensorflow as tf

from components import text


def _tokens(title: str, description: str = "") -> list[str]:
    return [
        t.decode()
        for t in text.tokenize(tf.constant([title]), tf.constant([description]))[0].numpy()
    ]


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("Randolph Guaranteed  #36;1.88M in Mets Deal", "Randolph Guaranteed $1.88M in Mets Deal"),
        ("Tri-Nations &lt;b&gt;...&lt;/b&gt;", "Tri-Nations ..."),
        ("approach as  quot;nuts, quot; adding", 'approach as "nuts," adding'),
        # The crawl's space before #39; was the entity's "&": it goes, a space before that stays.
        (
            "Yahoo #39;s Yang Looks Back on  #39;Amazing Ride #39;",
            "Yahoo's Yang Looks Back on 'Amazing Ride'",
        ),
        ("Kerry#39;s plan", "Kerry's plan"),
        ("Apple #146;s iPod and Sprint #8217;s", "Apple's iPod and Sprint's"),
        (
            "AT #38;T, Marsh  amp; McLennan, S amp;P, Western  amp;amp;amp; Southern",
            "AT&T, Marsh & McLennan, S&P, Western & Southern",
        ),
        ("World News  gt; London, With nbsp;food", "World News > London, With food"),
        # A backslash is a line break, also before "n" (every \n in the data starts a word);
        # \$ is $.
        (
            "a touchdown\\passes, a big\\nose; Copy\\\\Google",
            "a touchdown passes, a big nose; Copy Google",
        ),
        ("worth C\\$1 and \\$ 436 million", "worth C$1 and $ 436 million"),
        # Proper HTML keeps its spaces.
        (
            "AT&amp;T said &quot;no&quot; to the &#39;best&#39; &#151; again",
            "AT&T said \"no\" to the 'best' again",
        ),
        ("  spaced \t out  ", "spaced out"),
        ("", ""),
    ],
)
def test_normalize_undoes_crawl_residue(raw, expected):
    assert text.normalize(tf.constant(raw)).numpy().decode() == expected


# (AG News's form, as the data has it; the same text as a client sends it)
@pytest.mark.parametrize(
    "crawl, client",
    [
        (
            "Yahoo #39;s Yang Looks Back on  #39;Amazing Ride #39;",
            "Yahoo's Yang Looks Back on 'Amazing Ride'",
        ),
        (
            "Canada #39;s largest auto parts supplier doesn #39;t own",
            "Canada's largest auto parts supplier doesn't own",
        ),
        ("Apple #146;s iPod", "Apple's iPod"),
        (
            "Brady threw three touchdown\\passes, a big\\nose",
            "Brady threw three touchdown passes, a big nose",
        ),
        (
            "File Sharing Legal\\\\A federal appeals court",
            "File Sharing Legal A federal appeals court",
        ),
        ("offered as much as C\\$1.", "offered as much as C$1."),
        ("AT #38;T and Marsh  amp; McLennan", "AT&T and Marsh & McLennan"),
        ("as  quot;nuts, quot; adding", 'as "nuts," adding'),
        # Text pasted from a news site has typographic quotes.
        ("Yahoo #39;s profit", "Yahoo\u2019s profit"),
        ("as  quot;nuts, quot; adding", "as \u201cnuts,\u201d adding"),
    ],
)
def test_crawl_and_client_forms_give_the_same_tokens(crawl, client):
    """The served model reads clients' text with this graph: it must see what training saw."""
    assert _tokens(crawl, crawl) == _tokens(client, client)


def test_standardize_lowercases_and_strips_punctuation_like_keras():
    assert (
        text.standardize(tf.constant("U.S. Stocks, Bonds & Oil: UP!")).numpy().decode()
        == "us stocks bonds  oil up"
    )
    assert text.standardize(tf.constant("ÉCOLE Ünïcode")).numpy().decode() == "école ünïcode"


def test_tokenize_joins_title_and_description():
    assert _tokens("Mets Deal (AP)", "AP - Willie Randolph is guaranteed  #36;1,875,000") == [
        "mets",
        "deal",
        "ap",
        "ap",
        "willie",
        "randolph",
        "is",
        "guaranteed",
        "1875000",
    ]
    assert _tokens("&lt;b&gt;Hello&lt;/b&gt;", "") == ["hello"]


def test_empty_and_punctuation_only_text_has_no_tokens():
    assert _tokens("", "") == []
    assert _tokens("...", " -- ") == []
