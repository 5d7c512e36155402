// name: browser_run_param
// description: The tail of step 2's run parameter query: the name of the run r.
// params: 
RETURN r.name AS run
