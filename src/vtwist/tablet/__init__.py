"""vttablet: the pooled, health-publishing middleware in front of one mysqld."""
