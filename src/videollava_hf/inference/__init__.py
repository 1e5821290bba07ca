"""Answer generation shared by the CLI, evaluation, the demo and serving; multi-turn chat."""
