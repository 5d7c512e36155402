// name: create_overlaps
// description: Create OVERLAPS edges between class pairs (Jaccard, shared, mistakes).
// params: rows
UNWIND $rows AS row MATCH (a:Class {key: row.a}) MATCH (b:Class {key: row.b}) CREATE (a)-[:OVERLAPS {jaccard: row.jaccard, shared: row.shared, mistakes: row.mistakes}]->(b)
