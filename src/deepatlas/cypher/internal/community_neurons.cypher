// name: community_neurons
// description: The neurons of one stored community.
// params: i, key
MATCH (c:Community {run: $key, index: $i})<-[:MEMBER_OF]-(n:Neuron) RETURN n.layer AS layer, n.index AS index ORDER BY layer, index
