// name: count_all_nodes
// description: How many nodes the database holds (bulk import needs an empty one).
// params: 
MATCH (n) RETURN count(n) AS n
