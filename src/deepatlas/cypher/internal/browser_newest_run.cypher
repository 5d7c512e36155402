// name: browser_newest_run
// description: The head of a Browser parameter query: the newest complete run as r (the saved scripts' step 2 completes it).
// params: 
MATCH (r:Run {status: 'complete'}) WITH r ORDER BY r.completed_at DESC LIMIT 1
