"""How fast the rule matcher is, next to the naive way: ``python benchmarks/rules.py``.

Generates English news articles (~700 characters, entity names mixed in) and 10, 1,000 and
10,000 rules that mix entities, phrases, prefixes, exact words, NEAR, field scopes and NOT,
then prints, per rule count, the articles per second of a ``RuleSet`` (building each article's
``Document`` included) and of a naive baseline: one Python ``re`` per term (``\\b`` boundaries,
IGNORECASE), evaluated rule by rule with the same boolean structure. The naive baseline is
timed on a small sample of articles, as it is slow. Then the compile time and memory of
10,000 rules. One process, one core; the numbers are this machine's.

Entities and words are drawn with a Zipf-like popularity, the same for articles and rules, so
popular names are both in many articles and in many rules: the matcher's hard case.
"""

from __future__ import annotations

import gc
import random
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from watcher.rules import Document, Entity, Query, RuleSet, compile_query
from watcher.rules.syntax import (
    And,
    EntityRef,
    Near,
    Not,
    Or,
    RegexTerm,
    Syntax,
    Term,
    parse,
)

SEED = 20240611
RULE_COUNTS = (10, 1_000, 10_000)
ARTICLES = 2_000
PASSES = 3  # the RuleSet's rate is the best of this many passes over the articles
NAIVE_SECONDS = 8.0  # per rule count: the naive baseline stops after this long

# --- the material: words, phrases, entities ---------------------------------------------------


def split(words: str) -> list[str]:
    return words.split()


WORDS = split("""
government minister officials said week talks agreement deal plan budget economy market
markets prices inflation growth trade exports imports energy gas oil power grid climate
emissions report data survey figures rise fall record quarter year month billion million
percent company companies shares investors profit losses jobs workers union strike wages
court judge ruling law bill parliament vote election campaign party leader opposition
president prime security defence military forces troops border attack strike drone missile
ceasefire peace war conflict region city capital country nation state people residents
police arrest investigation charges officials spokesman statement press conference meeting
summit visit delegation foreign ministry embassy sanctions aid support funding reform policy
health hospital doctors patients vaccine virus outbreak cases school students teachers
university research scientists study technology software data privacy cyber network users
platform launch product sales customers bank banks interest rates loans debt bonds currency
dollar euro central regulator rules oversight merger acquisition bid offer board chief
executive director chairman founder analyst forecast outlook warning risk crisis recovery
storm flood fire drought heat weather rain farmers crops food water supply shortage port
shipping route cargo airline flights airport train rail roads transport housing rents homes
construction project plant factory production output demand supply chain industry sector
""")

COMMON = split("the of and to in a on for with at by from as is was has have will its their")

PHRASES = [
    "interest rates", "trade deal", "peace talks", "climate change", "supply chain",
    "prime minister", "central bank", "election campaign", "ceasefire agreement",
    "energy prices", "press conference", "foreign ministry", "data privacy", "food prices",
    "labour market", "stock market", "border security", "air defence", "grain exports",
    "power grid", "oil prices", "public health", "state media", "human rights",
]  # fmt: skip

COUNTRIES = split("""
Ukraine Russia Poland Germany France Italy Spain Britain Ireland Norway Sweden Finland Turkey
Greece Israel Iran Iraq Syria Egypt Nigeria Kenya Ethiopia Brazil Argentina Chile Mexico
Canada China Japan India Pakistan Indonesia Vietnam Australia Taiwan Korea Georgia Moldova
Romania Hungary Serbia Austria Belgium Netherlands Denmark Portugal Lebanon Jordan Qatar
""")

FIRST = split("""
Anna Maria Olena Sofia Emma Laura Clara Irene Nadia Eva Lena Ines Yara Mila Rosa Nina Zoe
James Peter Ivan Marco Jonas Tomas Luca Omar Ali David Daniel Pavel Hugo Felix Oscar Leo Max
""")

LAST = split("""
Kowalski Novak Petrov Schmidt Moreau Rossi Garcia Silva Jensen Larsen Nielsen Horvat Popescu
Kovacs Dimitrov Ivanova Shevchenko Bondar Melnyk Tkachenko Kravets Hoffmann Becker Wagner
Fischer Weber Meyer Lambert Dubois Laurent Marchetti Ferrari Romano Costa Santos Pereira Lopez
Martin Walsh Murphy Byrne Quinn Doyle Kelly Brennan Sato Tanaka Suzuki Kim Park Chen Wang Li
""")

SYLLABLES = "vel trax nor vane cor dex ari lum tek sol ver ion qua zen bri mar tal gen rix fal"


@dataclass(frozen=True)
class Article:
    title: str
    summary: str
    content: str
    tags: tuple[str, ...]
    author: str
    link: str
    feed: str


