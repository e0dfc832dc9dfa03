"""What a request may cost and take: shape limits, cost, budgets, the extraction guard, per-partner gates,
and the address limiter before authentication."""
