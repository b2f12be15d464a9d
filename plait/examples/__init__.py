"""Examples that run offline: `plait.examples.tools` (encyclopedia search, lookup,
calculator; the default tools of `plait ask`) and `plait.examples.fanout`."""
