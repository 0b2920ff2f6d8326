"""The replay feed (stepped with a fake clock), the candle set, and the state file."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from paper import candles
from paper.candles import MINUTE_MS, Candle
from paper.engine import Engine
from paper.feed import ReplayFeed
from paper.market import Market
from paper.params import Params
from paper.symbols import symbols
from paper.testing import PaperExchangeServer
from tests.support.paper import BTC, make_client, position_amount

WALL_NOW_MS = 1_790_000_030_000  # 30 s into a wall-clock minute


def _candle(minute: int, o: str, h: str, low: str, c: str) -> Candle:
    start = 1_700_000_000_000 - 1_700_000_000_000 % MINUTE_MS + minute * MINUTE_MS
    zero = Decimal(0)
    return Candle(
        start,
        Decimal(o),
        Decimal(h),
        Decimal(low),
        Decimal(c),
        Decimal(1),
        start + MINUTE_MS - 1,
        zero,
        1,
        zero,
        zero,
    )


def _replay(rows: list[Candle], warmup: int) -> tuple[Engine, Market, ReplayFeed]:
    engine = Engine()
    market = Market(engine)
    feed = ReplayFeed(
        engine,
        market,
        {"BTCUSDT": rows},
        warmup=warmup,
        clock=lambda: 0.0,
        wall_clock=lambda: WALL_NOW_MS / 1000,
    )
    feed.prime()
    return engine, market, feed


def _long_with_stop(engine: Engine, trigger: str) -> None:
    engine.place_order(
        Params({"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.01"})
    )
    engine.place_algo(
        Params(
            {
                "symbol": "BTCUSDT",
                "side": "SELL",
                "algoType": "CONDITIONAL",
                "type": "STOP_MARKET",
                "triggerPrice": trigger,
                "closePosition": "true",
            }
        )
    )


def test_replay_step_when_candle_wicks_through_stop_then_fills_at_next_point_past_it() -> None:
    rows = [_candle(0, "100000", "100100", "99900", "100000")]
    rows.append(_candle(1, "100000", "100200", "98000", "99900"))  # red: wicks low first
    engine, _, feed = _replay(rows, warmup=1)
    _long_with_stop(engine, "99000")

    feed.step()  # open 100000
    feed.step()  # up to the high 100200 (red candle walks the high first)
    assert engine.positions["BTCUSDT"].amount == Decimal("0.01")
    feed.step()  # down to the low 98000, through the stop

    assert engine.positions["BTCUSDT"].amount == 0
    # The fall 100200 -> 98000 is walked in 8 steps of 275: the first at or under the trigger
    # is 98825, the next price the path offers.
    assert engine.trades[-1].price == Decimal("98825")


def test_replay_step_when_candle_opens_below_stop_then_gap_fills_at_open() -> None:
    rows = [_candle(0, "100000", "100100", "99900", "100000")]
    rows.append(_candle(1, "97000", "97500", "96900", "97400"))
    engine, _, feed = _replay(rows, warmup=1)
    _long_with_stop(engine, "99000")

    feed.step()

    assert engine.trades[-1].price == Decimal("97000")  # the open


def test_replay_klines_when_candles_played_then_served_up_to_now() -> None:
    rows = [_candle(i, "100000", "100100", "99900", "100050") for i in range(5)]
    _, market, feed = _replay(rows, warmup=3)
    assert len(market.klines(Params({"symbol": "BTCUSDT", "interval": "1m"}))) == 3

    for _ in range(ReplayFeed.POINTS):
        feed.step()

    served = market.klines(Params({"symbol": "BTCUSDT", "interval": "1m"}))
    assert len(served) == 4
    assert served[-1][1:6] == rows[3].to_binance()[1:6]


def test_replay_klines_when_served_then_candle_being_played_is_the_current_wall_minute() -> None:
    rows = [_candle(i, "100000", "100100", "99900", "100050") for i in range(5)]
    _, market, feed = _replay(rows, warmup=3)
    for _ in range(ReplayFeed.POINTS + 1):
        feed.step()  # candle 3 finished, candle 4 being played

    served = market.klines(Params({"symbol": "BTCUSDT", "interval": "1m"}))

    wall_minute = WALL_NOW_MS - WALL_NOW_MS % MINUTE_MS
    assert [row[0] for row in served[-3:]] == [
        wall_minute - 2 * MINUTE_MS,
        wall_minute - MINUTE_MS,
        wall_minute,
    ]
    assert served[-2][4] == rows[3].to_binance()[4]


def test_bundled_candles_when_loaded_then_six_symbols_on_tick_and_consistent() -> None:
    loaded = candles.load_dir()

    assert set(loaded) == {"BTCUSDT", "ETHUSDT", "BNBUSDT", "XRPUSDT", "DOGEUSDT", "ADAUSDT"}
    for name, rows in loaded.items():
        tick = symbols()[name].tick
        assert len(rows) >= 1440
        for c in rows[:500]:
            assert c.low <= min(c.open, c.close) <= max(c.open, c.close) <= c.high
            assert c.close % tick == 0 and c.low % tick == 0
            assert c.close_time == c.open_time + MINUTE_MS - 1


def test_generate_candles_when_same_seed_then_same_rows() -> None:
    first = candles.generate("ETHUSDT", start_ms=0, minutes=50, seed=7)
    second = candles.generate("ETHUSDT", start_ms=0, minutes=50, seed=7)

    assert first == second


def test_restart_when_state_file_given_then_balance_positions_and_orders_kept(
    tmp_path: Path,
) -> None:
    state = tmp_path / "paper-state.json"
    with PaperExchangeServer(state_file=state) as server:
        client = make_client(server)
        client.load_markets()
        client.create_order(BTC, "market", "buy", 0.01)
        client.create_order(BTC, "limit", "buy", 0.01, 99_000, {"clientOrderId": "keep-1"})

    with PaperExchangeServer(state_file=state) as server:
        client = make_client(server)
        client.load_markets()

        assert position_amount(client, BTC) == Decimal("0.010")
        assert [o["clientOrderId"] for o in client.fetch_open_orders(BTC)] == ["keep-1"]
        assert client.fetch_balance()["USDT"]["total"] == 10_000 - 0.5
        new = client.create_order(BTC, "limit", "buy", 0.01, 98_000)
        assert int(new["id"]) == 3


def test_static_klines_when_no_trade_for_minutes_then_flat_candles_for_each_minute() -> None:
    engine = Engine()
    market = Market(engine)
    rows = [_candle(i, "100000", "100100", "99900", "100050") for i in range(3)]
    market.load_history("BTCUSDT", rows)
    market.clock = lambda: rows[-1].open_time + 4 * MINUTE_MS + 10_000  # 3 finished quiet minutes

    served = market.klines(Params({"symbol": "BTCUSDT", "interval": "1m"}))

    assert len(served) == 6
    assert served[-1][0] == rows[-1].open_time + 3 * MINUTE_MS
    assert {tuple(row[1:6]) for row in served[3:]} == {
        ("100050", "100050", "100050", "100050", "0")
    }
