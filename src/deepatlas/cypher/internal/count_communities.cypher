// name: count_communities
// description: How many communities the run has stored.
// params: key
MATCH (c:Community {run: $key}) RETURN count(c) AS n