def entities(rng: random.Random) -> dict[str, Entity]:
    """Countries, a few acronyms with exact names, ~1,500 companies and ~1,500 people."""
    pool: dict[str, Entity] = {
        "nato": Entity(("NATO", "North Atlantic Treaty Organization")),
        "who": Entity(("World Health Organization",), ("WHO",)),
        "un": Entity(("United Nations",), ("UN",)),
        "us": Entity(("United States",), ("US", "U.S.")),
        "eu": Entity(("European Union",), ("EU",)),
        "imf": Entity(("IMF", "International Monetary Fund")),
    }
    for country in COUNTRIES:
        pool[country.lower()] = Entity((country,))
    syllables = SYLLABLES.split()
    while len(pool) < 1_550:
        name = "".join(rng.sample(syllables, 3)).capitalize()
        pool[f"co-{name.lower()}"] = Entity((name, f"{name} Group"))
    for first in FIRST:
        for last in LAST:
            if rng.random() < 0.9:
                pool[f"p-{first}-{last}".lower()] = Entity((f"{first} {last}",))
    return pool


class Zipf:
    """Draws from ``items`` with weight 1 / rank^0.9, in a fixed shuffled order."""

    def __init__(self, items: Sequence[str], rng: random.Random) -> None:
        self.items = list(items)
        rng.shuffle(self.items)
        self.weights = [1 / (rank + 1) ** 0.9 for rank in range(len(self.items))]
        self.rng = rng

    def draw(self, k: int = 1) -> list[str]:
        return self.rng.choices(self.items, self.weights, k=k)


# --- articles ---------------------------------------------------------------------------------


VERBS = split("""
announced approved blocked cut raised rejected signed backed warned criticised launched
delayed expanded ended extended proposed reported confirmed denied welcomed questioned
""")
DO = split("""
approve block cut raise reject sign back review launch delay expand end extend propose
""")
ADJECTIVES = split("""
new major key final early sharp modest record planned proposed emergency annual regional
national global joint strong weak fresh
""")
DAYS = split("Monday Tuesday Wednesday Thursday Friday Saturday Sunday")
MONTHS = split("January February March April May June July August September October")

TITLES = [
    "{E} {V} {A} {N}",
    "{P}: {E} {V} {N} plan",
    "{E} and {E} {V} {N} over {P}",
    "{E}\u2019s {N} {V} as {P} loom",
]
SENTENCES = [
    "{E} {V} the {A} {N} on {D}, officials said.",
    "The {N} {V} {K} percent in {M} as {P} weighed on {E}.",
    "{E}\u2019s {N} {V} a {A} {N} after talks with {E}.",
    "According to {E}, the {A} {N} will {W} the {N} by {M}.",
    "In {E}, {N} and {N} {V} as the {P} continued.",
    "{E} and {E} {V} a {A} {N} on {P}.",
    "Analysts said the {N} could {W} {A} {N} for {E} this year.",
    "The {A} {N} {V} \u201c{P}\u201d \u2014 a {N} that {E} has long {V}.",
]


class Writer:
    """News-like sentences from templates: entity names, the word lists, typography."""

    def __init__(self, pool: dict[str, Entity], rng: random.Random) -> None:
        self.pool = pool
        self.rng = rng
        self.entities = Zipf(list(pool), rng)
        self.words = Zipf(WORDS, rng)

    def name(self, entity_id: str) -> str:
        entity = self.pool[entity_id]
        return self.rng.choice(entity.names + entity.exact)

    def entity(self) -> str:
        return self.entities.draw()[0]

    def fill(self, template: str) -> str:
        slots = {
            "E": lambda: self.name(self.entity()),
            "N": lambda: self.words.draw()[0],
            "P": lambda: self.rng.choice(PHRASES),
            "V": lambda: self.rng.choice(VERBS),
            "W": lambda: self.rng.choice(DO),
            "A": lambda: self.rng.choice(ADJECTIVES),
            "D": lambda: self.rng.choice(DAYS),
            "M": lambda: self.rng.choice(MONTHS),
            "K": lambda: str(self.rng.randint(2, 40)),
        }
        text = re.sub(r"\{(\w)\}", lambda slot: slots[slot.group(1)](), template)
        return text[0].upper() + text[1:]

    def article(self, number: int) -> Article:
        title = self.fill(self.rng.choice(TITLES))
        summary = self.fill(self.rng.choice(SENTENCES))
        content = " ".join(self.fill(self.rng.choice(SENTENCES)) for _ in range(7))
        tags = tuple(self.rng.sample(["world", "europe", "business", "politics", "sport"], 2))
        slug = "-".join(title.lower().split()[:5])
        return Article(
            title=title,
            summary=summary,
            content=content,
            tags=tags,
            author=f"{self.rng.choice(FIRST)} {self.rng.choice(LAST)}",
            link=f"https://news.example.org/{tags[0]}/{number}-{slug}",
            feed="example-wire",
        )


