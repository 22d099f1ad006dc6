"""One module per tab, each exposing ``build(services)``; app/main.py assembles them."""
