// name: index_class_name
// description: Index Class names.
// params: 
CREATE INDEX class_name IF NOT EXISTS FOR (n:Class) ON (n.name)
