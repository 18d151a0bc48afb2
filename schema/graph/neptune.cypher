// Amazon Neptune (openCypher endpoint): Neptune has no user-defined indexes or uniqueness
// constraints; it indexes every property itself. There is nothing to apply, and
// `idgraph schema apply` says so. Uniqueness of Identifier.key, Profile.id, Event.id and the
// other keys is kept by idgraph, the only writer of its graph, which always MERGEs on them.
