// idgraph console
