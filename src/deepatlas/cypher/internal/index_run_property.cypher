// name: index_run_property
// description: Index the run property, per label.
// params: 
// placeholders: __lab_lower__, __lab__ (identifiers filled by the caller, checked)
CREATE INDEX __lab_lower___run IF NOT EXISTS FOR (n:__lab__) ON (n.run)
