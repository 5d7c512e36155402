// name: community_classes
// description: The classes of one stored community.
// params: i, key
MATCH (c:Community {run: $key, index: $i}) RETURN c.classes AS classes
