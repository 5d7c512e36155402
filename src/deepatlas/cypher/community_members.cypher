// name: community_members
// description: The neurons and classes in one community, strongest co-activation with its classes first.
// params: run (str), community (int)
MATCH (r:Run {name: $run, status: 'complete'})
MATCH (c:Community {run: r.key, index: $community})<-[:MEMBER_OF]-(m)
OPTIONAL MATCH (m)-[e:COACTIVATES]->(k:Class)-[:MEMBER_OF]->(c)
WITH m, max(e.r) AS best
RETURN CASE WHEN m:Class THEN 'class' ELSE m.layer END AS layer,
       coalesce(m.name, toString(m.index)) AS unit, best AS max_r_to_community_class
ORDER BY layer = 'class' DESC, best DESC