# --- rules ------------------------------------------------------------------------------------


def rules(count: int, pool: dict[str, Entity], rng: random.Random) -> dict[str, str]:
    writer = Writer(pool, rng)
    shapes: list[Callable[[], str]] = [
        lambda: f"@{writer.entity()} AND @{writer.entity()}",
        lambda: f'@{writer.entity()} AND ("{rng.choice(PHRASES)}" OR {writer.words.draw()[0]})',
        lambda: f"@{writer.entity()} NEAR/5 ({' OR '.join(writer.words.draw(2))})",
        lambda: f"title:@{writer.entity()} NOT (sport OR football)",
        lambda: f'"{rng.choice(PHRASES)}" AND @{writer.entity()} -{writer.words.draw()[0]}',
        lambda: f"{writer.words.draw()[0][:5]}* AND @{writer.entity()}",
        lambda: f"(=US OR =EU) AND {writer.words.draw()[0]} AND @{writer.entity()}",
        lambda: " OR ".join(f"@{e}" for e in writer.entities.draw(3)),
        lambda: f'summary:"{rng.choice(PHRASES)}" NEAR @{writer.entity()}',
        lambda: f"@{writer.entity()} tags:({rng.choice(['world', 'europe', 'business'])})",
    ]
    return {f"rule-{n}": shapes[n % len(shapes)]() for n in range(count)}


# --- the naive baseline: one re per term, rule by rule ----------------------------------------

Fields = dict[str | None, str]
NaiveCheck = Callable[[Fields], bool]


def naive(node: Syntax, pool: dict[str, Entity]) -> NaiveCheck:
    """What peers write: a compiled ``re`` per term, searched in the field's text."""
    if isinstance(node, Term):
        return _naive_pattern(node.scope, [node.text], node.exact is None, node.prefix)
    if isinstance(node, EntityRef):
        entity = pool[node.entity_id]
        names = _naive_pattern(node.scope, list(entity.names), True, False)
        exact = _naive_pattern(node.scope, list(entity.exact), False, False)
        return lambda fields: names(fields) or exact(fields)
    if isinstance(node, Not):
        child = naive(node.child, pool)
        return lambda fields: not child(fields)
    if isinstance(node, And):
        parts = [naive(part, pool) for part in node.parts]
        return lambda fields: all(part(fields) for part in parts)
    if isinstance(node, Or):
        branches = [naive(branch, pool) for branch in node.branches]
        return lambda fields: any(branch(fields) for branch in branches)
    if isinstance(node, Near):
        return _naive_near(node, pool)
    assert not isinstance(node, RegexTerm)
    raise TypeError(node)


def _naive_regex(names: list[str], ignore_case: bool, prefix: bool) -> re.Pattern[str] | None:
    if not names:
        return None
    alternatives = [r"\W+".join(map(re.escape, re.findall(r"\w+", name))) for name in names]
    tail = r"\w*" if prefix else r"\b"
    return re.compile(r"\b(?:" + "|".join(alternatives) + ")" + tail, re.I if ignore_case else 0)


def _naive_pattern(scope: str | None, names: list[str], icase: bool, prefix: bool) -> NaiveCheck:
    pattern = _naive_regex(names, icase, prefix)
    if pattern is None:
        return lambda fields: False
    search = pattern.search
    return lambda fields: search(fields[scope]) is not None


def _naive_near(node: Near, pool: dict[str, Entity]) -> NaiveCheck:
    def pattern(side: Syntax) -> tuple[str | None, re.Pattern[str]]:
        terms = side.branches if isinstance(side, Or) else (side,)
        names: list[str] = []
        scope = None
        for term in terms:
            if isinstance(term, EntityRef):
                names += pool[term.entity_id].names + pool[term.entity_id].exact
                scope = term.scope
            elif isinstance(term, Term):
                names.append(term.text)
                scope = term.scope
        found = _naive_regex(names, True, False)
        assert found is not None
        return scope, found

    (left_scope, left), (_, right) = pattern(node.left), pattern(node.right)

    def check(fields: Fields) -> bool:
        text = fields[left_scope]
        for a in left.finditer(text):
            for b in right.finditer(text):
                between = text[a.end() : b.start()] if a.end() <= b.start() else ""
                if len(re.findall(r"\w+", between)) <= node.distance:
                    return True
        return False

    return check


def naive_fields(article: Article) -> Fields:
    tags = "\n".join(article.tags)
    return {
        None: "\n".join((article.title, article.summary, article.content, tags)),
        "title": article.title,
        "summary": article.summary,
        "content": article.content,
        "tags": tags,
        "author": article.author,
        "link": article.link,
        "feed": article.feed,
    }


