// name: constraint_key
// description: Node keys are unique, per label.
// params: 
// placeholders: __lab_lower__, __lab__ (identifiers filled by the caller, checked)
CREATE CONSTRAINT __lab_lower___key IF NOT EXISTS FOR (n:__lab__) REQUIRE n.key IS UNIQUE
