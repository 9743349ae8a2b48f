"""Small environments made for tests and demonstrations (e.g. a discontinuous transition)."""
