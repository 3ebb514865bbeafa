"""semsearch's HTTP service: the FastAPI app, its routes and the engines behind them."""
