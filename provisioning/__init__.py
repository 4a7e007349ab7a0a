"""Operator-side tools: devices, brokers, coupons and rollouts."""
