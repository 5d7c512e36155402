// name: browser_named_run
// description: The head of a Browser parameter query: the complete run named by the literal that replaces RUN_LITERAL, as r (the saved scripts' step 2).
// params: 
MATCH (r:Run {name: RUN_LITERAL, status: 'complete'})
