// ArcadeDB (openCypher over Bolt): it accepts Neo4j 5's constraint and index syntax and
// maps each to an LSM-tree index on the vertex type (created on first use). Applied by
// `idgraph schema apply`; idempotent (IF NOT EXISTS). Statements are separated by semicolons.
CREATE CONSTRAINT idgraph_identifier_key IF NOT EXISTS FOR (n:Identifier) REQUIRE n.key IS UNIQUE;
CREATE CONSTRAINT idgraph_profile_id IF NOT EXISTS FOR (p:Profile) REQUIRE p.id IS UNIQUE;
CREATE CONSTRAINT idgraph_alias_id IF NOT EXISTS FOR (a:Alias) REQUIRE a.id IS UNIQUE;
CREATE CONSTRAINT idgraph_event_id IF NOT EXISTS FOR (e:Event) REQUIRE e.id IS UNIQUE;
CREATE CONSTRAINT idgraph_address_key IF NOT EXISTS FOR (a:Address) REQUIRE a.key IS UNIQUE;
CREATE CONSTRAINT idgraph_history_key IF NOT EXISTS FOR (h:History) REQUIRE h.key IS UNIQUE;
CREATE CONSTRAINT idgraph_meta_name IF NOT EXISTS FOR (m:Meta) REQUIRE m.name IS UNIQUE;
CREATE CONSTRAINT idgraph_match_record_ident IF NOT EXISTS FOR (m:MatchRecord) REQUIRE m.ident IS UNIQUE;
CREATE CONSTRAINT idgraph_suppressed_hash IF NOT EXISTS FOR (s:Suppressed) REQUIRE s.hash IS UNIQUE;
CREATE INDEX idgraph_history_profile IF NOT EXISTS FOR (h:History) ON (h.profile);
CREATE INDEX idgraph_identifier_profile IF NOT EXISTS FOR (n:Identifier) ON (n.profile_id);
CREATE INDEX idgraph_match_key IF NOT EXISTS FOR (k:MatchKey) ON (k.key);
