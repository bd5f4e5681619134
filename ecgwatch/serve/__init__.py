"""``ecgwatch serve``: the daemon. Imported only by the CLI and the demo; the scoring core never imports it."""
