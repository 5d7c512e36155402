// name: create_memberships
// description: Connect each neuron or class to its community (MEMBER_OF).
// params: rows
UNWIND $rows AS row MATCH (c:Community {key: row.community}) OPTIONAL MATCH (n:Neuron {key: row.node}) OPTIONAL MATCH (k:Class {key: row.node}) WITH c, coalesce(n, k) AS m WHERE m IS NOT NULL CREATE (m)-[:MEMBER_OF]->(c)
