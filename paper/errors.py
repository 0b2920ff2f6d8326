"""Binance USDT-M error codes and messages, written once.

Messages are Binance's own (USDⓈ-M futures error-code page and real responses); ``%s`` slots are
filled by :func:`reject`. Raising :class:`BinanceError` anywhere in the engine or server ends the
request with ``{"code": ..., "msg": ...}`` and the HTTP status Binance uses for it.
"""

from __future__ import annotations

# code -> (http status, message template)
ERRORS: dict[int, tuple[int, str]] = {
    -1000: (400, "An unknown error occured while processing the request."),
    -1001: (503, "Internal error; unable to process your request. Please try again."),
    -1003: (
        429,
        "Too many requests; current limit is %s requests per minute. Please use the websocket"
        " for live updates to avoid polling the API.",
    ),
    -1015: (429, "Too many new orders; current limit is %s orders per %s."),
    -1020: (400, "This operation is not supported."),
    -1021: (400, "Timestamp for this request is outside of the recvWindow."),
    -1022: (400, "Signature for this request is not valid."),
    -1100: (400, "Illegal characters found in parameter '%s'; legal range is '%s'."),
    -1101: (400, "Duplicate values for a parameter detected."),
    -1102: (400, "Mandatory parameter '%s' was not sent, was empty/null, or malformed."),
    -1106: (400, "Parameter '%s' sent when not required."),
    -1111: (400, "Precision is over the maximum defined for this asset."),
    -1115: (400, "Invalid timeInForce."),
    -1116: (400, "Invalid orderType."),
    -1117: (400, "Invalid side."),
    -1120: (400, "Invalid interval."),
    -1121: (400, "Invalid symbol."),
    -1127: (400, "More than %s hours between startTime and endTime."),
    -1130: (400, "Data sent for paramter '%s' is not valid."),
    -2011: (400, "Unknown order sent."),
    -2013: (400, "Order does not exist."),
    -2014: (401, "API-key format invalid."),
    -2015: (401, "Invalid API-key, IP, or permissions for action."),
    -2019: (400, "Margin is insufficient."),
    -2021: (400, "Order would immediately trigger."),
    -2022: (400, "ReduceOnly Order is rejected."),
    -2025: (400, "Reach max open order limit."),
    -2027: (400, "Exceeded the maximum allowable position at current leverage."),
    -4003: (400, "Quantity less than or equal to zero."),
    -4004: (400, "Quantity less than min quantity."),
    -4005: (400, "Quantity greater than max quantity."),
    -4006: (400, "Stop price less than zero."),
    -4013: (400, "Price less than min price."),
    -4002: (400, "Price greater than max price."),
    -4014: (400, "Price not increased by tick size."),
    -4015: (400, "Client order id is not valid."),
    -4016: (400, "Price is higher than mark price multiplier cap."),
    -4023: (400, "Qty not increased by step size."),
    -4024: (400, "Price is lower than mark price multiplier floor."),
    -4028: (400, "Leverage %s is not valid"),
    -4031: (400, "Invalid parameter working type: %s"),
    -4045: (400, "Reach max stop order limit."),
    -4046: (400, "No need to change margin type."),
    -4047: (400, "Margin type cannot be changed if there exists open orders."),
    -4048: (400, "Margin type cannot be changed if there exists position."),
    -4059: (400, "No need to change position side."),
    -4067: (400, "Position side cannot be changed if there exists open orders."),
    -4068: (400, "Position side cannot be changed if there exists position."),
    -4061: (400, "Order's position side does not match user's setting."),
    -4050: (400, "Cross balance insufficient."),
    -4051: (400, "Isolated balance insufficient."),
    -4082: (400, "Invalid number of batch place orders."),
    -4116: (400, "ClientOrderId is duplicated."),
    -4118: (
        400,
        "ReduceOnly Order Failed. Please check your existing position and open orders.",
    ),
    -4130: (
        400,
        "An open stop or take profit order with GTE and closePosition in the direction is"
        " existing.",
    ),
    -4120: (
        400,
        "Order type not supported for this endpoint. Please use the Algo Order API endpoints"
        " instead.",
    ),
    -4136: (400, "Target strategy invalid for orderType %s,closePosition %s"),
    -4137: (400, "Quantity must be zero with closePosition equals true"),
    -4164: (400, "Order's notional must be no smaller than %s (unless you choose reduce only)."),
    -4509: (400, "TIF GTE can only be used with open positions or open orders."),
    -5027: (400, "No need to modify the order."),
    -5022: (
        400,
        "Due to the order could not be executed as maker, the Post Only order will be rejected."
        " The order will not be recorded in the order history",
    ),
}

# The one message of -1021 Binance sends when the client clock runs ahead instead of behind.
AHEAD_OF_SERVER = "Timestamp for this request was 1000ms ahead of the server's time."
DECIMAL_RANGE = r"^([0-9]{1,20})(\.[0-9]{1,20})?$"


class BinanceError(Exception):
    """A Binance rejection: ends the request with Binance's JSON error body."""

    def __init__(self, code: int, msg: str, status: int = 400) -> None:
        super().__init__(f"{code} {msg}")
        self.code = code
        self.msg = msg
        self.status = status

    def body(self) -> dict[str, object]:
        return {"code": self.code, "msg": self.msg}


def reject(code: int, *args: object) -> BinanceError:
    """Return the :class:`BinanceError` for ``code``, its message filled with ``args``."""
    status, template = ERRORS[code]
    msg = template % args if args else template
    return BinanceError(code, msg, status)
