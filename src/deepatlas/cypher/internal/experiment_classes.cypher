// name: experiment_classes
// description: Connect an Experiment to the classes it is about.
// params: classes, key
MATCH (x:Experiment {key: $key}) UNWIND $classes AS ck MATCH (c:Class {key: ck}) CREATE (x)-[:ON_CLASS]->(c)
