"""Indicators on Decimal lists, checked against published reference values."""

from __future__ import annotations

from decimal import Decimal

import pytest

from signals.indicators import ema, macd, rsi

# Wilder's RSI worked example as published by StockCharts ("RSI" ChartSchool article).
WILDER_CLOSES = [
    "44.3389", "44.0902", "44.1497", "43.6124", "44.3278", "44.8264", "45.0955", "45.4245",
    "45.8433", "46.0826", "45.8931", "46.0328", "45.6140", "46.2820", "46.2820", "46.0028",
    "46.0328", "46.4116", "46.2222", "45.6439", "46.2122", "46.2521", "45.7137", "46.4515",
    "45.7835", "45.3548", "44.0288", "44.1783", "44.2181", "44.5672", "43.4205", "42.6628",
    "43.1314",
]  # fmt: skip
WILDER_RSI14 = [
    "70.53", "66.32", "66.55", "69.41", "66.36", "57.97", "62.93", "63.26", "56.06", "62.38",
    "54.71", "50.42", "39.99", "41.46", "41.87", "45.46", "37.30", "33.08", "37.77",
]  # fmt: skip


def _decimals(values: list[str] | range) -> list[Decimal]:
    return [Decimal(str(v)) for v in values]


def test_rsi_when_wilder_reference_series_then_matches_published_values() -> None:
    closes = _decimals(WILDER_CLOSES)

    values = rsi(closes, 14)

    assert [v.quantize(Decimal("0.01")) for v in values] == _decimals(WILDER_RSI14)


def test_rsi_when_prices_only_rise_then_100_and_when_flat_then_50() -> None:
    rising, flat = _decimals(range(1, 20)), [Decimal(5)] * 20

    assert set(rsi(rising, 14)) == {Decimal(100)}
    assert set(rsi(flat, 14)) == {Decimal(50)}


def test_ema_when_linear_series_then_lags_by_period_minus_one_over_two() -> None:
    # EMA(3) of 1..10, seeded with SMA(1, 2, 3) = 2 and alpha 0.5: each value is the price - 1.
    values = _decimals(range(1, 11))

    result = ema(values, 3)

    assert result == _decimals(range(2, 10))
    assert all(isinstance(v, Decimal) for v in result)


def test_ema_when_fewer_values_than_period_then_empty() -> None:
    assert ema(_decimals([1, 2]), 3) == []


def test_ema_when_period_not_positive_then_raises() -> None:
    with pytest.raises(ValueError, match="positive integer"):
        ema(_decimals([1, 2, 3]), 0)


def test_macd_when_constant_prices_then_all_zero_and_tail_aligned() -> None:
    values = [Decimal("100.5")] * 40

    result = macd(values)

    # 40 values: slow EMA from index 25 (15 values), signal EMA(9) of those: 7 values.
    assert len(result.line) == len(result.signal) == len(result.histogram) == 7
    assert set(result.line) == set(result.signal) == set(result.histogram) == {Decimal(0)}


def test_macd_when_prices_rise_then_line_positive_and_histogram_is_line_minus_signal() -> None:
    values = _decimals(range(100, 160))

    result = macd(values)

    assert all(v > 0 for v in result.line)
    assert result.histogram == [m - s for m, s in zip(result.line, result.signal, strict=True)]


def test_macd_when_too_few_values_then_empty() -> None:
    assert macd(_decimals(range(10))).line == []
