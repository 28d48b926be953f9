"""Who may call and how much: client API keys, limits, budgets, the response cache."""
