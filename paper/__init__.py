"""Paper exchange: a Binance USDT-M futures simulator that ccxt ``binanceusdm`` talks to unmodified.

Imports nothing from the rest of arena; the management command is its only Django touch point.
"""
