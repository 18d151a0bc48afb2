//! Constraints and indexes of the Bolt graph store, per server flavour, from
//! `schema/graph/<flavour>.cypher` (compiled in). `idgraph schema apply` sends them; each
//! statement is idempotent, so applying twice changes nothing.

use neo4rs::query;

use super::{classify, client};
use crate::config::{BoltSettings, GraphFlavour};
use crate::store::StoreError;

const NEO4J: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/schema/graph/neo4j.cypher"
));
const NEPTUNE: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/schema/graph/neptune.cypher"
));
const ARCADEDB: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/schema/graph/arcadedb.cypher"
));

/// The schema statements of a flavour: `//` comment lines dropped, split on `;`.
pub fn statements(flavour: GraphFlavour) -> Vec<String> {
    let text = match flavour {
        GraphFlavour::Neo4j => NEO4J,
        GraphFlavour::Neptune => NEPTUNE,
        GraphFlavour::Arcadedb => ARCADEDB,
    };
    let body: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    body.split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Applies the configured flavour's constraints and indexes to the graph database (it
/// needs no data directory, so it can run next to a serving idgraph); returns how many
/// statements ran.
pub fn apply(settings: &BoltSettings) -> Result<usize, StoreError> {
    let list = statements(settings.flavour);
    if list.is_empty() {
        return Ok(0);
    }
    let (rt, graph) = client(settings)?;
    // One statement at a time, each with the call deadline.
    for text in &list {
        let graph = graph.clone();
        let text = text.clone();
        rt.call("schema", async move {
            graph
                .run(query(&text))
                .await
                .map_err(|e| classify("schema", e))
        })?;
    }
    Ok(list.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neo4j_schema_has_the_key_constraints_and_no_comments() {
        let list = statements(GraphFlavour::Neo4j);
        assert!(list
            .iter()
            .any(|s| s.contains("(n:Identifier) REQUIRE n.key IS UNIQUE")));
        assert!(list
            .iter()
            .any(|s| s.contains("(p:Profile) REQUIRE p.id IS UNIQUE")));
        assert!(list
            .iter()
            .all(|s| !s.contains("//") && s.contains("IF NOT EXISTS")));
    }

    #[test]
    fn neptune_has_nothing_to_apply() {
        assert!(statements(GraphFlavour::Neptune).is_empty());
    }
}
