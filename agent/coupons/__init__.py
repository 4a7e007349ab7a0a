"""Coupons: the C1 token (format and offline verification), the QR scanner and the redemption ledger."""
