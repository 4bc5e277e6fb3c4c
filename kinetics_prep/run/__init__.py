"""Items in, results out: options, results, reports, executors, runner, locks, sharding."""
