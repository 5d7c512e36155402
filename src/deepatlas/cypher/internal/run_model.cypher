// name: run_model
// description: The Model node a run was made from (how to load it again).
// params: key
MATCH (r:Run {key: $key})-[:OF_MODEL]->(m:Model) RETURN m.key AS sha, m.path AS path, m.source AS source, m.file_sha256 AS file_sha
