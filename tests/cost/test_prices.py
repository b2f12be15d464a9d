"""The price table: which key prices a model, the file's format and its errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from plait.cost import DEFAULT_PRICES, Price, PriceError, Prices, load_prices, prices_path


def test_a_key_prices_its_spec_and_the_specs_it_begins_at_a_colon_or_comma() -> None:
    prices = Prices({"openai:gpt-4o": (2.5, 10), "openai:gpt-4o-mini": (0.15, 0.6),
                     "openai": (9, 9), "sim:ttft=0.4": (1, 1)})
    assert prices.price_of("openai:gpt-4o-mini") == Price(0.15, 0.6)
    assert prices.price_of("openai:gpt-4o") == Price(2.5, 10)
    # Not a prefix at a boundary: gpt-4o does not price gpt-4o-2024 (the server's
    # fallback `openai` does).
    assert prices.price_of("openai:gpt-4o-2024-08-06") == Price(9, 9)
    # The longest key that fits wins; sim's own default (0) prices other sims.
    assert prices.price_of("sim:ttft=0.4,tps=60") == Price(1, 1)
    assert prices.price_of("sim:ttft=0.5") == DEFAULT_PRICES["sim"] == Price(0, 0)
    assert prices.price_of("local:/models/x.gguf,threads=2") == Price(0, 0)
    assert Prices(defaults=False).price_of("sim") is None
    assert prices.price_of("anthropic:claude") is None
    assert prices.price_of("") is None


def test_a_price_is_per_million_tokens() -> None:
    assert Price(1.0, 2.0).of(1_000_000, 500_000) == pytest.approx(2.0)
    assert Price(0.15, 0.6).of(1000, 100) == pytest.approx(0.00021)
    for bad in (-1, float("nan"), float("inf"), "1", True, None):
        with pytest.raises(PriceError, match="input must be a number >= 0"):
            Price(bad, 1)  # type: ignore[arg-type]


def test_the_file_in_toml_or_json(tmp_path: Path) -> None:
    toml = tmp_path / "prices.toml"
    toml.write_text('currency = "EUR"\n\n[prices]\n'
                    '"openai:gpt-4o-mini" = { input = 0.15, output = 0.60 }\n'
                    'sim = { input = 1, output = 2 }\n')
    prices = load_prices(toml)
    assert prices.currency == "EUR" and prices.source == str(toml)
    assert prices.price_of("openai:gpt-4o-mini") == Price(0.15, 0.6)
    assert prices.price_of("sim:tps=60") == Price(1, 2)  # over the default
    assert prices.price_of("local") == Price(0, 0)  # the defaults stay
    js = tmp_path / "prices.json"
    js.write_text('{"prices": {"openai:m": {"input": 3, "output": 4}}}')
    assert load_prices(js).price_of("openai:m") == Price(3, 4)
    assert load_prices(js).currency == "USD"


def test_where_the_file_is(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    assert prices_path() == tmp_path / "config" / "plait" / "prices.toml"
    assert load_prices() == Prices()  # no file there: the defaults
    prices_path().parent.mkdir(parents=True)
    prices_path().write_text('[prices]\n"openai:x" = { input = 1, output = 1 }\n')
    assert load_prices().price_of("openai:x") == Price(1, 1)
    named = tmp_path / "mine.toml"
    monkeypatch.setenv("PLAIT_PRICES", str(named))
    assert prices_path() == named
    with pytest.raises(PriceError, match=rf"cannot read the price file {named} \(from "
                                         r"\$PLAIT_PRICES\): no such file"):
        load_prices()


@pytest.mark.parametrize(("text", "error"), [
    ('[prices\n', r"price file {f} is not valid TOML: "),
    ('[prices]\n"openai:x" = { input = "cheap", output = 1 }\n',
     r'price file {f}: entry prices\."openai:x": input must be a number >= 0 .*got \'cheap\''),
    ('[prices]\n"openai:x" = { input = 1, ouptut = 1 }\n',
     r'price file {f}: entry prices\."openai:x": unknown field \'ouptut\''),
    ('[prices]\nsim = { input = 1 }\n',
     r'price file {f}: entry prices\."sim": missing \'output\''),
    ('[prices]\nsim = 3\n', r'price file {f}: entry prices\."sim": expected \{ input = N'),
    ('[prices]\nsim = { input = -2, output = 1 }\n',
     r'entry prices\."sim": input must be a number >= 0 .*got -2'),
    ('currency = 3\n', r"price file {f}: currency must be text, got 3"),
    ('[models]\n', r"price file {f}: unknown key 'models' \(known: currency, prices\)"),
])
def test_a_bad_file_is_an_error_naming_the_file_and_the_entry(
        tmp_path: Path, text: str, error: str) -> None:
    f = tmp_path / "prices.toml"
    f.write_text(text)
    with pytest.raises(PriceError, match=error.replace("{f}", re.escape(str(f)))):
        load_prices(f)


def test_a_bad_json_file(tmp_path: Path) -> None:
    f = tmp_path / "p.json"
    f.write_text('{"prices": {"x": {"input": 1, "output": }}}')
    with pytest.raises(PriceError, match=f"price file {f} is not valid JSON"):
        load_prices(f)
