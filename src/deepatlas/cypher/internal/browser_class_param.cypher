// name: browser_class_param
// description: The tail of step 2's class parameter query: the first class of the run r.
// params: 
MATCH (c:Class {run: r.key}) RETURN c.name AS class ORDER BY c.index LIMIT 1
