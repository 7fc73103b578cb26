"""The continuous-training worker: inbox folders and new data become queued jobs, jobs become trained, gated
versions. Any number of workers may run against one registry; the job queue's leases keep them apart."""
