// name: set_centrality
// description: Set degree, degree_centrality and strength on nodes of one label.
// params: rows
// placeholders: __label__ (identifiers filled by the caller, checked)
UNWIND $rows AS row MATCH (n:__label__ {key: row.key}) SET n.degree = row.degree, n.degree_centrality = row.degree_centrality, n.strength = row.strength
