// name: write_edges
// description: Create edges of one (type, source label, target label) from rows, with their properties.
// params: rows
// placeholders: __src__, __dst__, __rel__, __sets__ (identifiers filled by the caller, checked)
UNWIND $rows AS row MATCH (a:__src__ {key: row.a}) MATCH (b:__dst__ {key: row.b}) CREATE (a)-[e:__rel__]->(b) __sets__