# --- measuring --------------------------------------------------------------------------------


def document(article: Article) -> Document:
    return Document(
        title=article.title,
        summary=article.summary,
        content=article.content,
        tags=article.tags,
        authors=(article.author,),
        link=article.link,
        feed=article.feed,
    )


def ruleset_rate(ruleset: RuleSet, articles: Sequence[Article]) -> tuple[float, int]:
    """Articles per second, best of ``PASSES`` (a fresh Document each time: nothing cached)."""
    best, matches = 0.0, 0
    for _ in range(PASSES):
        gc.collect()
        matches = 0
        started = time.perf_counter()
        for article in articles:
            matches += len(ruleset.match(document(article)))
        best = max(best, len(articles) / (time.perf_counter() - started))
    return best, matches


def naive_rate(checks: Sequence[NaiveCheck], articles: Sequence[Article]) -> tuple[float, int]:
    done, started = 0, time.perf_counter()
    for article in articles:
        fields = naive_fields(article)
        for check in checks:
            check(fields)
        done += 1
        if time.perf_counter() - started > NAIVE_SECONDS:
            break
    return done / (time.perf_counter() - started), done


def rss_bytes() -> int:
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except OSError:
        return 0
    return pages * 4096


def compile_all(
    texts: dict[str, str], pool: dict[str, Entity]
) -> tuple[dict[str, Query], float, int]:
    """The compiled rules, the seconds it took (RuleSet included) and the RSS growth."""
    gc.collect()
    before = rss_bytes()
    started = time.perf_counter()
    queries = {name: compile_query(text, pool) for name, text in texts.items()}
    ruleset = RuleSet(queries)
    seconds = time.perf_counter() - started
    gc.collect()
    memory = rss_bytes() - before
    assert len(ruleset) == len(texts)  # alive while memory was measured
    return queries, seconds, memory


def table(
    texts: dict[str, str],
    queries: dict[str, Query],
    pool: dict[str, Entity],
    articles: list[Article],
) -> dict[int, tuple[float, float]]:
    """Print one row per rule count; return count -> (RuleSet rate, naive rate)."""
    print(
        f"{'rules':>7} {'RuleSet art/s':>14} {'naive art/s':>12} {'ratio':>8}"
        f" {'matches/article':>16} {'naive sample':>13}"
    )
    rates = {}
    for count in RULE_COUNTS:
        names = list(texts)[:count]
        rate, matches = ruleset_rate(RuleSet({name: queries[name] for name in names}), articles)
        baseline, sample = naive_rate([naive(parse(texts[name]), pool) for name in names], articles)
        rates[count] = (rate, baseline)
        print(
            f"{count:>7,} {rate:>14,.0f} {baseline:>12,.1f} {rate / baseline:>7,.0f}x"
            f" {matches / len(articles):>16.2f} {sample:>13}"
        )
    return rates


def verdict(label: str, value: str, met: bool) -> None:
    print(f"  {label:<44} {value:>12}  {'met' if met else 'NOT MET'}")


def main() -> None:
    rng = random.Random(SEED)
    pool = entities(rng)
    writer = Writer(pool, rng)
    articles = [writer.article(n) for n in range(ARTICLES)]
    chars = sum(len(a.title) + len(a.summary) + len(a.content) for a in articles) / ARTICLES
    print(f"{ARTICLES} articles of {chars:.0f} characters on average; {len(pool)} entities")
    print(f"example: {articles[0].title!r}\n")
    texts = rules(max(RULE_COUNTS), pool, random.Random(SEED + 1))
    queries, seconds, memory = compile_all(texts, pool)
    rates = table(texts, queries, pool, articles)
    (top, top_naive), (bottom, _) = rates[max(RULE_COUNTS)], rates[min(RULE_COUNTS)]
    print(f"\ntargets, at {max(RULE_COUNTS):,} rules:")
    verdict("articles/s (Document included), >= 20,000", f"{top:,.0f}", top >= 20_000)
    verdict(
        "times the naive baseline, >= 1,000", f"{top / top_naive:,.0f}x", top >= 1000 * top_naive
    )
    verdict(
        f"share of the {min(RULE_COUNTS)}-rule rate, >= 0.25",
        f"{top / bottom:.2f}",
        top >= bottom / 4,
    )
    verdict("compile seconds (compile_query + RuleSet), < 2", f"{seconds:.2f}", seconds < 2)
    verdict(
        "memory MiB (RSS growth while compiling), < 200",
        f"{memory / 2**20:.1f}",
        memory < 200 * 2**20,
    )


if __name__ == "__main__":
    main()
